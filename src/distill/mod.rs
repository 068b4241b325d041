//! Progressive layer-level knowledge distillation of SDXL-family UNets (the SSD-1B /
//! Segmind-Vega method): plans that say which transformer blocks and resnets a student
//! keeps, pruning a teacher into a student initialised by name, and training the student
//! to match the teacher's output and every kept layer. Depends on `engine` only: no HTTP,
//! no SQL.

pub mod data;
pub mod dataset;
pub mod error;
pub mod loss;
pub mod mapping;
pub mod optim;
pub mod plan;
pub mod prune;
pub mod run;
pub mod student;
pub mod train;

pub use error::{DistillError, Result};
pub use mapping::{FeatureLevel, LayerMap};
pub use plan::{Keep, MidPlan, Plan};
