//! Checks every way text enters shares: Postgres refuses a NUL byte in `text`, so a NUL
//! that got as far as a query would be a 500 after part of the work was done. Files (prompt
//! lists, manifests) and JSON are checked here, at the boundary, with a message that says
//! where the byte is; `web::extract` does the same for paths, queries and forms.

use serde_json::Value;

use super::StudyError;

/// The message for a NUL byte found at `place` (a field, a line).
pub fn nul_message(place: &str) -> String {
    format!("{place} contains a NUL byte (\\0), which is not allowed")
}

/// Refuses a text file with a NUL byte anywhere, naming the file and the line.
pub fn refuse_nul(source: &str, content: &str) -> Result<(), StudyError> {
    match content.find('\0') {
        None => Ok(()),
        Some(at) => {
            let line = content[..at].matches('\n').count() + 1;
            Err(StudyError::Import(nul_message(&format!(
                "{source} line {line}"
            ))))
        }
    }
}

/// Where in a JSON document a string (a value or an object key) holds a NUL byte, as a
/// path such as `external.PROLIFIC_PID` or `items[2]`; `None` if nowhere.
pub fn nul_in_json(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                // A NUL in the key itself: name it readably.
                path.push_str(&key.replace('\0', "\\0"));
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then(|| {
        if path.is_empty() {
            "the JSON document".to_string()
        } else {
            path
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_in_a_file_names_its_line() {
        assert!(refuse_nul("p.txt", "one\ntwo\n").is_ok());
        let err = refuse_nul("p.txt", "one\ntwo\nthr\0ee\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.txt line 3") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn nul_in_json_names_the_field() {
        let ok = serde_json::json!({ "a": ["x", { "b": "y" }], "n": 1 });
        assert_eq!(nul_in_json(&ok), None);
        let deep = serde_json::json!({ "a": ["x", { "b": "y\u{0}" }], "n": 1 });
        assert_eq!(nul_in_json(&deep).as_deref(), Some("a[1].b"));
        let key = serde_json::json!({ "ok": 1, "k\u{0}": 2 });
        assert_eq!(nul_in_json(&key).as_deref(), Some("k\\0"));
        let top = serde_json::json!("\u{0}");
        assert_eq!(nul_in_json(&top).as_deref(), Some("the JSON document"));
    }
}
