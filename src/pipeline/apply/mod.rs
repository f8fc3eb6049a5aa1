//! Using what a run trained: `nabla predict` (classify images, folders and
//! IDX files) and `nabla eval` (accuracy, per-class precision and recall,
//! the confusion matrix), both from a run folder alone.
//!
//! - `manifest.rs`: `model.json`, what a run folder records to be used again;
//! - `run_model.rs`: a run folder opened and checked, ready to classify;
//! - `inputs.rs`: what the command line names, as examples;
//! - `predict.rs`, `eval.rs`: the two commands.

pub mod eval;
pub(crate) mod inputs;
pub(crate) mod manifest;
pub mod predict;
pub mod run_model;

pub use run_model::RunModel;
