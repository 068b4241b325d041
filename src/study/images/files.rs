//! Reading the files of an image import safely: paths and links that stay inside the
//! folder, the pixel limit checked from the header before decoding, and a staging folder so
//! that a failed import leaves nothing in the store.

use std::path::{Component, Path, PathBuf};

use image::RgbImage;
use sha2::{Digest, Sha256};

use super::{ImageStore, StoredFile};

/// Refuses paths that leave the import folder by their spelling (`..`, absolute paths).
/// Links are resolved later, by [`resolve_inside`].
pub(super) fn inside(dir: &Path, file: &str) -> Option<PathBuf> {
    let rel = Path::new(file);
    if file.is_empty()
        || rel.is_absolute()
        || rel.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    Some(dir.join(rel))
}

/// The real path of `path`, which must be a regular file inside `real_dir` (itself
/// canonical) once every symbolic link is followed: a link out of the folder could make an
/// import read any file the server can.
pub(super) fn resolve_inside(real_dir: &Path, path: &Path, file: &str) -> Result<PathBuf, String> {
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot open '{file}': {e}"))?;
    if !real.starts_with(real_dir) {
        return Err(format!(
            "'{file}' is a link to a file outside the folder; copy the image into the folder"
        ));
    }
    if !real.is_file() {
        return Err(format!("'{file}' is not a regular file"));
    }
    Ok(real)
}

/// Reads an image after checking its size from the header alone.
pub(super) fn read_image(path: &Path, file: &str, max_pixels: u64) -> Result<RgbImage, String> {
    let open = || -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>, String> {
        image::ImageReader::open(path)
            .map_err(|e| format!("cannot open '{file}': {e}"))?
            .with_guessed_format()
            .map_err(|e| format!("cannot read '{file}': {e}"))
    };
    let (width, height) = open()?
        .into_dimensions()
        .map_err(|e| format!("'{file}' is not a readable image: {e}"))?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(format!(
            "'{file}' is {width}×{height} pixels, more than the limit of {max_pixels} pixels \
             (4096×4096 unless configured); scale it down before importing"
        ));
    }
    let mut reader = open()?;
    // The header was checked, but the file could change between the two reads: the decoder
    // is held to the same size (8 bytes a pixel covers 16-bit RGBA; 64 MiB for the
    // decoder's own buffers).
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    Ok(reader
        .decode()
        .map_err(|e| format!("'{file}' is not a readable image: {e}"))?
        .to_rgb8())
}

/// Files of one import, written to a hidden folder inside the store and moved into place
/// only once the whole manifest was read; the folder is deleted when this is dropped, so
/// a failed import leaves nothing in the store.
pub(super) struct Staging {
    store: ImageStore,
    dir: PathBuf,
    files: Vec<StoredFile>,
}

impl Staging {
    pub(super) fn new(store: &ImageStore) -> Result<Staging, std::io::Error> {
        let dir = store
            .root
            .join(format!(".import-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(Staging {
            store: store.clone(),
            dir,
            files: Vec::new(),
        })
    }

    fn staged(&self, stored: &StoredFile) -> PathBuf {
        self.dir.join(format!("{}.png", stored.sha256))
    }

    pub(super) fn put_png(&mut self, png: &[u8]) -> Result<StoredFile, std::io::Error> {
        let sha256 = hex::encode(Sha256::digest(png));
        let stored = StoredFile {
            file: format!("{}/{}/{}.png", &sha256[..2], &sha256[2..4], sha256),
            sha256,
        };
        if !self.files.contains(&stored) {
            std::fs::write(self.staged(&stored), png)?;
            self.files.push(stored.clone());
        }
        Ok(stored)
    }

    /// Moves the staged files into the store; returns those that were not there before
    /// (the ones to remove again if the database refuses the import).
    pub(super) fn publish(&self) -> Result<Published, std::io::Error> {
        let mut created = Published(Vec::new());
        for stored in &self.files {
            let path = self.store.path(&stored.file);
            if path.exists() {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(self.staged(stored), &path)?;
            created.0.push(path);
        }
        Ok(created)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Files an import added to the store.
pub(super) struct Published(Vec<PathBuf>);

impl Published {
    /// Removes the files (and the folders that become empty); a file no row refers to is
    /// never served, so a failure here is only logged.
    pub(super) fn remove(self) {
        for path in self.0 {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
            let mut dir = path.parent();
            for _ in 0..2 {
                match dir {
                    Some(d) if std::fs::remove_dir(d).is_ok() => dir = d.parent(),
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_png, read_manifest, DEFAULT_MAX_IMAGE_PIXELS};
    use super::*;
    use crate::study::StudyError;

    #[test]
    fn paths_outside_the_folder_are_refused() {
        let dir = Path::new("/tmp/x");
        assert!(inside(dir, "a/b.png").is_some());
        assert!(inside(dir, "../b.png").is_none());
        assert!(inside(dir, "/etc/passwd").is_none());
        assert!(inside(dir, "").is_none());
    }

    /// CRC-32 of PNG chunks, to forge headers.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A tiny PNG whose header claims `width`×`height` (its pixel data is that of 1×1).
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut png = encode_png(&RgbImage::new(1, 1)).unwrap();
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    /// Writes images (file, width, height) and manifest lines (file, model, prompt).
    fn folder(images: &[(&str, u32, u32)], lines: &[(&str, &str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (file, w, h) in images {
            let png = encode_png(&RgbImage::from_pixel(*w, *h, image::Rgb([9, 9, 9]))).unwrap();
            std::fs::write(dir.path().join(file), png).unwrap();
        }
        let manifest: String = lines
            .iter()
            .map(|(file, model, prompt)| {
                format!(
                    "{}\n",
                    serde_json::json!({"file": file, "model": model, "prompt": prompt})
                )
            })
            .collect();
        std::fs::write(dir.path().join("manifest.jsonl"), manifest).unwrap();
        dir
    }

    /// Reads a folder into a fresh store: the error, and how many files the store holds
    /// once the import is over.
    fn read(dir: &Path, max_pixels: u64) -> (Result<usize, String>, usize) {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(store_dir.path());
        let result = Staging::new(&store)
            .map_err(StudyError::from)
            .and_then(|mut staging| {
                read_manifest(dir, &mut staging, max_pixels).map(|m| m.images.len())
            });
        let files = walk(store_dir.path());
        (result.map_err(|e| e.to_string()), files)
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    #[test]
    fn a_huge_image_is_refused_from_its_header_before_decoding() {
        let dir = folder(
            &[("a.png", 8, 8)],
            &[("a.png", "m1", "p"), ("big.png", "m2", "p")],
        );
        std::fs::write(dir.path().join("big.png"), png_claiming(20_000, 20_000)).unwrap();
        let (result, files) = read(dir.path(), DEFAULT_MAX_IMAGE_PIXELS);
        let err = result.unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("20000×20000") && err.contains("16777216"),
            "{err}"
        );
        assert_eq!(files, 0, "the failed import left files in the store");
    }

    #[test]
    fn the_pixel_limit_is_a_parameter() {
        let dir = folder(
            &[("a.png", 8, 4), ("b.png", 8, 4)],
            &[("a.png", "m1", "p"), ("b.png", "m2", "p")],
        );
        assert_eq!(read(dir.path(), 32).0, Ok(2));
        let err = read(dir.path(), 31).0.unwrap_err();
        assert!(err.contains("line 1") && err.contains("8×4"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_folder_are_refused_and_links_inside_followed() {
        let outside = folder(&[("secret.png", 8, 8)], &[]);
        let dir = folder(
            &[("a.png", 8, 8)],
            &[("a.png", "m1", "p"), ("b.png", "m2", "p")],
        );
        std::os::unix::fs::symlink(dir.path().join("a.png"), dir.path().join("b.png")).unwrap();
        assert_eq!(read(dir.path(), DEFAULT_MAX_IMAGE_PIXELS).0, Ok(2));
        std::fs::remove_file(dir.path().join("b.png")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.png"), dir.path().join("b.png"))
            .unwrap();
        let (result, files) = read(dir.path(), DEFAULT_MAX_IMAGE_PIXELS);
        let err = result.unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("outside the folder"),
            "{err}"
        );
        assert_eq!(files, 0);
    }

    #[test]
    fn images_of_one_prompt_must_have_one_size() {
        let dir = folder(
            &[("a.png", 8, 8), ("b.png", 8, 8), ("c.png", 16, 8)],
            &[
                ("a.png", "m1", "p"),
                ("b.png", "m1", "q"),
                ("c.png", "m2", "p"),
            ],
        );
        let (result, files) = read(dir.path(), DEFAULT_MAX_IMAGE_PIXELS);
        let err = result.unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("'a.png' (line 1)") && err.contains("16×8"),
            "{err}"
        );
        assert_eq!(files, 0);
    }

    #[test]
    fn a_nul_in_a_manifest_field_names_line_and_field() {
        let dir = folder(&[("a.png", 8, 8)], &[("a.png", "m1", "p\u{0}q")]);
        let err = read(dir.path(), DEFAULT_MAX_IMAGE_PIXELS).0.unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("field 'prompt'") && err.contains("NUL"),
            "{err}"
        );
    }
}
