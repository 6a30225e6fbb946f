//! What every scenario does the same way: the demo's data made once, configs written from
//! the demo's with the one config editor (tests/kit), gateways started as processes on
//! free loopback ports (pinned, waited for, stopped), runs of this program whose JSON
//! reports are read back, and the summary written as JSON and as a markdown table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use permitgate_testkit::config_edit::{self, Edit};
use permitgate_testkit::gateway::metric;
use permitgate_testkit::process::{free_port, ops_body, terminate, wait_ready, Running};
use serde_json::Value;

/// Where a scenario runs: its binaries, its data and its results.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct LabArgs {
    /// The gateway binary.
    #[arg(long, default_value = "target/release/permitgate")]
    pub pg: PathBuf,
    /// The demo's data, made here if missing [default: var/bench-SCENARIO].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Each run's JSON report, summary.json and table.md [default: target/scenario/SCENARIO].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Residents in the demo's data, when it is made.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
}

/// Rounds of runs that each measure `duration` seconds.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RoundArgs {
    /// Rounds; every case runs once a round, in turn.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds each run measures.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

/// `program` (probed with `probe`), installed from Debian's `package` when missing.
pub fn install_if_missing(program: &str, probe: &str, package: &str) -> anyhow::Result<()> {
    if Command::new(program).arg(probe).output().is_ok() {
        return Ok(());
    }
    println!("== installing {package}");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "apt-get update -qq && apt-get install -y -qq {package} >/dev/null"
        ))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("{program} is not installed, and apt-get could not install {package}");
    }
    Ok(())
}

pub struct Lab {
    pub pg: PathBuf,
    /// This program: the generator of every run.
    pub load: PathBuf,
    /// The demo's data (absolute: configs name files in it).
    pub dir: PathBuf,
    pub out: PathBuf,
}

/// Where a process runs: the CPUs it may use, its niceness, or a real-time policy.
#[derive(Clone, Copy)]
pub struct Pin {
    pub cpus: Option<&'static str>,
    pub nice: i32,
    /// SCHED_FIFO (`chrt -f 10`, in place of `nice`): for a measuring client that must
    /// not wait behind others on its core. It sleeps between requests, so it starves
    /// nothing.
    pub realtime: bool,
}

impl Pin {
    pub const ANY: Pin = Pin {
        cpus: None,
        nice: 0,
        realtime: false,
    };

    pub fn cpus(cpus: &'static str) -> Pin {
        Pin {
            cpus: Some(cpus),
            ..Pin::ANY
        }
    }

    /// This process (the scenario itself, which waits for runs, reads their reports and
    /// scrapes the servers' metrics) moved to the pin's CPUs: unpinned, the kernel put it
    /// on the measured server's idle core, where it once ran 4 ms while the gateway's
    /// request worker waited (`perf sched`, `scenario doors`). Threads it starts later
    /// inherit the affinity.
    pub fn apply_to_self(self) -> anyhow::Result<()> {
        let Some(cpus) = self.cpus else { return Ok(()) };
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("taskset could not move this process to CPUs {cpus}");
        }
        Ok(())
    }

    /// `program` to be started so.
    pub fn command(self, program: &Path) -> Command {
        let nice = self.nice.to_string();
        let mut wrap: Vec<&str> = Vec::new();
        if let Some(cpus) = self.cpus {
            wrap.extend(["taskset", "-c", cpus]);
        }
        if self.realtime {
            wrap.extend(["chrt", "-f", "10"]);
        } else if self.nice != 0 {
            wrap.extend(["nice", "-n", &nice]);
        }
        match wrap.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| p.display().to_string())
}

impl Lab {
    /// The lab of scenario `name`: its output directory made, the demo's data made once.
    pub fn new(name: &str, a: &LabArgs) -> anyhow::Result<Lab> {
        let dir = absolute(
            &a.dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("var/bench-{name}"))),
        )?;
        let out = absolute(
            &a.out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("target/scenario/{name}"))),
        )?;
        std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        // Made by this build's library, kept between runs (a config the demo wrote is
        // brought up to date; the data is reused).
        permitgate::demo::prepare(
            &dir,
            &permitgate::demo::DemoOptions {
                records: a.records,
                listen: any,
                metrics_listen: any,
                seed: 1,
                verify_listen: None,
                origin_listen: any,
            },
        )
        .with_context(|| format!("the demo's data in {}", dir.display()))?;
        Ok(Lab {
            pg: a.pg.clone(),
            load: std::env::current_exe().context("this program's path")?,
            dir,
            out,
        })
    }

    /// The same lab on other demo data (made by another scenario).
    pub fn with_dir(&self, dir: &Path) -> Lab {
        Lab {
            pg: self.pg.clone(),
            load: self.load.clone(),
            dir: dir.to_owned(),
            out: self.out.clone(),
        }
    }

    /// `scenario-NAME.toml` in the demo's directory: the demo's config on free ports, its
    /// audit trail in `audit-NAME` (emptied), 127.0.0.1 a partner network (the
    /// generators' handshakes are not a stranger's), then `edits`; with a partner registry
    /// of its own.
    pub fn config(&self, name: &str, edits: Vec<Edit>) -> anyhow::Result<Config> {
        let ports = Ports {
            listen: free_port(),
            metrics: free_port(),
        };
        let audit = format!("audit-{name}");
        let _ = std::fs::remove_dir_all(self.dir.join(&audit));
        let mut all = vec![
            config_edit::set("server.listen", ports.listen.to_string()),
            config_edit::set("server.metrics_listen", ports.metrics.to_string()),
            config_edit::set("audit.dir", audit),
            config_edit::set(
                "unauthenticated.partner_networks",
                config_edit::value("[\"127.0.0.1/32\"]"),
            ),
        ];
        all.extend(edits);
        let path = self.dir.join(format!("scenario-{name}.toml"));
        config_edit::write_copy(&self.dir.join("gateway.toml"), &path, all)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Config { path, ports })
    }

    /// `bin` (the gateway unless given) serving `config`, pinned, once it is ready.
    pub fn serve(
        &self,
        name: &str,
        config: &Config,
        pin: Pin,
        bin: Option<&Path>,
    ) -> anyhow::Result<Server> {
        let log = self.out.join(format!("{name}.log"));
        let child = pin
            .command(bin.unwrap_or(&self.pg))
            .args(["serve", "--config"])
            .arg(&config.path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).with_context(|| log.display().to_string())?)
            .spawn()
            .with_context(|| format!("starting {}", self.pg.display()))?;
        let mut server = Server {
            child: Running(child),
            ports: config.ports,
        };
        // A 10M-document base takes a while to load on a busy machine.
        for _ in 0..900 {
            if wait_ready(config.ports.metrics, Duration::from_millis(200)) {
                return Ok(server);
            }
            if server.child.try_wait()?.is_some() {
                break;
            }
        }
        server.stop();
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        let last = said.lines().last().unwrap_or("nothing");
        bail!(
            "{name} did not become ready: {last} (see {})",
            log.display()
        )
    }

    /// A run of this program against `target` with `args`, its JSON report written to
    /// `OUT/NAME.json` and returned.
    pub fn load(
        &self,
        name: &str,
        target: SocketAddr,
        args: &str,
        pin: Pin,
    ) -> anyhow::Result<Value> {
        let mut run = self.spawn_load(name, target, args, pin)?;
        let status = run.wait().context("waiting for a generator")?;
        let report = self.report(name);
        if !status.success() && report.is_err() {
            bail!(
                "the generator {name} failed (see {})",
                self.out.join(format!("{name}.log")).display()
            );
        }
        report
    }

    /// [`Lab::load`], running: wait for it, then read [`Lab::report`].
    pub fn spawn_load(
        &self,
        name: &str,
        target: SocketAddr,
        args: &str,
        pin: Pin,
    ) -> anyhow::Result<Running> {
        let log = self.out.join(format!("{name}.log"));
        let json = self.out.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&json);
        let child = pin
            .command(&self.load)
            .arg("--demo")
            .arg(&self.dir)
            .args(["--target", &target.to_string(), "--json"])
            .arg(&json)
            .args(args.split_whitespace())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).with_context(|| log.display().to_string())?)
            .spawn()
            .context("starting a generator")?;
        Ok(Running(child))
    }

    /// The sustainable rate of link checks at `target` (requests a second, closed loop
    /// over 16 connections for 8 s: the run called `max`).
    pub fn sustainable_rate(&self, target: SocketAddr, pin: Pin) -> anyhow::Result<f64> {
        let max = self.load(
            "max",
            target,
            "--duration 8 --warmup 1 --connections 16",
            pin,
        )?;
        Ok(super::stats::figure(&max, "requests_per_second"))
    }

    /// `permitgate publish` of `export` into `out`, signed with the demo's keys.
    pub fn publish(&self, export: &Path, out: &Path, version: Option<u64>) -> anyhow::Result<()> {
        let keys = self.dir.join("keys");
        let mut c = Command::new(&self.pg);
        c.arg("publish")
            .arg("--input")
            .arg(export)
            .arg("--out")
            .arg(out)
            .arg("--signing-key")
            .arg(keys.join("publisher.key"))
            .arg("--hash-key")
            .arg(keys.join("hash.key"));
        if let Some(v) = version {
            c.args(["--version", &v.to_string()]);
        }
        let o = c.output().context("running permitgate publish")?;
        if !o.status.success() {
            bail!("permitgate publish: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(())
    }

    /// The JSON report of the run called `name`.
    pub fn report(&self, name: &str) -> anyhow::Result<Value> {
        let json = self.out.join(format!("{name}.json"));
        let bytes = std::fs::read(&json).with_context(|| json.display().to_string())?;
        serde_json::from_slice(&bytes).with_context(|| json.display().to_string())
    }

    /// summary.json and table.md in the output directory; the table printed.
    pub fn finish(&self, summary: Value, table: &str) -> anyhow::Result<()> {
        std::fs::write(
            self.out.join("summary.json"),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        std::fs::write(self.out.join("table.md"), table)?;
        print!("{table}");
        println!("(results in {})", self.out.display());
        Ok(())
    }
}

/// A config a scenario wrote, and the ports it listens on.
pub struct Config {
    pub path: PathBuf,
    pub ports: Ports,
}

#[derive(Clone, Copy)]
pub struct Ports {
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
}

/// A gateway (or any server) this scenario started; stopped (SIGTERM, it drains) on drop.
pub struct Server {
    child: Running,
    pub ports: Ports,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user and system) the process has used.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS").unwrap_or(0)
    }

    /// One series of its metrics (`name{labels}` as exported).
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric(&ops_body(self.ports.metrics, "/metrics")?, series)
    }

    /// The whole metrics text.
    pub fn metrics(&self) -> String {
        ops_body(self.ports.metrics, "/metrics").unwrap_or_default()
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU seconds of `pid` and of its child processes (nginx's workers).
pub fn cpu_seconds(pid: u32) -> f64 {
    let own = |pid: &str| {
        permitgate_testkit::process::cpu_seconds(Path::new(&format!("/proc/{pid}/stat")))
            .unwrap_or(0.0)
    };
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    own(&pid.to_string()) + children.split_whitespace().map(own).sum::<f64>()
}

/// A field of /proc/PID/status in kB.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits (at most `within`) until every one of `addrs` accepts connections; `false` if
/// `child` exits first or the time runs out.
pub fn wait_accepting(child: &mut Running, addrs: &[SocketAddr], within: Duration) -> bool {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if addrs
            .iter()
            .all(|a| std::net::TcpStream::connect(a).is_ok())
        {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(pin: Pin) -> Vec<String> {
        let c = pin.command(Path::new("/bin/prog"));
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_pin_is_the_wrappers_it_needs() {
        assert_eq!(argv(Pin::ANY), ["/bin/prog"]);
        assert_eq!(argv(Pin::cpus("0")), ["taskset", "-c", "0", "/bin/prog"]);
        let attacker = Pin {
            nice: 19,
            ..Pin::cpus("1")
        };
        assert_eq!(
            argv(attacker),
            ["taskset", "-c", "1", "nice", "-n", "19", "/bin/prog"]
        );
        let victim = Pin {
            realtime: true,
            ..Pin::cpus("1")
        };
        assert_eq!(
            argv(victim),
            ["taskset", "-c", "1", "chrt", "-f", "10", "/bin/prog"]
        );
        assert_eq!(
            argv(Pin {
                nice: 10,
                ..Pin::ANY
            }),
            ["nice", "-n", "10", "/bin/prog"]
        );
    }
}
