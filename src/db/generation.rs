//! Queries of image generation: registered models, generated images with their
//! provenance, and the unblinded gallery.

use super::DbError;
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct ModelRow {
    pub id: Uuid,
    pub name: String,
    pub folder: Option<String>,
    pub weights_hash: Option<String>,
    pub info: Option<serde_json::Value>,
}

/// Registers (or re-registers) a model folder under `name`.
pub async fn upsert_registered(
    pool: &PgPool,
    name: &str,
    folder: &str,
    weights_hash: &str,
    info: &serde_json::Value,
) -> Result<ModelRow, DbError> {
    Ok(sqlx::query_as(
        "INSERT INTO models (id, name, folder, weights_hash, info, registered_at) VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT (name) DO UPDATE SET folder = EXCLUDED.folder, weights_hash = EXCLUDED.weights_hash, \
           info = EXCLUDED.info, registered_at = now() \
         RETURNING id, name, folder, weights_hash, info",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(folder)
    .bind(weights_hash)
    .bind(info)
    .fetch_one(pool)
    .await?)
}

/// Models with a registered folder, by name.
pub async fn registered(pool: &PgPool) -> Result<Vec<ModelRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, name, folder, weights_hash, info FROM models WHERE folder IS NOT NULL ORDER BY name",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn model_by_name(pool: &PgPool, name: &str) -> Result<Option<ModelRow>, DbError> {
    Ok(
        sqlx::query_as("SELECT id, name, folder, weights_hash, info FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

/// The given prompts of a study that exist, in the order given.
pub async fn prompts_by_id(
    pool: &PgPool,
    study_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.text FROM unnest($2::uuid[]) WITH ORDINALITY AS x(id, n) \
         JOIN prompts p ON p.id = x.id AND p.study_id = $1 ORDER BY x.n",
    )
    .bind(study_id)
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// A study's prompt ids, optionally only some categories, in import order.
pub async fn study_prompt_ids(
    pool: &PgPool,
    study_id: Uuid,
    categories: &[String],
) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM prompts WHERE study_id = $1 AND (cardinality($2::text[]) = 0 OR category = ANY($2)) \
         ORDER BY created_at, id",
    )
    .bind(study_id)
    .bind(categories)
    .fetch_all(pool)
    .await?)
}

/// The (prompt, seed) items of a model that a study already has.
pub async fn existing_items(
    pool: &PgPool,
    study_id: Uuid,
    model_id: Uuid,
    prompt_ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<i64>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT prompt_id, seed FROM images WHERE study_id = $1 AND model_id = $2 AND prompt_id = ANY($3)",
    )
    .bind(study_id)
    .bind(model_id)
    .bind(prompt_ids)
    .fetch_all(pool)
    .await?)
}

/// A generated image ready to insert.
pub struct GeneratedImage<'a> {
    pub study_id: Uuid,
    pub prompt_id: Uuid,
    pub model_id: Uuid,
    pub seed: i64,
    pub steps: i32,
    pub guidance: f64,
    pub scheduler: &'a str,
    pub width: i32,
    pub height: i32,
    pub stored: &'a crate::domain::content::StoredFile,
    pub broken: &'a crate::domain::content::StoredFile,
    pub provenance: &'a serde_json::Value,
}

/// Inserts a generated image unless the study already has one for the same prompt, model
/// and seed (the unique index decides, so a re-run never stores an image twice). Returns
/// whether it was inserted.
pub async fn insert_generated(
    tx: &mut Transaction<'_, Postgres>,
    img: &GeneratedImage<'_>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO images (id, study_id, prompt_id, model_id, seed, steps, guidance, scheduler, width, height, \
         sha256, file, broken_sha256, broken_file, provenance) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (study_id, prompt_id, model_id, COALESCE(seed, -1)) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(img.study_id)
    .bind(img.prompt_id)
    .bind(img.model_id)
    .bind(img.seed)
    .bind(img.steps)
    .bind(img.guidance)
    .bind(img.scheduler)
    .bind(img.width)
    .bind(img.height)
    .bind(&img.stored.sha256)
    .bind(&img.stored.file)
    .bind(&img.broken.sha256)
    .bind(&img.broken.file)
    .bind(img.provenance)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One image of the unblinded gallery.
#[derive(Debug, Clone, FromRow)]
pub struct GalleryImage {
    pub prompt_id: Uuid,
    pub prompt: String,
    pub model: String,
    pub seed: Option<i64>,
    pub image_id: Uuid,
    pub file: String,
    pub provenance: Option<serde_json::Value>,
}

pub async fn gallery(
    pool: &PgPool,
    study_id: Uuid,
    limit: i64,
) -> Result<Vec<GalleryImage>, DbError> {
    Ok(sqlx::query_as(
        "SELECT p.id AS prompt_id, p.text AS prompt, m.name AS model, i.seed, i.id AS image_id, i.file, i.provenance \
         FROM images i JOIN prompts p ON p.id = i.prompt_id JOIN models m ON m.id = i.model_id \
         WHERE i.study_id = $1 ORDER BY p.created_at, p.id, i.seed NULLS FIRST, m.name LIMIT $2",
    )
    .bind(study_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A study's prompt categories with their prompt counts.
pub async fn categories(pool: &PgPool, study_id: Uuid) -> Result<Vec<(String, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT category, count(*) FROM prompts WHERE study_id = $1 AND category IS NOT NULL \
         GROUP BY category ORDER BY category",
    )
    .bind(study_id)
    .fetch_all(pool)
    .await?)
}

/// The stored file of an image (`broken` for its gold-check version).
pub async fn image_file(pool: &PgPool, id: Uuid, broken: bool) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar(if broken {
        "SELECT broken_file FROM images WHERE id = $1"
    } else {
        "SELECT file FROM images WHERE id = $1"
    })
    .bind(id)
    .fetch_optional(pool)
    .await?)
}
