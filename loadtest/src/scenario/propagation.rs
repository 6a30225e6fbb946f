//! Propagation of a publication: publish → origin → relay → follower, default settings.
//! Three gateways as shipped (audit on): the origin serves the demo repository (it watches
//! the directory), a relay follows the origin over mTLS, a follower follows the relay.
//! `permitgate-load --propagation N` publishes N status changes into the origin's
//! repository and times each until the follower answers with its version
//! (src/propagation.rs). The relay and the follower start from empty state each round.

use std::time::Duration;

use permitgate_testkit::config_edit::{self, Edit};
use serde_json::json;

use super::lab::{Lab, LabArgs, Pin, Server};
use super::stats::{figure, Table};

#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Publications timed a round.
    #[arg(long, default_value_t = 20)]
    publications: usize,
}

/// A `[replication]` table following `source` (its partner port) as the demo's `relay`
/// partner, with state of its own (emptied); serving no repository of its own, nor the
/// origin's API.
pub fn follow(lab: &Lab, name: &str, source: std::net::SocketAddr) -> Vec<Edit> {
    let state = format!("state-{name}");
    let _ = std::fs::remove_dir_all(lab.dir.join(&state));
    vec![
        config_edit::remove("snapshot.repo"),
        config_edit::remove("origin"),
        config_edit::set(
            "replication.source",
            format!("https://localhost:{}/v1/replication", source.port()),
        ),
        config_edit::set("replication.state_dir", state),
        config_edit::set("replication.ca", "pki/ca.crt"),
        config_edit::set("replication.client_cert", "pki/partners/relay.crt"),
        config_edit::set("replication.client_key", "pki/partners/relay.key"),
    ]
}

/// Waits (at most 5 s) until `server` holds a follower's long-poll; a build without the
/// gauge is given the 5 s.
pub fn holds_a_long_poll(server: &Server) {
    for _ in 0..100 {
        if server
            .metric("permitgate_admission_in_use{pool=\"relay_places\"}")
            .is_some_and(|v| v >= 1.0)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lab = Lab::new("propagation", &a.lab)?;
    let mut rows = Vec::new();
    for round in 1..=a.rounds {
        let origin_config = lab.config("origin", Vec::new())?;
        let origin = lab.serve(&format!("origin-{round}"), &origin_config, Pin::ANY, None)?;
        let relay_config = lab.config("relay", follow(&lab, "relay", origin.ports.listen))?;
        let relay = lab.serve(&format!("relay-{round}"), &relay_config, Pin::ANY, None)?;
        let follower_config =
            lab.config("follower", follow(&lab, "follower", relay.ports.listen))?;
        let follower = lab.serve(
            &format!("follower-{round}"),
            &follower_config,
            Pin::ANY,
            None,
        )?;
        // Every hop in its long-poll before the first publication.
        holds_a_long_poll(&origin);
        holds_a_long_poll(&relay);
        let r = lab.load(
            &format!("round-{round}"),
            follower.ports.listen,
            &format!("--propagation {} --fail-on-errors", a.publications),
            Pin::ANY,
        )?;
        drop((follower, relay, origin));
        let row = json!({
            "round": round,
            "sightings": r["samples_ms"].as_array().map_or(0, Vec::len),
            "lost": r["lost"],
            "median_ms": r["median_ms"],
            "p90_ms": r["p90_ms"],
            "p99_ms": r["p99_ms"],
            "max_ms": r["max_ms"],
        });
        println!("{row}");
        rows.push(row);
    }
    let mut t = Table::new(&[
        "round",
        "publications seen",
        "lost",
        "median ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    ]);
    for r in &rows {
        t.row(&[
            r["round"].to_string(),
            r["sightings"].to_string(),
            r["lost"].to_string(),
            format!("{:.1}", figure(r, "median_ms")),
            format!("{:.1}", figure(r, "p90_ms")),
            format!("{:.1}", figure(r, "p99_ms")),
            format!("{:.1}", figure(r, "max_ms")),
        ]);
    }
    lab.finish(
        json!({"scenario": "propagation", "settings": a, "rounds": rows}),
        t.markdown(),
    )
}
