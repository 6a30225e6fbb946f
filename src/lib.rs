//! permitgate: an mTLS verification gateway for the documents of Hong Kong, Macao and
//! Taiwan residents. See README.md for the tour and ../shared/DESIGN.md for the design.
//!
//! Flow, one direction only: `tls` (who is this partner?) → `http` (routing, limits,
//! problem documents) → `checks` (the domain answers) → `store` (snapshot index, overlay,
//! cache). `snapshot`, `publish`, `metrics`, `config` and `demo` serve from the side.
//! `temp_permit` and `receipt` are the two signed objects (both `sealed`, both checked
//! against a `keyring`); `printable` puts them on paper.
// `unsafe` is denied for every target by the workspace lints (Cargo.toml); one function
// is allowed it (overload::socket_wait: TCP_INFO has no safe wrapper).

pub mod audit;
pub mod checks;
pub mod clock;
pub mod command_line;
pub mod config;
pub mod day;
#[cfg(feature = "tools")]
pub mod demo;
pub mod document;
pub mod http;
pub mod issuance;
pub mod key_files;
pub mod keyring;
pub mod metrics;
pub mod origin;
pub mod overload;
pub mod pace;
pub mod partner;
pub mod partner_ca;
pub mod person_name;
pub mod plain_http;
#[cfg(feature = "tools")]
pub mod printable;
pub mod priority;
pub mod publish;
pub mod rate_limit;
pub mod receipt;
pub mod replication;
pub mod report;
pub mod revocation_list;
pub mod sealed;
pub mod server;
pub mod shares;
pub mod snapshot;
pub mod store;
pub mod temp_permit;
pub mod terms;
pub mod tls;
pub mod verify_site;
pub mod work;
