//! Replication: following a signed repository published elsewhere.
//!
//! A follower polls its source's manifest (conditional, so an idle poll costs a tag
//! comparison), verifies signatures, hashes and the delta chain, refuses rollbacks, applies
//! new deltas to the live state's overlay (each atomically) or loads a new base off the
//! request path and swaps it in, and persists every accepted object and then the manifest
//! in its state directory, a repo layout a restarted gateway serves from at once.
//! Anything refused is counted by reason and logged once per cause; the gateway keeps
//! answering from its last good state.

mod follower;
mod metrics;
mod refusal;
mod revocations;
mod s3_client;
mod source;

pub use follower::{Follower, FollowerParts, PollOutcome};
pub use metrics::ReplicationMetrics;
pub use refusal::{Refusal, RefusalReason};
pub use revocations::{take_kept_list, ListFollower};
pub use s3_client::HyperConnector;
pub use source::{s3_path, s3_store, Fetched, S3Settings, Source, SourceError, SourceUrl};
