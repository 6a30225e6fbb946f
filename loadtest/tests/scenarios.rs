//! Scenarios end to end: `permitgate-load scenario …` starting real gateways (the
//! workspace's `permitgate` binary) on loopback, measuring, and writing its summary and
//! table. Tiny runs: what is checked is that the pieces fit (configs, processes, reports),
//! not any figure.

use std::path::PathBuf;
use std::process::Command;

/// The `permitgate` binary the workspace built beside this test (cargo test --workspace
/// builds it for the gateway's own tests); `None` says SKIPPED unless CI requires it.
fn gateway_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("test path");
    // target/<profile>/deps/scenarios-<hash> → target/<profile>/permitgate
    let bin = exe.parent()?.parent()?.join("permitgate");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("PERMITGATE_REQUIRE_SCENARIOS").is_none(),
        "{} is missing: build the workspace (cargo test --workspace)",
        bin.display()
    );
    eprintln!(
        "SKIPPED: no {} (cargo test --workspace builds it)",
        bin.display()
    );
    None
}

fn scenario(args: &[&str]) -> (serde_json::Value, String) {
    let Some(pg) = gateway_binary() else {
        return (serde_json::Value::Null, String::new());
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, out) = (tmp.path().join("data"), tmp.path().join("out"));
    let run = Command::new(env!("CARGO_BIN_EXE_permitgate-load"))
        .arg("scenario")
        .args(args)
        .arg("--pg")
        .arg(&pg)
        .args(["--records", "300", "--dir"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run permitgate-load");
    assert!(
        run.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = std::fs::read(out.join("summary.json")).expect("summary.json");
    let table = std::fs::read_to_string(out.join("table.md")).expect("table.md");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains(&table),
        "the table is printed"
    );
    (serde_json::from_slice(&summary).expect("JSON"), table)
}

#[test]
fn propagation_through_origin_relay_and_follower_is_summarised() {
    let (summary, table) = scenario(&["propagation", "--publications", "2"]);
    if summary.is_null() {
        return;
    }
    let round = &summary["rounds"][0];
    assert_eq!(
        (round["sightings"].as_u64(), round["lost"].as_u64()),
        (Some(2), Some(0)),
        "{summary}"
    );
    assert!(
        table.starts_with("| round | publications seen |"),
        "{table}"
    );
    assert!(table.contains("\n| 1 | 2 | 0 |"), "{table}");
}

#[test]
fn an_ab_run_reports_both_builds_and_their_ratios() {
    let Some(pg) = gateway_binary() else {
        return;
    };
    let pg = pg.display().to_string();
    let (summary, table) = scenario(&[
        "ab",
        &pg,
        &pg,
        "--rounds",
        "2",
        "--duration",
        "0.5",
        "--connections",
        "2",
    ]);
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "{summary}");
    assert!(
        runs.iter()
            .all(|r| r["errors"] == 0 && r["requests_per_second"].as_f64() > Some(0.0)),
        "{summary}"
    );
    let ratios = summary["b_over_a_requests_per_second"]
        .as_array()
        .expect("ratios");
    assert_eq!(ratios.len(), 2);
    assert!(
        table.contains("| A |") && table.contains("| B |"),
        "{table}"
    );
}
