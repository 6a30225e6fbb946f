//! The integration tests, one binary: each module covers one capability, and the
//! harness in `common` starts real gateways (sockets, TLS, certificates). One link instead
//! of one per file keeps CI's build short on a small machine.

mod common;

mod architecture;
mod audit;
mod cli;
mod compromised_sources;
mod crash;
mod deploy;
mod doc_examples;
mod door;
mod generated_client;
mod handler;
mod hostile;
mod isolation;
mod limits;
mod link_checks;
mod metrics;
mod mtls;
mod openapi;
mod ops;
mod origin;
mod partner_hsm;
mod partner_lifecycle;
mod problems;
mod rate_limits;
mod receipts;
mod reload;
mod replication;
mod s3;
mod signals;
mod stock_clients;
mod temp_permits;
mod verifier_page;
