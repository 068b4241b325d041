//! The study's domain types live in `crate::domain`; re-exported here for the study layer's users.

pub use crate::domain::study::*;
pub use crate::domain::votes::Choice;
