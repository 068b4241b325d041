//! Images: the content-addressed store (every file re-encoded as PNG with no metadata,
//! named by its sha256), the visibly broken versions used for gold checks, and
//! `images import` from a folder with a `manifest.jsonl`.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::db::Db;

use self::files::{inside, read_image, resolve_inside, Staging};
use super::prompts::NewPrompt;
use super::{Study, StudyError};
use crate::db::content::PairScope;
pub use crate::domain::content::{PreparedImage, StoredFile};

mod files;

/// Files named by the sha256 of their bytes under `root/ab/cd/<sha>.png`. Writing the same
/// image twice stores it once; a file only becomes visible to participants through a row
/// in `images`, so a blob left by a failed import is never served.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStore { root: root.into() }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Stores PNG bytes atomically (temporary file, then rename).
    pub fn put_png(&self, png: &[u8]) -> Result<StoredFile, std::io::Error> {
        let sha256 = hex::encode(Sha256::digest(png));
        let file = format!("{}/{}/{}.png", &sha256[..2], &sha256[2..4], sha256);
        let path = self.root.join(&file);
        if !path.exists() {
            let dir = path.parent().unwrap_or(&self.root);
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.{}.tmp", sha256, uuid::Uuid::new_v4()));
            std::fs::write(&tmp, png)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(StoredFile { sha256, file })
    }
}

/// Encodes pixels as PNG. A fresh encode carries no text chunks, EXIF or ICC profile, so
/// nothing about the model, seed or file name survives into the bytes participants get.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image.clone()).write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// A version of `image` that no attentive person prefers: coarse pixelation, inverted
/// colours and heavy stripes across it.
pub fn broken_version(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let block = (w.max(h) / 10).max(2);
    let mut out = RgbImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let src = image.get_pixel((x / block) * block, (y / block) * block);
            let stripe = ((x + y) / block.max(4)) % 2 == 0;
            let px = if stripe {
                [255 - src[0], 255 - src[1], 255 - src[2]]
            } else {
                [src[2] / 3, src[0] / 3, 255 - src[1] / 2]
            };
            out.put_pixel(x, y, image::Rgb(px));
        }
    }
    out
}

/// The PNG bytes of an image and of its broken version.
fn encode_pair(image: &RgbImage) -> Result<(Vec<u8>, Vec<u8>), StudyError> {
    let encode = |img: &RgbImage| {
        encode_png(img).map_err(|e| StudyError::Import(format!("cannot encode image: {e}")))
    };
    Ok((encode(image)?, encode(&broken_version(image))?))
}

/// Re-encodes and stores an image and its broken version.
pub fn prepare(
    store: &ImageStore,
    image: &RgbImage,
) -> Result<(StoredFile, StoredFile), StudyError> {
    let (png, broken) = encode_pair(image)?;
    Ok((store.put_png(&png)?, store.put_png(&broken)?))
}

/// The largest image (width × height) an import accepts unless told otherwise: 4096×4096.
/// Checked from the file's header before any pixel is decoded, so a small file that claims
/// to be huge (a 48 KB PNG of 20000×20000) costs nothing.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 4096 * 4096;

/// One line of `manifest.jsonl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestLine {
    file: String,
    model: String,
    prompt: String,
    #[serde(default)]
    prompt_id: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    steps: Option<i32>,
    #[serde(default)]
    guidance: Option<f64>,
    #[serde(default)]
    scheduler: Option<String>,
}

/// The images of a manifest, each with its line number.
struct Manifest {
    images: Vec<PreparedImage>,
    lines: Vec<usize>,
}

/// An image already read, by what it is paired on: prompt and seed.
struct SeenSize {
    line: usize,
    file: String,
    size: (u32, u32),
}

/// Reads and checks the whole manifest and every image, staging files as it goes. Any bad
/// line fails the import with its line number.
fn read_manifest(
    dir: &Path,
    staging: &mut Staging,
    max_pixels: u64,
) -> Result<Manifest, StudyError> {
    let manifest = dir.join("manifest.jsonl");
    let content = std::fs::read_to_string(&manifest)
        .map_err(|e| StudyError::Import(format!("cannot read {}: {e}", manifest.display())))?;
    super::input::refuse_nul("manifest.jsonl", &content)?;
    let real_dir = dir
        .canonicalize()
        .map_err(|e| StudyError::Import(format!("cannot read {}: {e}", dir.display())))?;
    let mut out = Manifest {
        images: Vec::new(),
        lines: Vec::new(),
    };
    let mut seen: HashMap<(String, String, Option<i64>), usize> = HashMap::new();
    let mut sizes: HashMap<(String, Option<i64>), SeenSize> = HashMap::new();
    for (i, raw) in content.lines().enumerate() {
        let line_no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = |msg: String| StudyError::Import(format!("manifest.jsonl line {line_no}: {msg}"));
        // Parsed as a document first so that a `\u0000` escape is named by its field.
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| at(e.to_string()))?;
        if let Some(field) = super::input::nul_in_json(&value) {
            return Err(at(super::input::nul_message(&format!("field '{field}'"))));
        }
        let line: ManifestLine = serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
        let model = crate::domain::ModelName::parse("model", &line.model)
            .map_err(|e| at(format!("field '{}': {}", e.field, e.message)))?
            .into_string();
        let text = line.prompt.trim().to_string();
        if text.is_empty() {
            return Err(at("field 'prompt' is empty".into()));
        }
        if let Some(g) = line.guidance {
            if !g.is_finite() {
                return Err(at("field 'guidance' must be a finite number".into()));
            }
        }
        let prompt_key = line.prompt_id.clone().unwrap_or_else(|| text.clone());
        let key = (prompt_key.clone(), model.clone(), line.seed);
        if let Some(first) = seen.insert(key, line_no) {
            return Err(at(format!(
                "a second image for the same prompt, model '{model}' and seed (first on line {first})"
            )));
        }
        let path = inside(dir, &line.file).ok_or_else(|| {
            at(format!(
                "field 'file' ('{}') must be a relative path inside the folder",
                line.file
            ))
        })?;
        let real = resolve_inside(&real_dir, &path, &line.file).map_err(at)?;
        let decoded = read_image(&real, &line.file, max_pixels).map_err(at)?;
        let (width, height) = decoded.dimensions();
        // The two images of a pair are shown side by side: a size that differs would tell
        // the models apart, so images of one prompt and seed must match.
        match sizes.get(&(prompt_key.clone(), line.seed)) {
            Some(first) if first.size != (width, height) => {
                return Err(at(format!(
                    "'{}' is {width}×{height} pixels but '{}' (line {}) of the same prompt is {}×{}; \
                     the images of a pair must have the same size",
                    line.file, first.file, first.line, first.size.0, first.size.1
                )));
            }
            Some(_) => {}
            None => {
                sizes.insert(
                    (prompt_key, line.seed),
                    SeenSize {
                        line: line_no,
                        file: line.file.clone(),
                        size: (width, height),
                    },
                );
            }
        }
        let (stored, broken) = stage(staging, &decoded).map_err(|e| at(e.to_string()))?;
        out.lines.push(line_no);
        out.images.push(PreparedImage {
            model,
            prompt: NewPrompt {
                text,
                category: line
                    .category
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
                challenge: None,
                external_id: line.prompt_id,
            },
            seed: line.seed,
            steps: line.steps,
            guidance: line.guidance,
            scheduler: line.scheduler,
            width,
            height,
            stored,
            broken,
        });
    }
    if out.images.is_empty() {
        return Err(StudyError::Import("manifest.jsonl has no images".into()));
    }
    Ok(out)
}

/// Like [`prepare`], into an import's staging folder.
fn stage(staging: &mut Staging, image: &RgbImage) -> Result<(StoredFile, StoredFile), StudyError> {
    let (png, broken) = encode_pair(image)?;
    Ok((staging.put_png(&png)?, staging.put_png(&broken)?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageImportCount {
    pub images_added: u64,
    pub images_existing: u64,
    pub pairs_total: u64,
}

/// Inserts prepared images, their models and prompts, and the candidate pairs they form,
/// in one transaction: either all of it lands or none of it does. Refuses images that
/// would form a pair with an image of another pixel size.
pub async fn insert_images(
    db: &Db,
    study: &Study,
    images: &[PreparedImage],
) -> Result<ImageImportCount, StudyError> {
    insert_with_lines(db, study, images, None).await
}

/// Two images of one prompt and seed whose sizes differ, one of them maybe from earlier.
#[derive(sqlx::FromRow)]
struct SizeMismatch {
    prompt: String,
    model_a: String,
    width_a: i32,
    height_a: i32,
    model_b: String,
    width_b: i32,
    height_b: i32,
}

async fn insert_with_lines(
    db: &Db,
    study: &Study,
    images: &[PreparedImage],
    lines: Option<&[usize]>,
) -> Result<ImageImportCount, StudyError> {
    let mut tx = db.pool.begin().await?;
    let mut added = 0;
    for img in images {
        if crate::db::content::insert_image(&mut tx, study.id, img).await? {
            added += 1;
        }
    }
    let mismatch: Option<SizeMismatch> = sqlx::query_as(
        "SELECT p.text AS prompt, ma.name AS model_a, ia.width AS width_a, ia.height AS height_a, \
         mb.name AS model_b, ib.width AS width_b, ib.height AS height_b \
         FROM images ia JOIN images ib ON ib.study_id = ia.study_id AND ib.prompt_id = ia.prompt_id \
           AND COALESCE(ib.seed, -1) = COALESCE(ia.seed, -1) AND ia.id < ib.id \
         JOIN models ma ON ma.id = ia.model_id JOIN models mb ON mb.id = ib.model_id \
         JOIN prompts p ON p.id = ia.prompt_id \
         WHERE ia.study_id = $1 AND (ia.width <> ib.width OR ia.height <> ib.height) LIMIT 1",
    )
    .bind(study.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(m) = mismatch {
        // Name the manifest lines of the images involved, where they came from a manifest.
        let where_ = |model: &str| {
            images
                .iter()
                .zip(lines.unwrap_or_default())
                .find(|(img, _)| img.model == model && img.prompt.text == m.prompt)
                .map(|(_, line)| format!(" (manifest.jsonl line {line})"))
                .unwrap_or_else(|| " (already in the study)".to_string())
        };
        return Err(StudyError::Import(format!(
            "the images of prompt '{}' by model '{}'{} ({}×{}) and model '{}'{} ({}×{}) differ in \
             size; the images of a pair must have the same size",
            m.prompt,
            m.model_a,
            where_(&m.model_a),
            m.width_a,
            m.height_a,
            m.model_b,
            where_(&m.model_b),
            m.width_b,
            m.height_b
        )));
    }
    crate::db::content::add_pairs(&mut tx, study.id, PairScope::Study).await?;
    let pairs_total = crate::db::content::pair_count(&mut tx, study.id).await?;
    tx.commit().await?;
    Ok(ImageImportCount {
        images_added: added,
        images_existing: images.len() as u64 - added,
        pairs_total,
    })
}

/// `images import` with the default pixel limit ([`DEFAULT_MAX_IMAGE_PIXELS`]).
pub async fn import_dir(
    db: &Db,
    study: &Study,
    dir: &Path,
    store: &ImageStore,
) -> Result<ImageImportCount, StudyError> {
    import_dir_limited(db, study, dir, store, DEFAULT_MAX_IMAGE_PIXELS).await
}

/// `images import`: reads the folder (refusing any image above `max_pixels`), then stores
/// everything in one transaction. When it fails, the store is as it was.
pub async fn import_dir_limited(
    db: &Db,
    study: &Study,
    dir: &Path,
    store: &ImageStore,
    max_pixels: u64,
) -> Result<ImageImportCount, StudyError> {
    let dir = dir.to_path_buf();
    let store_c = store.clone();
    let (manifest, staging) = tokio::task::spawn_blocking(move || {
        let mut staging = Staging::new(&store_c)?;
        read_manifest(&dir, &mut staging, max_pixels).map(|m| (m, staging))
    })
    .await
    .map_err(|e| StudyError::Import(format!("import task failed: {e}")))??;
    let published = staging.publish()?;
    drop(staging);
    let result = insert_with_lines(db, study, &manifest.images, Some(&manifest.lines)).await;
    if result.is_err() {
        published.remove();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_version_differs_visibly() {
        let img = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        });
        let broken = broken_version(&img);
        assert_eq!(broken.dimensions(), img.dimensions());
        let diff: u64 = img
            .pixels()
            .zip(broken.pixels())
            .map(|(a, b)| {
                (0..3)
                    .map(|c| (a[c] as i64 - b[c] as i64).unsigned_abs())
                    .sum::<u64>()
            })
            .sum();
        assert!(
            diff / (64 * 48 * 3) > 60,
            "mean absolute difference too small: {}",
            diff / (64 * 48 * 3)
        );
    }

    #[test]
    fn png_encoding_is_deterministic_and_content_addressed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path());
        let img = RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let a = store.put_png(&encode_png(&img).unwrap()).unwrap();
        let b = store.put_png(&encode_png(&img).unwrap()).unwrap();
        assert_eq!(a, b);
        assert!(store.path(&a.file).is_file());
    }
}
