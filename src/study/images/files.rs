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
    // is held to the same size (8 bytes a pixel covers 16-bit RGBA).
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
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
    use super::*;

    #[test]
    fn paths_outside_the_folder_are_refused() {
        let dir = Path::new("/tmp/x");
        assert!(inside(dir, "a/b.png").is_some());
        assert!(inside(dir, "../b.png").is_none());
        assert!(inside(dir, "/etc/passwd").is_none());
        assert!(inside(dir, "").is_none());
    }
}
