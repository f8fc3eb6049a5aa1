//! Declarative pipelines: a TOML file per experiment, run by `nabla FILE`.
//!
//! `schema.rs` says what a file may contain (and is printed by `nabla
//! schema`); `load.rs` reads and validates it; `run.rs` runs its stages in
//! order (`samples.rs`, `gradcheck.rs`, `sweep` and `train.rs`,
//! `contour.rs`), each adding figures and numbers to a `Report`; `output.rs`
//! stages every file and moves them into place only when the run succeeded.

pub mod apply;
mod budget;
pub(crate) mod checkpoint;
pub(crate) mod confusion;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod names;
pub mod output;
mod report;
mod run;
pub mod schema;
pub mod schema_doc;
pub(crate) mod stages;
pub mod time;
pub(crate) mod validate;

pub use load::{check_paths, load, parse, ConfigError, Loaded};
pub use model::network_table;

/// The memory a run of the file reaches at most, as `nabla check` prints
/// it: `memory: about 412 MB at most, while training, a step of 64
/// examples` (see `budget/memory.rs` for what it counts).
pub fn memory_line(l: &Loaded) -> String {
    budget::memory_line(&l.pipeline)
}

pub use run::{default_out, run, target, RunError, RunOptions};
pub use stages::scaling;
