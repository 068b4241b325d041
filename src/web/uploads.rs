//! What the admin area may read from the server's disk, and what it takes from the browser
//! instead. Server paths (model folders, datasets, the compare form's prompts file) must
//! resolve, symlinks followed, inside a configured root (`import_roots`, `models_dir`), and
//! never to the cookie secret or the embedded database. Prompts files and image archives are
//! uploads: streamed to a temporary folder inside the data dir under a size limit, archives
//! unpacked with zip-slip, links and zip bombs refused, and the folder removed afterwards.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use actix_multipart::Multipart;
use futures_util::StreamExt;

use crate::config::Settings;

/// Why an upload or a server path was refused: a message for the form (422).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(msg: impl Into<String>) -> Refused {
    Refused(msg.into())
}

/// `raw` as a canonical path inside one of the roots (it may not exist yet: the import then
/// says what is missing). Relative paths are taken under `models_dir`. Whether a path
/// outside the roots exists is never revealed.
pub fn resolve_in_roots(settings: &Settings, raw: &str, what: &str) -> Result<PathBuf, Refused> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(refused(format!("{what}: give a path")));
    }
    let outside = || {
        refused(format!(
            "{what} '{raw}' is not inside the folders this server allows (import_roots, models_dir)"
        ))
    };
    let path = Path::new(raw);
    let joined = match (&settings.models_dir, path.is_relative()) {
        (Some(base), true) => base.join(path),
        (None, true) => return Err(outside()),
        (_, false) => path.to_path_buf(),
    };
    let roots: Vec<PathBuf> = settings
        .import_roots
        .iter()
        .chain(settings.models_dir.iter())
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    // Symlinks are resolved as far as the path exists; a missing tail is left for the
    // import to report (it cannot hide a link that does not exist yet).
    let mut existing = normalise(&joined);
    let mut missing = Vec::new();
    let canonical = loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            break missing
                .iter()
                .rev()
                .fold(c, |p: PathBuf, part| p.join(part));
        }
        match existing.file_name() {
            Some(name) => missing.push(name.to_os_string()),
            None => return Err(outside()),
        }
        if !existing.pop() {
            return Err(outside());
        }
    };
    if !roots.iter().any(|r| canonical.starts_with(r)) {
        return Err(outside());
    }
    // The cookie secret and the embedded database stay out of reach even when the data dir
    // itself is a root: neither they nor a folder holding them may be named.
    let forbidden = [
        settings.secret_path(),
        settings.data_dir.join("postgres"),
        settings.data_dir.join("embedded-postgres.json"),
    ];
    for f in forbidden
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
    {
        if canonical.starts_with(&f) || f.starts_with(&canonical) {
            return Err(outside());
        }
    }
    Ok(canonical)
}

/// `..` and `.` removed without touching the disk (for paths that do not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A received multipart form: its text fields and at most one file, on disk in a temporary
/// folder under `DATA_DIR/uploads` that disappears with this value.
pub struct Upload {
    pub fields: HashMap<String, String>,
    pub file: Option<UploadedFile>,
    pub dir: tempfile::TempDir,
}

pub struct UploadedFile {
    /// The name the browser gave (for messages and format detection only).
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

impl Upload {
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Streams a multipart form to disk: text fields up to 64 KiB each, the file up to `limit`.
pub async fn receive(
    mut payload: Multipart,
    data_dir: &Path,
    limit: u64,
) -> Result<Upload, Refused> {
    let base = data_dir.join("uploads");
    std::fs::create_dir_all(&base).map_err(|e| refused(format!("cannot store uploads: {e}")))?;
    let dir = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(&base)
        .map_err(|e| refused(format!("cannot store uploads: {e}")))?;
    let mut fields = HashMap::new();
    let mut file = None;
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(|e| refused(format!("the upload is malformed: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_string);
        match filename {
            Some(filename) if file.is_none() => {
                let path = dir.path().join("upload.bin");
                let mut out = std::fs::File::create(&path)
                    .map_err(|e| refused(format!("cannot store the upload: {e}")))?;
                let mut size = 0u64;
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| refused(format!("the upload broke off: {e}")))?;
                    size += chunk.len() as u64;
                    if size > limit {
                        return Err(refused(format!(
                            "{filename}: the file is larger than the limit of {limit} bytes (upload_limit)"
                        )));
                    }
                    out.write_all(&chunk)
                        .map_err(|e| refused(format!("cannot store the upload: {e}")))?;
                }
                if size > 0 || !filename.is_empty() {
                    file = Some(UploadedFile {
                        name: filename,
                        path,
                        size,
                    });
                }
            }
            Some(_) => return Err(refused("send one file at a time")),
            None => {
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| refused(format!("the form broke off: {e}")))?;
                    value.extend_from_slice(&chunk);
                    if value.len() > 64 * 1024 {
                        return Err(refused(format!("form field '{name}' is too long")));
                    }
                }
                let value = String::from_utf8(value)
                    .map_err(|_| refused(format!("form field '{name}' is not UTF-8 text")))?;
                fields.insert(name, value);
            }
        }
    }
    Ok(Upload { fields, file, dir })
}

/// Most entries an archive may hold.
const MAX_ENTRIES: usize = 200_000;

/// Unpacks `archive` into `dest` (which must be empty), refusing — before anything is
/// imported — entries that leave the folder, links, more than `max_bytes` unpacked (counted
/// as the bytes come out, not as the archive claims) or too many entries. The folder that
/// holds `manifest.jsonl`: `dest` itself or its single top-level folder.
pub fn unpack_images_zip(archive: &Path, dest: &Path, max_bytes: u64) -> Result<PathBuf, Refused> {
    let file = std::fs::File::open(archive)
        .map_err(|e| refused(format!("cannot read the upload: {e}")))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| refused(format!("not a zip archive: {e}")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(refused(format!(
            "the archive has {} entries; at most {MAX_ENTRIES} are accepted",
            zip.len()
        )));
    }
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| refused(format!("archive entry {}: {e}", i + 1)))?;
        let name = entry.name().to_string();
        let Some(rel) = entry.enclosed_name() else {
            return Err(refused(format!(
                "archive entry '{name}' points outside the archive's folder; nothing was imported"
            )));
        };
        let is_link = entry.is_symlink()
            || entry
                .unix_mode()
                .is_some_and(|mode| mode & 0o170000 == 0o120000);
        if is_link {
            return Err(refused(format!(
                "archive entry '{name}' is a symbolic link; links are not accepted"
            )));
        }
        let target = dest.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| refused(format!("cannot unpack '{name}': {e}")))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| refused(format!("cannot unpack '{name}': {e}")))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| refused(format!("cannot unpack '{name}': {e}")))?;
        let allowed = max_bytes - total;
        let written = std::io::copy(&mut (&mut entry).take(allowed + 1), &mut out)
            .map_err(|e| refused(format!("archive entry '{name}' is corrupt: {e}")))?;
        if written > allowed {
            return Err(refused(format!(
                "the archive unpacks to more than {max_bytes} bytes (unpacked_limit) at entry '{name}'; nothing was imported"
            )));
        }
        total += written;
    }
    if dest.join("manifest.jsonl").is_file() {
        return Ok(dest.to_path_buf());
    }
    let tops: Vec<PathBuf> = std::fs::read_dir(dest)
        .map_err(|e| refused(format!("cannot read the unpacked archive: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    match tops.as_slice() {
        [only] if only.join("manifest.jsonl").is_file() => Ok(only.clone()),
        _ => Err(refused(
            "the archive has no manifest.jsonl at its top (or in its one top-level folder)",
        )),
    }
}
