//! Queries on admin accounts.

use sqlx::PgPool;
use uuid::Uuid;

use crate::study::StudyError;

pub async fn upsert(pool: &PgPool, email: &str, password_hash: &str) -> Result<Uuid, StudyError> {
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

pub async fn by_email(pool: &PgPool, email: &str) -> Result<Option<(Uuid, String)>, StudyError> {
    Ok(
        sqlx::query_as("SELECT id, password_hash FROM admins WHERE email = $1")
            .bind(email)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn exists(pool: &PgPool, id: Uuid) -> Result<bool, StudyError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admins WHERE id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}
