//! Researcher/admin accounts: argon2-hashed passwords, checked in constant time.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
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

/// Creates an account, or sets a new password when the e-mail already has one.
pub async fn create_or_update(db: &Db, email: &str, password: &str) -> Result<Uuid, StudyError> {
    let email = parse_email(email)?;
    let hash = hash_password(password)?;
    q::upsert(&db.pool, &email, &hash).await
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
