//! The origin: the authority's own writes (issuing and revoking temporary permits) as a
//! service of the one place that writes the signed data every gateway follows.
//!
//! `ledger` is what the origin knows (the newest publication and the journal of writes);
//! `writer` decides and publishes writes under one thread, with the repository's claim
//! (src/publish/claim.rs) keeping several origin processes on one chain; `api` is the
//! authority's HTTP API and `server` its mTLS listener, for callers of the authority's
//! own client CA (config `[origin]`); `metrics` what its ops listener shows.

pub mod api;
pub mod ledger;
pub mod metrics;
pub mod server;
pub mod writer;

pub use ledger::{Filter, Keys, Ledger, Permit};
pub use metrics::OriginMetrics;
pub use writer::{IssueRequest, Issued, Origin, OriginError, Revoked, Settings};
