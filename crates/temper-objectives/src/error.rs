//! Errors of the objectives: invalid settings and inputs whose shapes do not fit together.
//! Values are never checked here (that would need a device read); shapes and settings are.

/// What went wrong before any tensor arithmetic ran.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ObjectiveError {
    /// A setting outside the range where its formula is defined, e.g. `beta <= 0`.
    #[error("invalid setting `{setting}` = {value}: {reason}")]
    InvalidSetting {
        setting: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// Two inputs whose shapes must agree do not.
    #[error("shape mismatch: {what}: expected {expected:?}, got {got:?}")]
    Shape {
        what: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A batch that cannot be split as asked, e.g. GRPO rewards not a multiple of the group size.
    #[error("{0}")]
    Batch(String),
    /// A loss name no anchor knows.
    #[error("unknown loss `{0}`; expected one of: {1}")]
    UnknownLoss(String, String),
}

/// Checks that `value` lies where a formula is defined.
pub(crate) fn check_setting(
    setting: &'static str,
    value: f64,
    valid: bool,
    reason: &'static str,
) -> Result<(), ObjectiveError> {
    if valid && value.is_finite() {
        Ok(())
    } else {
        Err(ObjectiveError::InvalidSetting {
            setting,
            value,
            reason,
        })
    }
}

/// Checks that two inputs have the same dimensions.
pub(crate) fn check_same_shape(
    what: &'static str,
    expected: &[usize],
    got: &[usize],
) -> Result<(), ObjectiveError> {
    if expected == got {
        Ok(())
    } else {
        Err(ObjectiveError::Shape {
            what,
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }
}
