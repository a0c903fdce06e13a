//! Errors of this crate. Responses never cause one: only ground truths and kwargs a verifier
//! cannot read, and names the registry does not know.

use thiserror::Error;

/// An IFEval instruction that cannot be built from its id and kwargs.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InstructionError {
    #[error("unknown IFEval instruction id `{0}`")]
    UnknownInstruction(String),
    #[error("instruction `{id}` needs kwarg `{kwarg}`")]
    MissingKwarg { id: String, kwarg: &'static str },
    #[error("instruction `{id}`: kwarg `{kwarg}` {reason}")]
    BadKwarg {
        id: String,
        kwarg: &'static str,
        reason: String,
    },
    #[error("{ids} instruction ids but {kwargs} kwargs")]
    LengthMismatch { ids: usize, kwargs: usize },
}

/// Why a row could not be verified.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum VerifyError {
    #[error("no verifier named `{0}`")]
    UnknownVerifier(String),
    #[error("{verifier}: ground truth {reason}")]
    BadGroundTruth {
        verifier: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    #[error("{ground_truths} ground truths for {datasets} datasets")]
    CountMismatch {
        ground_truths: usize,
        datasets: usize,
    },
}
