//! Prompt files: PartiPrompts TSV (Prompt, Category, Challenge, Note), CSV with
//! `prompt[,category]`, or plain text with one prompt a line. Parsed whole, with the line
//! number of the first bad line, before anything is stored.

use crate::db::Db;
pub use crate::domain::content::NewPrompt;

use super::{Study, StudyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFormat {
    PartiTsv,
    Csv,
    Text,
}

impl PromptFormat {
    pub fn parse(s: &str) -> Result<Self, StudyError> {
        match s {
            "tsv" | "parti" => Ok(PromptFormat::PartiTsv),
            "csv" => Ok(PromptFormat::Csv),
            "txt" | "text" => Ok(PromptFormat::Text),
            "auto" => Err(StudyError::invalid(
                "format",
                "auto must be resolved with detect()",
            )),
            other => Err(StudyError::invalid(
                "format",
                format!("unknown prompt format '{other}' (tsv, csv, text)"),
            )),
        }
    }

    /// Guesses the format from the file name and its first line.
    pub fn detect(file_name: &str, content: &str) -> PromptFormat {
        let first = content
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches('\u{feff}');
        if first.contains('\t') || file_name.ends_with(".tsv") {
            PromptFormat::PartiTsv
        } else if file_name.ends_with(".csv")
            || first.trim().eq_ignore_ascii_case("prompt")
            || first.to_ascii_lowercase().starts_with("prompt,")
        {
            PromptFormat::Csv
        } else {
            PromptFormat::Text
        }
    }
}

const MAX_PROMPT_LEN: usize = 2000;

fn check_text(source: &str, line: usize, text: &str) -> Result<String, StudyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StudyError::Import(format!(
            "{source} line {line}: the prompt is empty"
        )));
    }
    if text.len() > MAX_PROMPT_LEN {
        return Err(StudyError::Import(format!(
            "{source} line {line}: the prompt is longer than {MAX_PROMPT_LEN} bytes"
        )));
    }
    Ok(text.to_string())
}

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Parses a prompt file. `source` names the file in error messages.
pub fn parse_prompts(
    source: &str,
    content: &str,
    format: PromptFormat,
) -> Result<Vec<NewPrompt>, StudyError> {
    super::input::refuse_nul(source, content)?;
    let content = content.trim_start_matches('\u{feff}');
    let mut prompts = Vec::new();
    match format {
        PromptFormat::Text => {
            for (i, line) in content.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                prompts.push(NewPrompt {
                    text: check_text(source, i + 1, line)?,
                    category: None,
                    challenge: None,
                    external_id: None,
                });
            }
        }
        PromptFormat::PartiTsv | PromptFormat::Csv => {
            let delimiter = if format == PromptFormat::PartiTsv {
                b'\t'
            } else {
                b','
            };
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .quoting(format == PromptFormat::Csv)
                .from_reader(content.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| StudyError::Import(format!("{source} line 1: {e}")))?
                .clone();
            let col = |name: &str| {
                headers
                    .iter()
                    .position(|h| h.trim().eq_ignore_ascii_case(name))
            };
            let prompt_col = col("prompt").ok_or_else(|| {
                StudyError::Import(format!("{source} line 1: no 'Prompt' column in the header"))
            })?;
            let category_col = col("category");
            let challenge_col = col("challenge");
            let id_col = col("id").or_else(|| col("prompt_id"));
            for record in reader.records() {
                let record = record.map_err(|e| {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    StudyError::Import(format!("{source} line {line}: {e}"))
                })?;
                let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let text = record.get(prompt_col).ok_or_else(|| {
                    StudyError::Import(format!("{source} line {line}: the Prompt field is missing"))
                })?;
                prompts.push(NewPrompt {
                    text: check_text(source, line, text)?,
                    category: opt(category_col.and_then(|c| record.get(c))),
                    challenge: opt(challenge_col.and_then(|c| record.get(c))),
                    external_id: opt(id_col.and_then(|c| record.get(c))),
                });
            }
        }
    }
    if prompts.is_empty() {
        return Err(StudyError::Import(format!("{source}: no prompts found")));
    }
    Ok(prompts)
}

/// Result of an import: how many prompts were new and how many were already in the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportCount {
    pub added: u64,
    pub existing: u64,
}

/// Stores parsed prompts in one transaction; prompts already in the study are kept as they are.
pub async fn import_prompts(
    db: &Db,
    study: &Study,
    prompts: &[NewPrompt],
) -> Result<ImportCount, StudyError> {
    let mut tx = db.pool.begin().await?;
    let mut added = 0;
    for p in prompts {
        if crate::db::content::insert_prompt(&mut tx, study.id, p)
            .await?
            .1
        {
            added += 1;
        }
    }
    tx.commit().await?;
    Ok(ImportCount {
        added,
        existing: prompts.len() as u64 - added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parti_tsv_keeps_category_and_challenge() {
        let tsv = "Prompt\tCategory\tChallenge\tNote\nA red cube\tArtifacts\tSimple Detail\t\n\"quoted\" dog\tAnimals\tBasic\tnote\n";
        let p = parse_prompts("p.tsv", tsv, PromptFormat::detect("p.tsv", tsv)).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].category.as_deref(), Some("Artifacts"));
        assert_eq!(p[1].text, "\"quoted\" dog");
        assert_eq!(p[1].challenge.as_deref(), Some("Basic"));
    }

    #[test]
    fn csv_with_and_without_category() {
        let csv = "prompt,category\n\"a cat, sleeping\",Animals\na dog\n";
        let p = parse_prompts("p.csv", csv, PromptFormat::Csv).unwrap();
        assert_eq!(p[0].text, "a cat, sleeping");
        assert_eq!(p[1].category, None);
    }

    #[test]
    fn text_skips_blank_lines_and_reports_long_lines() {
        let p = parse_prompts("p.txt", "one\n\ntwo\n", PromptFormat::Text).unwrap();
        assert_eq!(p.len(), 2);
        let long = format!("ok\n{}\n", "x".repeat(3000));
        let err = parse_prompts("p.txt", &long, PromptFormat::Text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.txt line 2"), "{err}");
    }

    #[test]
    fn a_nul_byte_is_refused_with_its_line_in_every_format() {
        for (name, content, format) in [
            ("p.txt", "one\ntw\0o\n", PromptFormat::Text),
            ("p.csv", "prompt\none\n\"a\0b\"\n", PromptFormat::Csv),
            (
                "p.tsv",
                "Prompt\tCategory\nok\tX\nbad\tY\0\n",
                PromptFormat::PartiTsv,
            ),
        ] {
            let err = parse_prompts(name, content, format)
                .unwrap_err()
                .to_string();
            let line = if name == "p.txt" { 2 } else { 3 };
            assert!(
                err.contains(&format!("{name} line {line}")) && err.contains("NUL"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_prompt_column_is_named() {
        let err = parse_prompts("p.csv", "text,category\na,b\n", PromptFormat::Csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("Prompt"), "{err}");
    }
}
