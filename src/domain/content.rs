//! What studies are made of, as the database stores it: prompts, image files, prepared
//! images ready to insert, and candidate pairs with their counts.

use uuid::Uuid;

/// A prompt to import: its text and the optional columns of a prompts file.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrompt {
    pub text: String,
    pub category: Option<String>,
    pub challenge: Option<String>,
    pub external_id: Option<String>,
}

/// A stored file: its hash and its path relative to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub sha256: String,
    pub file: String,
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

/// One pair as the database holds it.
#[derive(Debug, Clone)]
pub struct PairRow {
    pub id: Uuid,
    pub prompt_id: Uuid,
    pub prompt_text: String,
    pub model_pair_id: Uuid,
    pub image_a: Uuid,
    pub image_b: Uuid,
    pub issued: u64,
    pub votes: u64,
    /// Votes with model A on the left.
    pub a_left: u64,
}
