//! Images: the content-addressed store (every file re-encoded as PNG with no metadata,
//! named by its sha256), the visibly broken versions used for gold checks, and
//! `images import` from a folder with a `manifest.jsonl`.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::db::Db;

use super::prompts::NewPrompt;
use super::{Study, StudyError};

/// Files named by the sha256 of their bytes under `root/ab/cd/<sha>.png`. Writing the same
/// image twice stores it once; a file only becomes visible to participants through a row
/// in `images`, so a blob left by a failed import is never served.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// A stored file: its hash and its path relative to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub sha256: String,
    pub file: String,
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

/// A processed image, ready for the database.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub model: String,
    pub prompt: NewPrompt,
    pub seed: Option<i64>,
    pub steps: Option<i32>,
    pub guidance: Option<f64>,
    pub scheduler: Option<String>,
    pub width: u32,
    pub height: u32,
    pub stored: StoredFile,
    pub broken: StoredFile,
}

/// Re-encodes and stores an image and its broken version.
pub fn prepare(
    store: &ImageStore,
    image: &RgbImage,
) -> Result<(StoredFile, StoredFile), StudyError> {
    let png =
        encode_png(image).map_err(|e| StudyError::Import(format!("cannot encode image: {e}")))?;
    let broken = encode_png(&broken_version(image))
        .map_err(|e| StudyError::Import(format!("cannot encode image: {e}")))?;
    Ok((store.put_png(&png)?, store.put_png(&broken)?))
}

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

/// Refuses paths that leave the import folder.
fn inside(dir: &Path, file: &str) -> Option<PathBuf> {
    let rel = Path::new(file);
    if file.is_empty()
        || rel.is_absolute()
        || rel.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    Some(dir.join(rel))
}

/// Reads and checks the whole manifest and every image, storing files as it goes; returns
/// the images to insert. Any bad line fails the import with its line number.
pub fn read_manifest(dir: &Path, store: &ImageStore) -> Result<Vec<PreparedImage>, StudyError> {
    let manifest = dir.join("manifest.jsonl");
    let content = std::fs::read_to_string(&manifest)
        .map_err(|e| StudyError::Import(format!("cannot read {}: {e}", manifest.display())))?;
    let mut prepared = Vec::new();
    let mut seen: HashMap<(String, String, Option<i64>), usize> = HashMap::new();
    for (i, raw) in content.lines().enumerate() {
        let line_no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = |msg: String| StudyError::Import(format!("manifest.jsonl line {line_no}: {msg}"));
        let line: ManifestLine = serde_json::from_str(raw).map_err(|e| at(e.to_string()))?;
        let model = line.model.trim().to_string();
        if model.is_empty() || model.len() > 100 || model.contains('#') {
            return Err(at(
                "field 'model' must be 1-100 characters without '#'".into()
            ));
        }
        let text = line.prompt.trim().to_string();
        if text.is_empty() {
            return Err(at("field 'prompt' is empty".into()));
        }
        if let Some(g) = line.guidance {
            if !g.is_finite() {
                return Err(at("field 'guidance' must be a finite number".into()));
            }
        }
        let key = (
            line.prompt_id.clone().unwrap_or_else(|| text.clone()),
            model.clone(),
            line.seed,
        );
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
        let decoded = image::ImageReader::open(&path)
            .map_err(|e| at(format!("cannot open '{}': {e}", line.file)))?
            .with_guessed_format()
            .map_err(|e| at(format!("cannot read '{}': {e}", line.file)))?
            .decode()
            .map_err(|e| at(format!("'{}' is not a readable image: {e}", line.file)))?
            .to_rgb8();
        let (width, height) = decoded.dimensions();
        let (stored, broken) = prepare(store, &decoded).map_err(|e| at(e.to_string()))?;
        prepared.push(PreparedImage {
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
    if prepared.is_empty() {
        return Err(StudyError::Import("manifest.jsonl has no images".into()));
    }
    Ok(prepared)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageImportCount {
    pub images_added: u64,
    pub images_existing: u64,
    pub pairs_total: u64,
}

/// Inserts prepared images, their models and prompts, and the candidate pairs they form,
/// in one transaction: either all of it lands or none of it does.
pub async fn insert_images(
    db: &Db,
    study: &Study,
    images: &[PreparedImage],
) -> Result<ImageImportCount, StudyError> {
    let mut tx = db.pool.begin().await?;
    let mut added = 0;
    for img in images {
        if crate::db::content::insert_image(&mut tx, study.id, img).await? {
            added += 1;
        }
    }
    let pairs_total = crate::db::content::rebuild_pairs(&mut tx, study.id).await?;
    tx.commit().await?;
    Ok(ImageImportCount {
        images_added: added,
        images_existing: images.len() as u64 - added,
        pairs_total,
    })
}

/// `images import`: reads the folder, then stores everything in one transaction.
pub async fn import_dir(
    db: &Db,
    study: &Study,
    dir: &Path,
    store: &ImageStore,
) -> Result<ImageImportCount, StudyError> {
    let dir = dir.to_path_buf();
    let store_c = store.clone();
    let prepared = tokio::task::spawn_blocking(move || read_manifest(&dir, &store_c))
        .await
        .map_err(|e| StudyError::Import(format!("import task failed: {e}")))??;
    insert_images(db, study, &prepared).await
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
    fn paths_outside_the_folder_are_refused() {
        let dir = Path::new("/tmp/x");
        assert!(inside(dir, "a/b.png").is_some());
        assert!(inside(dir, "../b.png").is_none());
        assert!(inside(dir, "/etc/passwd").is_none());
        assert!(inside(dir, "").is_none());
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
