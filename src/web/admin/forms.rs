//! What the admin forms share: reading fields as entered, numbers and lists in them, job
//! ids in paths, the CSRF-only form, and the redirect after a successful POST.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use crate::jobs::JobError;
use crate::web::errors::PageError;

use super::error::AdminError;
pub use crate::web::see_other;

/// A form's fields, kept as entered so that an error page shows them again.
pub type Fields = BTreeMap<String, String>;

/// A field of `f`, trimmed; empty when absent.
pub fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name).map(|s| s.trim()).unwrap_or("")
}

/// A number typed into the field `label`.
pub fn number<T: std::str::FromStr>(label: &str, raw: &str) -> Result<T, JobError> {
    let raw = raw.trim();
    raw.parse()
        .map_err(|_| JobError::Invalid(format!("{label}: '{raw}' is not a valid number")))
}

/// A list typed as comma- or line-separated values, without empty items.
pub fn list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// A job id from a path: anything else is a page that does not exist.
pub fn parse_id(raw: &str) -> Result<Uuid, AdminError> {
    Uuid::parse_str(raw).map_err(|_| {
        AdminError::Page(PageError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("'{raw}' is not a job id"),
        ))
    })
}

/// A form that carries only its CSRF token (logout, cancel, retry).
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_numbers_read_as_typed() {
        assert_eq!(list(" a, b\n\nc ,"), vec!["a", "b", "c"]);
        assert_eq!(number::<i64>("seeds", " 12 ").unwrap(), 12);
        let e = number::<i64>("seeds", "1e3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid request: seeds: '1e3' is not a valid number"
        );
        assert!(parse_id("../etc").is_err());
    }
}
