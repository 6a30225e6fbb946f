//! Why a poll of the source was refused: the reason (a metric label) and what to log.

use super::source::SourceError;
use crate::report::Report;
use crate::snapshot::SnapshotError;

/// Why a poll was refused; its label is the `reason` of
/// `permitgate_replication_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RefusalReason {
    /// The source did not answer, or an object is missing.
    Fetch,
    BadSignature,
    UnknownKey,
    HashMismatch,
    Rollback,
    Chain,
    Corrupt,
    Manifest,
    HashKey,
    Storage,
}

impl RefusalReason {
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Why a poll was refused: the reason, and the error that refused it (its chain kept,
/// printed whole in the log).
#[derive(Debug, thiserror::Error)]
#[error("replication refused ({})", reason.label())]
pub struct Refusal {
    pub reason: RefusalReason,
    #[source]
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

impl Refusal {
    pub(super) fn new(
        reason: RefusalReason,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Refusal {
        Refusal {
            reason,
            cause: cause.into(),
        }
    }

    /// The cause and every cause under it, on one line.
    pub fn detail(&self) -> String {
        Report(&*self.cause).to_string()
    }
}

impl From<SnapshotError> for Refusal {
    fn from(e: SnapshotError) -> Refusal {
        let reason = match &e {
            SnapshotError::BadSignature { .. } => RefusalReason::BadSignature,
            SnapshotError::UnknownKey { .. } => RefusalReason::UnknownKey,
            SnapshotError::HashMismatch { .. } => RefusalReason::HashMismatch,
            SnapshotError::HashKeyMismatch { .. } => RefusalReason::HashKey,
            SnapshotError::Size { .. }
            | SnapshotError::NotASnapshot { .. }
            | SnapshotError::WrongKind { .. }
            | SnapshotError::Corrupt { .. } => RefusalReason::Corrupt,
            SnapshotError::Manifest(_) => RefusalReason::Manifest,
            SnapshotError::Chain(_) => RefusalReason::Chain,
            SnapshotError::Io { .. } => RefusalReason::Storage,
            SnapshotError::Missing { .. } => RefusalReason::Fetch,
            SnapshotError::NoBase => RefusalReason::Manifest,
        };
        Refusal::new(reason, e)
    }
}

impl From<SourceError> for Refusal {
    fn from(e: SourceError) -> Refusal {
        let reason = match &e {
            SourceError::TooLarge { .. } => RefusalReason::Manifest,
            SourceError::Object { source, .. } if source.is_not_the_named_object() => {
                RefusalReason::HashMismatch
            }
            _ => RefusalReason::Fetch,
        };
        Refusal::new(reason, e)
    }
}
