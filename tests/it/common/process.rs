//! The `permitgate` binary as a separate process: for signals and crashes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use permitgate_testkit::process::{
    free_port, ops_get, ready, signal, wait_exit, wait_ready, Running,
};

pub fn start(config: &Path) -> Running {
    serve(Command::new(env!("CARGO_BIN_EXE_permitgate")), config)
}

/// Like [`start`], on CPU 0 alone (taskset(1)): a gateway on a one-CPU machine.
pub fn start_on_one_cpu(config: &Path) -> Running {
    let mut taskset = Command::new("taskset");
    taskset
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_permitgate"));
    serve(taskset, config)
}

/// `permitgate serve` with `config`, started by `command` (the binary, or a wrapper's
/// command line ending in it).
fn serve(mut command: Command, config: &Path) -> Running {
    Running(
        command
            .args(["serve", "--config", &config.to_string_lossy()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start permitgate"),
    )
}

/// The nice value of `pid`'s thread called `name`, once it runs.
pub fn thread_nice(pid: u32, name: &str) -> Option<i64> {
    use permitgate_testkit::process::{stat_fields, threads_named};
    let thread = threads_named(pid, name).into_iter().next()?;
    stat_fields(&thread.join("stat"))?.get(16)?.parse().ok()
}

/// Like [`start`], with the log settings given and standard error written to `log`.
pub fn start_logging(config: &Path, env: &[(&str, &str)], log: &Path) -> Running {
    let file = std::fs::File::create(log).expect("log file");
    Running(
        Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(["serve", "--config", &config.to_string_lossy()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start permitgate"),
    )
}

/// `permitgate demo` as a process, with the default data in a directory of its own, on
/// free ports (the gateway, its metrics, the verifier page, the origin); stopped on drop.
pub struct Demo {
    _child: Running,
    pub dir: std::path::PathBuf,
    pub port: u16,
    pub metrics: SocketAddr,
    /// The verifier page's listener.
    pub verify: SocketAddr,
    /// The origin's (the authority's API).
    pub origin: SocketAddr,
    _tmp: tempfile::TempDir,
}

pub fn demo() -> Demo {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("var/demo");
    let log = tmp.path().join("demo.log");
    // A free port may be taken by another test before the demo binds it: then the demo
    // exits at once, and is started again on other ports.
    for _ in 0..3 {
        let (listen, metrics, verify, origin) =
            (free_port(), free_port(), free_port(), free_port());
        let mut child = Running(
            Command::new(env!("CARGO_BIN_EXE_permitgate"))
                .args(["demo", "--dir", &dir.to_string_lossy()])
                .args(["--listen", &listen.to_string()])
                .args(["--metrics-listen", &metrics.to_string()])
                .args(["--verify-listen", &verify.to_string()])
                .args(["--origin-listen", &origin.to_string()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("demo log"))
                .spawn()
                .expect("start the demo"),
        );
        // The default data is 100,000 residents, made by a debug build while the other
        // tests take both cores: minutes, not seconds, at worst.
        let deadline = Instant::now() + Duration::from_secs(240);
        while Instant::now() < deadline && !ready(metrics) {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if ready(metrics) {
            return Demo {
                _child: child,
                dir,
                port: listen.port(),
                metrics,
                verify,
                origin,
                _tmp: tmp,
            };
        }
        assert!(
            child.try_wait().ok().flatten().is_some(),
            "demo not ready within four minutes: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    panic!(
        "the demo exited three times: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
