//! Researcher/admin accounts: argon2-hashed passwords, checked in constant time, and their
//! server-side sessions (a random id in the cookie, its hash in Postgres) that logout, a
//! password change or deleting the account revoke.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{admins as q, Db};

use super::StudyError;

/// An e-mail address as accounts use it: trimmed, lower-case, with one '@'.
pub fn parse_email(raw: &str) -> Result<String, StudyError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split('@').count() == 2
        && email.split('@').all(|part| !part.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(StudyError::invalid(
            "email",
            format!("'{raw}' is not an e-mail address"),
        ))
    }
}

pub fn hash_password(password: &str) -> Result<String, StudyError> {
    if password.chars().count() < 8 {
        return Err(StudyError::invalid(
            "password",
            "must be at least 8 characters",
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StudyError::invalid("password", e.to_string()))
}

/// Creates an account, or sets a new password when the e-mail already has one (which, like
/// any password change, ends the account's sessions).
pub async fn create_or_update(db: &Db, email: &str, password: &str) -> Result<Uuid, StudyError> {
    let email = parse_email(email)?;
    let hash = hash_password(password)?;
    if let Some((id, _)) = q::set_password(&db.pool, &email, &hash).await? {
        return Ok(id);
    }
    Ok(q::upsert(&db.pool, &email, &hash).await?)
}

/// Sets a new password for an existing account and revokes all its sessions; the number of
/// sessions revoked. An unknown e-mail is an error naming it.
pub async fn change_password(db: &Db, email: &str, password: &str) -> Result<u64, StudyError> {
    let email = parse_email(email)?;
    let hash = hash_password(password)?;
    match q::set_password(&db.pool, &email, &hash).await? {
        Some((_, revoked)) => Ok(revoked),
        None => Err(StudyError::invalid(
            "email",
            format!("there is no admin account '{email}'"),
        )),
    }
}

/// Deletes an account and with it every session it had.
pub async fn delete(db: &Db, email: &str) -> Result<(), StudyError> {
    let email = parse_email(email)?;
    if q::delete(&db.pool, &email).await? {
        Ok(())
    } else {
        Err(StudyError::invalid(
            "email",
            format!("there is no admin account '{email}'"),
        ))
    }
}

fn session_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Starts a session for `admin` that ends at the latest `max_secs` from now; the random
/// token for the cookie (only its hash is stored).
pub async fn start_session(db: &Db, admin: Uuid, max_secs: u64) -> Result<String, StudyError> {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    q::insert_session(&db.pool, &session_hash(&token), admin, max_secs).await?;
    Ok(token)
}

/// The admin of a live session (and the session's idle clock restarted), or `None`.
pub async fn session_admin(
    db: &Db,
    token: &str,
    idle_secs: u64,
) -> Result<Option<Uuid>, StudyError> {
    Ok(q::touch_session(&db.pool, &session_hash(token), idle_secs).await?)
}

pub async fn end_session(db: &Db, token: &str) -> Result<(), StudyError> {
    Ok(q::revoke_session(&db.pool, &session_hash(token)).await?)
}

/// The account's id when the password is right. Unknown e-mails cost the same time as
/// wrong passwords, so probing for accounts learns nothing.
pub async fn verify(db: &Db, email: &str, password: &str) -> Result<Option<Uuid>, StudyError> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0O1ahhk6oJ4u6k0xjm4vH2v3V1pQyR9iJrFJqM0e7i8";
    let email = parse_email(email).unwrap_or_default();
    let found = q::by_email(&db.pool, &email).await?;
    let (id, hash) = match &found {
        Some((id, hash)) => (Some(*id), hash.clone()),
        None => (None, DUMMY.to_string()),
    };
    let ok = tokio::task::spawn_blocking({
        let password = password.to_string();
        move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        }
    })
    .await
    .unwrap_or(false);
    Ok(if ok { id } else { None })
}
