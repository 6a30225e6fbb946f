//! Gateways and tools as separate processes: free ports, children stopped on drop, the
//! plain-HTTP ops listener (readiness, metrics), signals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A loopback port free a moment ago (the OS rarely hands it out again that soon).
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// net.core.somaxconn of this network namespace: how many connections that have sent
/// nothing the gateway's partner port can leave waiting in the kernel (its SYN queue).
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
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

/// One plain-HTTP GET (the metrics listener, the demo's verifier page); the whole answer
/// (head and body), or `None`.
pub fn ops_get(metrics: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_millis(200)).ok()?;
    // Scraped under load too (the scenarios), where an answer may take a while.
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
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

/// The body of a 200 answer to a plain-HTTP GET, or `None`.
pub fn ops_body(addr: SocketAddr, path: &str) -> Option<String> {
    let text = ops_get(addr, path)?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_owned())
}

/// SIGTERM, then up to `within` for the process to exit (it drains); killed after that.
pub fn terminate(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    // Already gone (it failed to start, or was stopped before): nothing to say.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    wait_exit(child, within).or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        None
    })
}

/// The /proc task directories of `pid`'s threads called `name`.
pub fn threads_named(pid: u32, name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| t.path())
        .collect()
}

/// The fields of a /proc `stat` file after the command name (which may hold spaces, in
/// parentheses): index 0 is the state (field 3), 11 and 12 the user and system CPU time
/// in clock ticks (fields 14 and 15), 16 the nice value (field 19).
pub fn stat_fields(stat: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(stat).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User and system CPU time, in clock ticks, of a /proc `stat` file (a process's: all its
/// threads, or one thread's).
pub fn cpu_ticks(stat: &std::path::Path) -> Option<u64> {
    let f = stat_fields(stat)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// [`cpu_ticks`] in seconds.
pub fn cpu_seconds(stat: &std::path::Path) -> Option<f64> {
    cpu_ticks(stat).map(|t| t as f64 / clock_ticks())
}

/// The CPU clock's ticks a second (`getconf CLK_TCK`), asked once.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
