//! The load generator's command line: help, one-line mistakes, exit codes.

use std::process::Command;

fn load(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_permitgate-load"))
        .args(args)
        .output()
        .expect("run permitgate-load")
}

#[test]
fn help_and_mistakes() {
    let out = load(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--protocol",
        "--rate",
        "--workload",
        "--zipf",
        "--json",
        "--plot",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    for (args, code, want) in [
        (vec!["--connections", "many"], 2, "--connections"),
        (vec!["--protocol", "h3"], 2, "h3"),
        (vec!["--duration", "5"], 1, "give --demo DIR"),
        (
            vec!["--demo", "/nonexistent", "--duration=-1"],
            1,
            "--duration",
        ),
        (
            vec!["--demo", "/nonexistent", "--miss-share", "2"],
            1,
            "miss share",
        ),
    ] {
        let out = load(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn scenarios_name_what_they_miss() {
    let out = load(&["scenario", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "doors",
        "costs",
        "isolation",
        "noisy",
        "compare",
        "ab",
        "overload",
        "propagation",
        "fanout",
        "swap",
        "audit-writer",
        "publish-memory",
        "revocation",
    ] {
        assert!(
            help.contains(name),
            "{name} missing from scenario --help: {help}"
        );
    }
    let out = load(&["scenario", "ab", "only-one-build"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<NEW>"));
    let out = load(&["scenario", "publish-memory"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<DOCUMENTS>"));
}
