//! Queries on a study's content: prompts, models, images and the candidate pairs they form.

use super::DbError;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::domain::content::{NewPrompt, PreparedImage};

/// Finds or inserts a prompt; returns its id and whether it was new.
pub async fn insert_prompt(
    tx: &mut Transaction<'_, Postgres>,
    study_id: Uuid,
    p: &NewPrompt,
) -> Result<(Uuid, bool), DbError> {
    if let Some(ext) = &p.external_id {
        let found: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM prompts WHERE study_id = $1 AND external_id = $2")
                .bind(study_id)
                .bind(ext)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(id) = found {
            return Ok((id, false));
        }
    }
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO prompts (id, study_id, text, category, challenge, external_id) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (study_id, text) DO NOTHING RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(study_id)
    .bind(&p.text)
    .bind(&p.category)
    .bind(&p.challenge)
    .bind(&p.external_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = inserted {
        return Ok((id, true));
    }
    let id: Uuid = sqlx::query_scalar("SELECT id FROM prompts WHERE study_id = $1 AND text = $2")
        .bind(study_id)
        .bind(&p.text)
        .fetch_one(&mut **tx)
        .await?;
    Ok((id, false))
}

pub async fn upsert_model(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<Uuid, DbError> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO models (id, name) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Inserts an image row; returns false when the same image is already there, and fails
/// when a different image already holds the same prompt, model and seed.
pub async fn insert_image(
    tx: &mut Transaction<'_, Postgres>,
    study_id: Uuid,
    img: &PreparedImage,
) -> Result<bool, DbError> {
    let model_id = upsert_model(tx, &img.model).await?;
    let (prompt_id, _) = insert_prompt(tx, study_id, &img.prompt).await?;
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT sha256 FROM images WHERE study_id = $1 AND prompt_id = $2 AND model_id = $3 AND COALESCE(seed, -1) = COALESCE($4, -1)",
    )
    .bind(study_id)
    .bind(prompt_id)
    .bind(model_id)
    .bind(img.seed)
    .fetch_optional(&mut **tx)
    .await?;
    match existing {
        Some(sha) if sha == img.stored.sha256 => return Ok(false),
        Some(_) => {
            return Err(DbError::Conflict(format!(
                "the study already has a different image for prompt '{}', model '{}', seed {:?}",
                img.prompt.text, img.model, img.seed
            )))
        }
        None => {}
    }
    sqlx::query(
        "INSERT INTO images (id, study_id, prompt_id, model_id, seed, steps, guidance, scheduler, width, height, \
         sha256, file, broken_sha256, broken_file) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(Uuid::new_v4())
    .bind(study_id)
    .bind(prompt_id)
    .bind(model_id)
    .bind(img.seed)
    .bind(img.steps)
    .bind(img.guidance)
    .bind(&img.scheduler)
    .bind(img.width as i32)
    .bind(img.height as i32)
    .bind(&img.stored.sha256)
    .bind(&img.stored.file)
    .bind(&img.broken.sha256)
    .bind(&img.broken.file)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Which images `add_pairs` looks at: the whole study (after an import), or one item —
/// a prompt and seed — after one generated image arrived.
#[derive(Debug, Clone, Copy)]
pub enum PairScope {
    Study,
    Item { prompt_id: Uuid, seed: Option<i64> },
}

/// Makes every pair of images of different models on the same prompt (and seed) within
/// `scope` a candidate pair, and tells schedulers that the set changed when it did (so a
/// stream of generated images does not reload every plan for nothing). Returns the number
/// of pairs added.
pub async fn add_pairs(
    tx: &mut Transaction<'_, Postgres>,
    study_id: Uuid,
    scope: PairScope,
) -> Result<u64, DbError> {
    const SAME_ITEM: &str = "ib.study_id = ia.study_id AND ib.prompt_id = ia.prompt_id \
        AND COALESCE(ib.seed, -1) = COALESCE(ia.seed, -1)";
    // $2 NULL: the whole study; else only images of prompt $2 and seed $3.
    const IN_SCOPE: &str = "($2::uuid IS NULL OR (ia.prompt_id = $2 \
        AND COALESCE(ia.seed, -1) = COALESCE($3::bigint, -1)))";
    let (prompt, seed) = match scope {
        PairScope::Study => (None, None),
        PairScope::Item { prompt_id, seed } => (Some(prompt_id), seed),
    };
    sqlx::query(&format!(
        "INSERT INTO model_pairs (id, study_id, model_a, model_b) \
         SELECT gen_random_uuid(), $1, x.model_a, x.model_b FROM ( \
           SELECT DISTINCT ia.model_id AS model_a, ib.model_id AS model_b \
           FROM images ia JOIN images ib ON {SAME_ITEM} \
           JOIN models ma ON ma.id = ia.model_id JOIN models mb ON mb.id = ib.model_id \
           WHERE ia.study_id = $1 AND {IN_SCOPE} AND ma.name COLLATE \"C\" < mb.name COLLATE \"C\") x \
         ON CONFLICT (study_id, model_a, model_b) DO NOTHING"
    ))
    .bind(study_id)
    .bind(prompt)
    .bind(seed)
    .execute(&mut **tx)
    .await?;
    let added = sqlx::query(&format!(
        "INSERT INTO pairs (id, study_id, prompt_id, model_pair_id, image_a, image_b) \
         SELECT gen_random_uuid(), $1, ia.prompt_id, mp.id, ia.id, ib.id \
         FROM images ia JOIN images ib ON {SAME_ITEM} \
         JOIN model_pairs mp ON mp.study_id = $1 AND mp.model_a = ia.model_id AND mp.model_b = ib.model_id \
         WHERE ia.study_id = $1 AND {IN_SCOPE} \
         ON CONFLICT (image_a, image_b) DO NOTHING"
    ))
    .bind(study_id)
    .bind(prompt)
    .bind(seed)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if added > 0 {
        // Only a changed set of pairs makes schedulers reload their plans. A study set up to
        // open itself once it has something to compare opens now.
        sqlx::query(
            "UPDATE studies SET pairs_version = pairs_version + 1, \
               status = CASE WHEN open_when_ready AND status = 'draft' THEN 'open' ELSE status END, \
               open_when_ready = FALSE \
             WHERE id = $1",
        )
        .bind(study_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(added)
}

/// How many candidate pairs a study has.
pub async fn pair_count(
    tx: &mut Transaction<'_, Postgres>,
    study_id: Uuid,
) -> Result<u64, DbError> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM pairs WHERE study_id = $1")
        .bind(study_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(total as u64)
}
