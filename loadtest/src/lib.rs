//! permitgate-load: a load generator for permitgate (and, as a baseline, any HTTPS server
//! that answers the same requests), built on the same rustls and hyper the gateway uses.
//!
//! [`workload`] prepares the requests, [`client`] holds the connections, [`run`] drives
//! them in a closed or open loop, [`report`] turns what was measured into a summary, JSON
//! and a plot. [`hostile`] plays a hostile partner instead, for isolation measurements;
//! [`propagation`] times publications until the target serves them. [`floor`] is a
//! server, not a client: the gateway's stack with no gateway in it, for comparisons.
//! The binary in `main.rs` is the command line around [`run_load`] and [`run_attack`].

pub mod client;
pub mod floor;
pub mod followers;
pub mod hostile;
pub mod plot;
pub mod propagation;
pub mod report;
pub mod run;
pub mod workload;

use std::path::PathBuf;

pub use client::{Protocol, Target};
pub use hostile::{Attack, AttackPlan, AttackReport};
pub use propagation::{PropagationPlan, PropagationReport};
pub use report::Report;
pub use run::{Mode, Plan};
pub use workload::{Keys, Kind, Spec};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("export line {line}: {message}")]
    Export { line: usize, message: String },
    #[error("{0}")]
    Spec(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("plot: {0}")]
    Plot(String),
}

/// Prepares the workload, runs the plan against the target, and reports. `settings` is
/// echoed into the report.
pub async fn run_load(
    target: Target,
    spec: &Spec,
    plan: Plan,
    settings: serde_json::Value,
) -> Result<Report, LoadError> {
    for (name, share) in [
        ("miss share", spec.miss_share),
        ("invalid share", spec.invalid_share),
        ("receipt share", spec.receipt_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(LoadError::Spec(format!("{name} must be between 0 and 1")));
        }
    }
    if let Mode::Open { rate } = plan.mode {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(LoadError::Spec("rate must be above 0".into()));
        }
    }
    if plan.connections == 0 || spec.batch_size == 0 {
        return Err(LoadError::Spec(
            "connections and batch size must be at least 1".into(),
        ));
    }
    let pool = workload::prepare(spec)?;
    let connector = client::Connector::new(target, plan.protocol)?;
    let tally = run::execute(pool, connector, plan).await;
    Ok(Report::new(settings, &tally))
}

/// Plays the hostile partner of `plan` against the target for its duration.
pub async fn run_attack(target: Target, plan: AttackPlan) -> Result<AttackReport, LoadError> {
    if plan.connections == 0 || plan.h2_streams == 0 {
        return Err(LoadError::Spec(
            "connections and h2 streams must be at least 1".into(),
        ));
    }
    let connector = client::Connector::new(target, plan.attack.protocol())?;
    Ok(hostile::attack(connector, plan).await)
}
