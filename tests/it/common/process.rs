//! The `permitgate` binary as a separate process: for signals and crashes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free a moment ago (the OS rarely hands it out again that soon).
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A child process killed when dropped: a test that fails halfway leaves no gateway
/// running behind it.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start(config: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_permitgate"))
            .args(["serve", "--config", &config.to_string_lossy()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start permitgate"),
    )
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

/// One plain-HTTP GET (the metrics listener, the demo's verifier page); the whole answer
/// (head and body), or `None`.
pub fn ops_get(metrics: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_millis(200)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: m\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

pub fn ready(metrics: SocketAddr) -> bool {
    ops_get(metrics, "/readyz")
        .is_some_and(|out| out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"))
}

/// Waits (at most `within`) for the gateway behind `metrics` to be ready.
pub fn wait_ready(metrics: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready(metrics) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends a signal by name (`TERM`, `HUP`) with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Waits (at most `within`) for the process to exit.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
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
