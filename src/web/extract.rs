//! Drop-in replacements for actix-web's `Path`, `Query`, `Form` and `Json` extractors that
//! refuse a NUL byte (`%00`, `\u0000`) before the handler runs. Postgres cannot store one,
//! so without this a NUL reached a query as a 500, sometimes after a vote was already
//! stored (`POST /s/%00/vote`). The answer is a 400 that names the segment, parameter or
//! field: JSON `{"error": "invalid_input"}` under `/api/`, the plain message page elsewhere.
//! Limits, content types and the scopes' error handlers of the wrapped extractors still apply.

use std::ops::{Deref, DerefMut};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::errors::{message_page, ApiError};
use crate::study::input::{nul_in_json, nul_message};

/// Bad input found by an extractor, answered in the form the caller's part of the site uses.
#[derive(Debug)]
pub struct InputError {
    api: bool,
    code: &'static str,
    detail: String,
}

impl InputError {
    fn error(req: &HttpRequest, code: &'static str, detail: String) -> actix_web::Error {
        InputError {
            api: req.path().starts_with("/api/"),
            code,
            detail,
        }
        .into()
    }

    fn nul(req: &HttpRequest, place: &str) -> actix_web::Error {
        Self::error(req, "invalid_input", nul_message(place))
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl ResponseError for InputError {
    fn status_code(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
    fn error_response(&self) -> HttpResponse {
        if self.api {
            ApiError::new(StatusCode::BAD_REQUEST, self.code, self.detail.clone()).error_response()
        } else {
            message_page(StatusCode::BAD_REQUEST, "Invalid request", &self.detail)
        }
    }
}

/// Whether `raw` holds a NUL byte, either as is or percent-encoded (one level of decoding,
/// as the URL and form decoders apply: `%2500` is the text `%00`, not a NUL).
pub fn percent_decoded_has_nul(raw: &[u8]) -> bool {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0 => return true,
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(0), Some(0)) => return true,
                (Some(_), Some(_)) => i += 3,
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    false
}

/// The name of the first `name=value` pair of a query string with a NUL in either part.
fn nul_in_query(query: &str) -> Option<String> {
    query
        .split('&')
        .find(|pair| percent_decoded_has_nul(pair.as_bytes()))
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            if percent_decoded_has_nul(name.as_bytes()) {
                "a query parameter name".to_string()
            } else {
                format!("query parameter '{name}'")
            }
        })
}

macro_rules! wrapper {
    ($name:ident) => {
        impl<T> $name<T> {
            pub fn into_inner(self) -> T {
                self.0
            }
        }

        impl<T> Deref for $name<T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.0
            }
        }

        impl<T: std::fmt::Display> std::fmt::Display for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<T> DerefMut for $name<T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.0
            }
        }
    };
}

/// `web::Path`, refusing a NUL in any matched segment.
pub struct Path<T>(pub T);
wrapper!(Path);

impl<T: DeserializeOwned + 'static> FromRequest for Path<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bad = req
            .match_info()
            .iter()
            .find(|(_, value)| percent_decoded_has_nul(value.as_bytes()))
            .map(|(name, _)| InputError::nul(req, &format!("path segment '{name}'")));
        let inner = web::Path::<T>::from_request(req, payload);
        Box::pin(async move {
            match bad {
                Some(err) => Err(err),
                None => inner.await.map(|p| Path(p.into_inner())),
            }
        })
    }
}

/// `web::Query`, refusing a NUL in any parameter.
pub struct Query<T>(pub T);
wrapper!(Query);

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bad = nul_in_query(req.query_string()).map(|place| InputError::nul(req, &place));
        let inner = web::Query::<T>::from_request(req, payload);
        Box::pin(async move {
            match bad {
                Some(err) => Err(err),
                None => inner.await.map(|q| Query(q.into_inner())),
            }
        })
    }
}

/// `web::Form`, refusing a NUL in any field name or value.
pub struct Form<T>(pub T);
wrapper!(Form);

impl<T: DeserializeOwned + 'static> FromRequest for Form<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Decoded as name/value pairs first (the FormConfig limit and the content type still
        // apply), checked, then turned into T by the same decoder actix uses.
        let inner = web::Form::<Vec<(String, String)>>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let pairs = inner.await?.into_inner();
            if let Some((name, _)) = pairs
                .iter()
                .find(|(name, value)| name.contains('\0') || value.contains('\0'))
            {
                let place = if name.contains('\0') {
                    "a form field name".to_string()
                } else {
                    format!("form field '{name}'")
                };
                return Err(InputError::nul(&req, &place));
            }
            from_pairs(&pairs)
                .map(Form)
                .map_err(|e| InputError::error(&req, "invalid_body", format!("form: {e}")))
        })
    }
}

fn from_pairs<T: DeserializeOwned, P: Serialize>(pairs: &P) -> Result<T, String> {
    let encoded = serde_urlencoded::to_string(pairs).map_err(|e| e.to_string())?;
    serde_urlencoded::from_str(&encoded).map_err(|e| e.to_string())
}

/// `web::Json`, refusing a NUL in any string or key of the document.
pub struct Json<T>(pub T);
wrapper!(Json);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Parsed as a document first (the JsonConfig limit, content type and error handler
        // still apply), checked, then turned into T.
        let inner = web::Json::<serde_json::Value>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let value = inner.await?.into_inner();
            if let Some(place) = nul_in_json(&value) {
                return Err(InputError::nul(&req, &format!("JSON field '{place}'")));
            }
            serde_json::from_value(value).map(Json).map_err(|e| {
                InputError::error(&req, "invalid_body", format!("Json deserialize error: {e}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_raw_or_percent_encoded_but_not_in_encoded_percent_signs() {
        assert!(percent_decoded_has_nul(b"a%00b"));
        assert!(percent_decoded_has_nul(b"%00"));
        assert!(percent_decoded_has_nul(b"ab\0"));
        assert!(!percent_decoded_has_nul(b"%2500"));
        assert!(!percent_decoded_has_nul(b"100%"));
        assert!(!percent_decoded_has_nul(b"%0"));
        assert!(!percent_decoded_has_nul(b"%zz00"));
        assert!(!percent_decoded_has_nul(b"plain"));
    }

    #[test]
    fn query_names_the_parameter() {
        assert_eq!(nul_in_query("a=1&b=2"), None);
        assert_eq!(
            nul_in_query("a=1&PROLIFIC_PID=x%00y").as_deref(),
            Some("query parameter 'PROLIFIC_PID'")
        );
        assert_eq!(
            nul_in_query("x%00=1").as_deref(),
            Some("a query parameter name")
        );
    }

    #[test]
    fn form_pairs_become_the_target_type() {
        #[derive(Debug, serde::Deserialize)]
        struct F {
            n: i32,
            s: Option<String>,
        }
        let f: F = from_pairs(&vec![("n".to_string(), "7".to_string())]).unwrap();
        assert_eq!((f.n, f.s), (7, None));
        let err = from_pairs::<F, _>(&vec![("n".to_string(), "x".to_string())]).unwrap_err();
        assert!(err.contains("invalid digit"), "{err}");
    }
}
