//! Pure preference statistics: binomial tests, confidence intervals, multiple-comparison
//! corrections, anytime-valid (sequential) tests, Bradley-Terry ratings, bootstrap, agreement.
//! No I/O, no database.

pub mod agreement;
pub mod binomial;
pub mod bootstrap;
pub mod bt;
pub mod holm;
pub mod intervals;
pub mod power;
pub mod rng;
pub mod sequential;
pub mod special;
