//! The study domain: studies, prompts, images, candidate pairs, scheduling, participants
//! and votes. The rules live here, with no HTTP; SQL lives in `db`. Input is parsed into
//! these types at the boundary (`TryFrom`), so an invalid study cannot be built.

pub mod admins;
pub mod allocation;
pub mod dashboard;
pub mod error;
pub mod export;
pub mod images;
pub mod input;
pub mod known;
pub mod next;
pub mod participation;
pub mod plans;
pub mod prompts;
pub mod scheduler;
pub mod types;

pub use error::StudyError;
pub use types::*;
