//! Serving the two images of an assignment, blind to the byte.
//!
//! Stored files of different models differ in size (a model that draws more detail
//! compresses worse), so a participant could tell the models apart by "the larger file" or
//! by which image arrives last. Both sides of an assignment are therefore served with the
//! same length: each PNG gets a private ancillary chunk (`paDd`, which every decoder skips)
//! of random bytes, sized so both reach the same length, rounded up to a whole KiB. The
//! random filling also makes the served bytes differ from the stored file and between
//! requests, so nothing published later (hashes, exports) can be matched to what a
//! participant received. Only the participant holding the assignment (their cookie or
//! Bearer token) gets the images.

use actix_web::{web, HttpRequest, HttpResponse};
use rand::RngCore;
use uuid::Uuid;

use crate::study::participation::ParticipantToken;

use super::participant::PARTICIPANT_COOKIE;
use super::state::AppState;

/// The chunk type of the padding: ancillary (lower-case first letter), private (lower-case
/// second), reserved bit clear (upper-case third), safe to copy (lower-case fourth).
pub const PAD_CHUNK: &[u8; 4] = b"paDd";
/// Served lengths are rounded up to this, so they say even less about the content.
const BUCKET: usize = 1024;
/// Length, type and CRC of a PNG chunk.
const CHUNK_OVERHEAD: usize = 12;
/// The IEND chunk every PNG ends with: zero length, type, CRC.
const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// The length both images of an assignment are served with, given their stored lengths.
pub fn served_len(left: usize, right: usize) -> usize {
    (left.max(right) + CHUNK_OVERHEAD).div_ceil(BUCKET) * BUCKET
}

/// `png` with a padding chunk of random bytes before its IEND, `target` bytes long in all.
/// `None` when `png` does not end in IEND or is already too long (never for the files the
/// platform stores).
pub fn pad_png(png: &[u8], target: usize) -> Option<Vec<u8>> {
    if png.len() < 8 + IEND.len() || !png.ends_with(&IEND) || png.len() + CHUNK_OVERHEAD > target {
        return None;
    }
    let data_len = target - png.len() - CHUNK_OVERHEAD;
    let mut data = vec![0u8; data_len];
    rand::thread_rng().fill_bytes(&mut data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(PAD_CHUNK);
    crc.update(&data);
    let body = png.len() - IEND.len();
    let mut out = Vec::with_capacity(target);
    out.extend_from_slice(&png[..body]);
    out.extend_from_slice(&u32::try_from(data_len).ok()?.to_be_bytes());
    out.extend_from_slice(PAD_CHUNK);
    out.extend_from_slice(&data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(&IEND);
    Some(out)
}

/// The participant's token: the pages' cookie, or the API's Bearer header.
fn token_of(req: &HttpRequest) -> Option<ParticipantToken> {
    if let Some(c) = req.cookie(PARTICIPANT_COOKIE) {
        return Some(ParticipantToken(c.value().to_string()));
    }
    req.headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(|t| ParticipantToken(t.to_string()))
}

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.route("/img/{assignment}/{side}", actix_web::web::get().to(image));
}

/// `GET /img/{assignment}/{left|right}`.
pub async fn image(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: super::extract::Path<(String, String)>,
) -> HttpResponse {
    let (assignment, side) = path.0;
    let not_found = || {
        HttpResponse::NotFound()
            .content_type("text/plain")
            .body("no such image")
    };
    let (Ok(assignment), Some(left), Some(token)) = (
        Uuid::parse_str(&assignment),
        match side.as_str() {
            "left" => Some(true),
            "right" => Some(false),
            _ => None,
        },
        token_of(&req),
    ) else {
        return not_found();
    };
    let files = crate::db::participation::assignment_images(
        &state.db.relaxed,
        assignment,
        &token.hash(),
        left,
    )
    .await;
    let (left_file, right_file) = match files {
        Ok(Some(files)) => files,
        Ok(None) => return not_found(),
        Err(e) => return super::errors::fault_response(&e.into()),
    };
    let (mine, other) = if left {
        (left_file, right_file)
    } else {
        (right_file, left_file)
    };
    let (bytes, other_len) = match tokio::try_join!(
        tokio::fs::read(state.store.path(&mine)),
        tokio::fs::metadata(state.store.path(&other)),
    ) {
        Ok((bytes, meta)) => (bytes, meta.len() as usize),
        Err(e) => {
            tracing::error!("stored image missing: {e}");
            return HttpResponse::InternalServerError().finish();
        }
    };
    let Some(padded) = pad_png(&bytes, served_len(bytes.len(), other_len)) else {
        tracing::error!("stored image {mine} is not a PNG ending in IEND");
        return HttpResponse::InternalServerError().finish();
    };
    HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, max-age=86400"))
        .body(padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, noise: bool) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            if noise {
                image::Rgb([(x * 37 + y * 91) as u8, (x * y) as u8, (x ^ y) as u8])
            } else {
                image::Rgb([10, 20, 30])
            }
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("encode");
        out.into_inner()
    }

    #[test]
    fn both_sides_get_the_same_length_and_still_decode_to_the_same_pixels() {
        let (a, b) = (png(64, 64, true), png(64, 64, false));
        assert_ne!(a.len(), b.len());
        let n = served_len(a.len(), b.len());
        let (pa, pb) = (
            pad_png(&a, n).expect("pad a"),
            pad_png(&b, n).expect("pad b"),
        );
        assert_eq!(pa.len(), n);
        assert_eq!(pb.len(), n);
        assert_eq!(n % BUCKET, 0);
        for (orig, padded) in [(&a, &pa), (&b, &pb)] {
            let x = image::load_from_memory(orig).expect("orig").to_rgb8();
            let y = image::load_from_memory(padded).expect("padded").to_rgb8();
            assert_eq!(x, y);
        }
        // Random filling: the same image is served with different bytes each time.
        assert_ne!(pad_png(&a, n), pad_png(&a, n));
        assert_ne!(&pa[..], &a[..]);
    }

    #[test]
    fn refuses_what_is_not_a_png_or_does_not_fit() {
        assert_eq!(pad_png(b"not a png at all", 4096), None);
        let a = png(8, 8, false);
        assert_eq!(pad_png(&a, a.len() + 11), None);
        assert!(
            pad_png(&a, a.len() + 12).is_some(),
            "an empty padding chunk fits"
        );
    }
}
