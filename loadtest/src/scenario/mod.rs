//! `permitgate-load scenario NAME`: measurements that need more than one process (gateways,
//! nginx, the generators), run in rounds and summarised as JSON (`summary.json`) and as
//! the markdown table docs/benchmarks.md shows (`table.md`), with every run's own JSON
//! report beside them. [`lab`] holds what every scenario does the same way (data, configs,
//! processes, reports), [`stats`] the medians, ratios and tables.

mod ab;
mod attacks;
mod audit_writer;
mod compare;
mod fanout;
mod lab;
mod overload;
mod propagation;
mod publish_memory;
mod revocation;
mod stats;
mod swap;

#[derive(clap::Args, Debug)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand, Debug)]
enum Which {
    /// Before authentication: idle TCP, idle TLS, ClientHello replays and handshake floods
    /// beside a victim partner (src/scenario/attacks.rs).
    Doors(attacks::Args),
    /// The price of a request: batches of receipts beside a victim partner.
    Costs(attacks::Args),
    /// After authentication: slow bodies, dribbles and held long-polls beside a victim.
    Isolation(attacks::Args),
    /// A partner flooding link checks, with and without a rate limit, beside a victim.
    Noisy(attacks::Args),
    /// The gateway against nginx serving the same answer with the same mTLS.
    Compare(compare::Args),
    /// Two gateway builds in turn: did a change cost anything.
    Ab(ab::Args),
    /// Overload: open loop at half and at three times the sustainable rate.
    Overload(overload::Args),
    /// A publication through origin, relay and follower.
    Propagation(propagation::Args),
    /// One relay, a fleet of simulated followers, partner traffic beside them.
    Fanout(fanout::Args),
    /// A new 10M-document base swapped in under load.
    Swap(swap::Args),
    /// The audit trail's writer thread: CPU per record, records per write(2) (perf).
    AuditWriter(audit_writer::Args),
    /// Peak memory and time of `permitgate publish` for N documents.
    PublishMemory(publish_memory::Args),
    /// A temporary permit revoked through the authority API, until a follower behind a
    /// relay refuses it (src/scenario/revocation.rs).
    Revocation(revocation::Args),
}

pub fn run(a: ScenarioArgs) -> anyhow::Result<()> {
    match a.which {
        Which::Doors(a) => attacks::run(attacks::Kind::Doors, a),
        Which::Costs(a) => attacks::run(attacks::Kind::Costs, a),
        Which::Isolation(a) => attacks::run(attacks::Kind::Isolation, a),
        Which::Noisy(a) => attacks::run(attacks::Kind::Noisy, a),
        Which::Compare(a) => compare::run(a),
        Which::Ab(a) => ab::run(a),
        Which::Overload(a) => overload::run(a),
        Which::Propagation(a) => propagation::run(a),
        Which::Fanout(a) => fanout::run(a),
        Which::Swap(a) => swap::run(a),
        Which::AuditWriter(a) => audit_writer::run(a),
        Which::PublishMemory(a) => publish_memory::run(a),
        Which::Revocation(a) => revocation::run(a),
    }
}
