//! Queries on admin accounts and their server-side sessions.

use super::DbError;
use sqlx::PgPool;
use uuid::Uuid;

pub async fn upsert(pool: &PgPool, email: &str, password_hash: &str) -> Result<Uuid, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO admins (id, email, password_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(email)
    .bind(password_hash)
    .fetch_one(pool)
    .await?)
}

/// Sets a new password for an existing account and revokes all its sessions, in one
/// transaction. `None` when there is no such account.
pub async fn set_password(
    pool: &PgPool,
    email: &str,
    password_hash: &str,
) -> Result<Option<(Uuid, u64)>, DbError> {
    let mut tx = pool.begin().await?;
    let id: Option<Uuid> =
        sqlx::query_scalar("UPDATE admins SET password_hash = $2 WHERE email = $1 RETURNING id")
            .bind(email)
            .bind(password_hash)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(id) = id else { return Ok(None) };
    let revoked = revoke_all_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Some((id, revoked)))
}

async fn revoke_all_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    admin: Uuid,
) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE admin_sessions SET revoked_at = now() WHERE admin_id = $1 AND revoked_at IS NULL",
    )
    .bind(admin)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Deletes an account; its sessions go with it (ON DELETE CASCADE). False when unknown.
pub async fn delete(pool: &PgPool, email: &str) -> Result<bool, DbError> {
    Ok(sqlx::query("DELETE FROM admins WHERE email = $1")
        .bind(email)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

/// One account as `admin list` shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct AdminRow {
    pub email: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub active_sessions: i64,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn list(pool: &PgPool) -> Result<Vec<AdminRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT a.email, a.created_at, \
                COUNT(s.id_hash) FILTER (WHERE s.revoked_at IS NULL AND s.expires_at > now()) \
                    AS active_sessions, \
                MAX(s.last_seen_at) AS last_seen_at \
         FROM admins a LEFT JOIN admin_sessions s ON s.admin_id = a.id \
         GROUP BY a.id ORDER BY a.email",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn by_email(pool: &PgPool, email: &str) -> Result<Option<(Uuid, String)>, DbError> {
    Ok(
        sqlx::query_as("SELECT id, password_hash FROM admins WHERE email = $1")
            .bind(email)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn exists(pool: &PgPool, id: Uuid) -> Result<bool, DbError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admins WHERE id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

pub async fn insert_session(
    pool: &PgPool,
    id_hash: &[u8],
    admin: Uuid,
    max_secs: u64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO admin_sessions (id_hash, admin_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(id_hash)
    .bind(admin)
    .bind(max_secs as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// The session's admin when it is live (not revoked, not expired, seen within `idle_secs`,
/// its admin still there); touching it moves `last_seen_at` to now. One statement, so a
/// concurrent revocation either happens before (refused) or after (this request passes).
pub async fn touch_session(
    pool: &PgPool,
    id_hash: &[u8],
    idle_secs: u64,
) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        "UPDATE admin_sessions s SET last_seen_at = now() \
         FROM admins a \
         WHERE s.id_hash = $1 AND a.id = s.admin_id AND s.revoked_at IS NULL \
           AND s.expires_at > now() \
           AND s.last_seen_at > now() - make_interval(secs => $2) \
         RETURNING s.admin_id",
    )
    .bind(id_hash)
    .bind(idle_secs as f64)
    .fetch_optional(pool)
    .await?)
}

pub async fn revoke_session(pool: &PgPool, id_hash: &[u8]) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE admin_sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL",
    )
    .bind(id_hash)
    .execute(pool)
    .await?;
    Ok(())
}
