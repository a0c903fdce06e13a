//! Temper: post-train large language models in Rust. This facade re-exports the crates of the
//! workspace (see `docs/architecture.md`); each is usable on its own.

pub use temper_data as data;
pub use temper_kernels as kernels;
pub use temper_model as model;
pub use temper_objectives as objectives;
pub use temper_plot as plot;
pub use temper_train as train;
pub use temper_verifiers as verifiers;
