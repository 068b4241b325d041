//! One vote as it appears in the votes CSV that the platform exports and `arenaxl report` reads.

pub use crate::domain::votes::{Choice, VoteRecord, BROKEN_MARKER};

/// Columns every votes file must have.
pub const REQUIRED_COLUMNS: [&str; 5] = [
    "participant_id",
    "prompt_id",
    "model_left",
    "model_right",
    "choice",
];

/// Column order `write_votes_csv` uses (the platform's export format). The last three were
/// appended later; files without them still read.
pub const CSV_HEADER: [&str; 12] = [
    "participant_id",
    "prompt_id",
    "model_left",
    "model_right",
    "choice",
    "category",
    "gold",
    "response_ms",
    "created_at",
    "platform",
    "external_id",
    "fast",
];

/// Why a votes file was rejected; every variant names the file and, where there is one,
/// the line (1-based, the header is line 1) and the field.
#[derive(Debug, thiserror::Error)]
pub enum VotesError {
    #[error("{source_name}: the header has no '{column}' column (required: participant_id, prompt_id, model_left, model_right, choice)")]
    MissingColumn {
        source_name: String,
        column: &'static str,
    },
    #[error("{source_name} line {line}, field '{field}': {message}")]
    Field {
        source_name: String,
        line: u64,
        field: &'static str,
        message: String,
    },
    #[error("{source_name}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Csv {
        source_name: String,
        line: Option<u64>,
        message: String,
    },
}

impl VotesError {
    /// The line the problem is on, when it is on one.
    pub fn line(&self) -> Option<u64> {
        match self {
            VotesError::MissingColumn { .. } => Some(1),
            VotesError::Field { line, .. } => Some(*line),
            VotesError::Csv { line, .. } => *line,
        }
    }

    /// The field at fault, for field errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            VotesError::MissingColumn { column, .. } => Some(column),
            VotesError::Field { field, .. } => Some(field),
            VotesError::Csv { .. } => None,
        }
    }
}

impl VoteRecord {
    /// How the participant is named in lists a researcher acts on: their crowd ID when
    /// there is one, else the platform's internal ID.
    pub fn person(&self) -> &str {
        self.external_id.as_deref().unwrap_or(&self.participant_id)
    }

    /// For a gold row: whether the participant picked the side that is not broken.
    /// `None` for comparison rows.
    pub fn gold_passed(&self) -> Option<bool> {
        if !self.gold {
            return None;
        }
        let left_broken = self.model_left.ends_with(BROKEN_MARKER);
        Some(match self.choice {
            Choice::Left => !left_broken,
            Choice::Right => left_broken,
            Choice::Tie | Choice::BothBad => false,
        })
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => Some(false),
        "true" | "1" | "yes" => Some(true),
        _ => None,
    }
}

/// Reads a votes CSV (header row; extra columns ignored). `source` names the input in
/// errors. Rejects, with line and field: a missing required column or value, an unknown
/// choice, a bad `gold` bool or `response_ms` integer, a `created_at` that is not RFC 3339,
/// a model compared with itself, a broken-marker model outside a gold row, and a gold
/// row without exactly one broken side.
pub fn read_votes_csv<R: std::io::Read>(
    reader: R,
    source: &str,
) -> Result<Vec<VoteRecord>, VotesError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let csv_err = |e: csv::Error| VotesError::Csv {
        source_name: source.to_string(),
        line: e.position().map(|p| p.line()),
        message: e.to_string(),
    };
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let mut required = [0usize; 5];
    for (slot, name) in required.iter_mut().zip(REQUIRED_COLUMNS) {
        *slot = col(name).ok_or_else(|| VotesError::MissingColumn {
            source_name: source.to_string(),
            column: name,
        })?;
    }
    let [c_part, c_prompt, c_left, c_right, c_choice] = required;
    let (c_cat, c_gold, c_ms, c_at) = (
        col("category"),
        col("gold"),
        col("response_ms"),
        col("created_at"),
    );
    let (c_platform, c_external, c_fast) = (col("platform"), col("external_id"), col("fast"));

    let mut votes = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(e)),
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let fail = |field: &'static str, message: String| VotesError::Field {
            source_name: source.to_string(),
            line,
            field,
            message,
        };
        let required_field = |idx: usize, field: &'static str| -> Result<String, VotesError> {
            match record.get(idx) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                Some(_) => Err(fail(field, "empty value".into())),
                None => Err(fail(
                    field,
                    "missing value (the row has too few fields)".into(),
                )),
            }
        };
        let optional =
            |idx: Option<usize>| idx.and_then(|i| record.get(i)).filter(|v| !v.is_empty());

        let participant_id = required_field(c_part, "participant_id")?;
        let prompt_id = required_field(c_prompt, "prompt_id")?;
        let model_left = required_field(c_left, "model_left")?;
        let model_right = required_field(c_right, "model_right")?;
        let choice: Choice = required_field(c_choice, "choice")?
            .parse()
            .map_err(|m| fail("choice", m))?;
        let gold = match optional(c_gold) {
            Some(v) => parse_bool(v)
                .ok_or_else(|| fail("gold", format!("'{v}' is not a bool (true/false/1/0)")))?,
            None => false,
        };
        let response_ms = match optional(c_ms) {
            Some(v) => Some(
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| {
                        fail(
                            "response_ms",
                            format!("'{v}' is not a non-negative integer"),
                        )
                    })?,
            ),
            None => None,
        };
        let created_at = match optional(c_at) {
            Some(v) => {
                chrono::DateTime::parse_from_rfc3339(v.trim()).map_err(|e| {
                    fail(
                        "created_at",
                        format!("'{v}' is not an RFC 3339 timestamp: {e}"),
                    )
                })?;
                Some(v.to_string())
            }
            None => None,
        };
        let fast = match optional(c_fast) {
            Some(v) => parse_bool(v)
                .ok_or_else(|| fail("fast", format!("'{v}' is not a bool (true/false/1/0)")))?,
            None => false,
        };
        let left_broken = model_left.ends_with(BROKEN_MARKER);
        let right_broken = model_right.ends_with(BROKEN_MARKER);
        if gold {
            if left_broken == right_broken {
                return Err(fail(
                    "gold",
                    format!("a gold row needs exactly one model name ending in '{BROKEN_MARKER}'"),
                ));
            }
        } else {
            if model_left == model_right {
                return Err(fail(
                    "model_right",
                    format!(
                        "model '{model_left}' is compared with itself (only gold rows may do that)"
                    ),
                ));
            }
            if left_broken || right_broken {
                return Err(fail(
                    if left_broken {
                        "model_left"
                    } else {
                        "model_right"
                    },
                    format!(
                        "model names ending in '{BROKEN_MARKER}' are only allowed in gold rows"
                    ),
                ));
            }
        }
        votes.push(VoteRecord {
            participant_id,
            prompt_id,
            model_left,
            model_right,
            choice,
            category: optional(c_cat).map(str::to_string),
            gold,
            response_ms,
            created_at,
            platform: optional(c_platform).map(str::to_string),
            external_id: optional(c_external).map(str::to_string),
            fast,
        });
    }
    Ok(votes)
}

/// Writes votes in the export format (`CSV_HEADER` order); absent optional values are
/// empty fields. The output reads back with `read_votes_csv` to the same records (an
/// empty-string category reads back as `None`).
pub fn write_votes_csv<W: std::io::Write>(writer: W, votes: &[VoteRecord]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(writer);
    w.write_record(CSV_HEADER)?;
    for v in votes {
        let ms = v.response_ms.map(|m| m.to_string()).unwrap_or_default();
        w.write_record([
            v.participant_id.as_str(),
            v.prompt_id.as_str(),
            v.model_left.as_str(),
            v.model_right.as_str(),
            v.choice.as_str(),
            v.category.as_deref().unwrap_or(""),
            if v.gold { "true" } else { "false" },
            ms.as_str(),
            v.created_at.as_deref().unwrap_or(""),
            v.platform.as_deref().unwrap_or(""),
            v.external_id.as_deref().unwrap_or(""),
            if v.fast { "true" } else { "false" },
        ])?;
    }
    w.flush()
}
