//! The drivers: closed loop (each worker sends as soon as its last answer arrived) and open
//! loop (each worker sends on a fixed schedule; latency counts from the intended send
//! time, so a stalled server cannot hide its stall by slowing the client: coordinated
//! omission corrected, as wrk2 does).
//!
//! Latency in the open loop is that of a perfect client: tokio's timer wakes a worker up to
//! a millisecond late, and that lag is the generator's, not the server's. So each request
//! has an ideal send time, `max(intended, ideal completion of the previous request on this
//! worker)`, and its latency is `ideal send + measured service time − intended`. A slow
//! answer still delays the ideal sends after it (coordinated omission stays corrected);
//! a late timer does not count.
//!
//! Workers record into their own histograms and counters, merged when the run ends: no
//! lock or shared counter on the request path except the one atomic that bounds the
//! request count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::client::{Conn, Connector, Protocol};
use crate::workload::Prepared;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mode {
    Closed,
    /// A constant total request rate, per second.
    Open {
        rate: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub protocol: Protocol,
    pub mode: Mode,
    /// Connections (for HTTP/2: connections, each with `h2_streams` workers).
    pub connections: usize,
    pub h2_streams: usize,
    pub duration: Duration,
    /// Run this long before recording anything.
    pub warmup: Duration,
    /// Stop after this many recorded requests even if time is left.
    pub max_requests: Option<u64>,
    pub timeout: Duration,
}

/// What the workers saw, merged.
pub struct Tally {
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    /// Latency of the answers with the expected status only (what admitted requests saw
    /// while others were shed or refused).
    pub latency_expected: Histogram<u64>,
    /// Of those, from the moment the request was actually sent (open loop: without the
    /// time it waited behind this worker's earlier requests): what the server added.
    pub latency_expected_sent: Histogram<u64>,
    pub requests: u64,
    pub items: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Failures by label, and answers with a status other than the expected one.
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// This process's CPU time over the measured time, in cores (1.0: one core busy
    /// throughout). Near the cores it may use, the generator, not the server, set the
    /// pace.
    pub generator_cpu: Option<f64>,
    /// The measured time in equal slices, by when each request was due: where in the run
    /// the slow answers were (a stall at the start, one in the middle, or spread).
    pub timeline: Timeline,
}

/// Requests and their worst and total latency per slice of the measured time.
#[derive(Debug)]
pub struct Timeline {
    pub slice: Duration,
    /// Per slice: requests, sum and maximum of their latency in microseconds.
    pub slices: Vec<(u64, u64, u64)>,
}

impl Timeline {
    /// At most 200 slices, none shorter than 100 ms.
    fn for_duration(d: Duration) -> Timeline {
        Timeline {
            slice: (d / 200).max(Duration::from_millis(100)),
            slices: Vec::new(),
        }
    }

    fn record(&mut self, into_measured: Duration, micros: u64) {
        let i = (into_measured.as_nanos() / self.slice.as_nanos().max(1)) as usize;
        if self.slices.len() <= i {
            self.slices.resize(i + 1, (0, 0, 0));
        }
        let s = &mut self.slices[i];
        s.0 += 1;
        s.1 += micros;
        s.2 = s.2.max(micros);
    }

    fn merge(&mut self, other: &Timeline) {
        if self.slices.len() < other.slices.len() {
            self.slices.resize(other.slices.len(), (0, 0, 0));
        }
        for (a, b) in self.slices.iter_mut().zip(&other.slices) {
            a.0 += b.0;
            a.1 += b.1;
            a.2 = a.2.max(b.2);
        }
    }
}

impl Tally {
    fn new(duration: Duration) -> Tally {
        Tally {
            // 1 µs to 100 s at 3 significant digits: a few tens of KiB per worker.
            // Constant, valid bounds: this cannot fail.
            latency: Histogram::new_with_bounds(1, 100_000_000, 3).expect("histogram bounds"),
            latency_expected: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("histogram bounds"),
            latency_expected_sent: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("histogram bounds"),
            requests: 0,
            items: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
            generator_cpu: None,
            timeline: Timeline::for_duration(duration),
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_expected.add(&other.latency_expected);
        let _ = self.latency_expected_sent.add(&other.latency_expected_sent);
        self.requests += other.requests;
        self.items += other.items;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.timeline.merge(&other.timeline);
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct Shared {
    pool: Vec<Prepared>,
    connector: Arc<Connector>,
    plan: Plan,
    recorded: AtomicU64,
    start: Instant,
    record_from: Instant,
    end: Instant,
}

/// Runs the plan against the pool and returns what was measured.
pub async fn execute(pool: Vec<Prepared>, connector: Connector, plan: Plan) -> Tally {
    let workers = if plan.protocol == Protocol::H2 {
        plan.connections * plan.h2_streams.max(1)
    } else {
        plan.connections
    }
    .max(1);
    let connector = Arc::new(connector);
    let conns = open_connections(&connector, &plan, workers).await;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        pool,
        connector,
        record_from: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
        plan,
        recorded: AtomicU64::new(0),
        start,
    });
    let mut handles = Vec::with_capacity(workers);
    for (w, conn) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        handles.push(tokio::spawn(async move {
            worker(shared, w, workers, conn).await
        }));
    }
    let from = shared.record_from;
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(from).await;
        own_cpu_seconds()
    });
    let mut total = Tally::new(shared.plan.duration);
    for h in handles {
        if let Ok(t) = h.await {
            total.merge(t);
        }
    }
    total.elapsed = Instant::now()
        .min(shared.end)
        .saturating_duration_since(shared.record_from);
    if let (Ok(Some(start)), Some(end)) = (cpu_at_start.await, own_cpu_seconds()) {
        total.generator_cpu = Some((end - start) / total.elapsed.as_secs_f64().max(1e-9));
    }
    total
}

/// This process's CPU time so far (all its threads), in seconds.
fn own_cpu_seconds() -> Option<f64> {
    permitgate_testkit::process::cpu_seconds(std::path::Path::new("/proc/self/stat"))
}

/// Every worker's connection, opened before the clock starts (as wrk does): a thousand
/// handshakes are a burst of work on both sides that would otherwise fall into the warm-up
/// and spill into the measured time. At most 64 at a time; a connection that fails to
/// open is opened again by its worker (and a failure then counts). HTTP/2 workers share
/// their connection, `h2_streams` to one; a new connection per request opens none here.
async fn open_connections(
    connector: &Arc<Connector>,
    plan: &Plan,
    workers: usize,
) -> Vec<Option<Conn>> {
    if plan.protocol.connection_per_request() {
        return (0..workers).map(|_| None).collect();
    }
    let count = if plan.protocol == Protocol::H2 {
        plan.connections.max(1)
    } else {
        workers
    };
    let mut opened: Vec<Option<Conn>> = (0..count).map(|_| None).collect();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..count {
        if pending.len() >= 64 {
            if let Some(Ok((j, c))) = pending.join_next().await {
                opened[j] = c;
            }
        }
        let connector = connector.clone();
        pending.spawn(async move { (i, connector.connect().await.ok()) });
    }
    while let Some(done) = pending.join_next().await {
        if let Ok((j, c)) = done {
            opened[j] = c;
        }
    }
    if plan.protocol != Protocol::H2 {
        return opened;
    }
    let streams = plan.h2_streams.max(1);
    (0..workers)
        .map(|w| opened[w / streams].as_ref().and_then(Conn::share))
        .collect()
}

async fn worker(shared: Arc<Shared>, w: usize, workers: usize, mut conn: Option<Conn>) -> Tally {
    let plan = &shared.plan;
    let mut tally = Tally::new(plan.duration);
    // Workers start at different places in the pool so they do not all ask the same.
    let mut next = w * shared.pool.len() / workers;
    // Open loop: this worker's share of the rate, its first send staggered.
    let interval = match plan.mode {
        Mode::Open { rate } => Some(Duration::from_secs_f64(workers as f64 / rate.max(1e-3))),
        Mode::Closed => None,
    };
    let mut intended =
        shared.start + interval.map_or(Duration::ZERO, |i| i.mul_f64(w as f64 / workers as f64));
    // Ideal completion time of this worker's previous request (open loop).
    let mut ideal_done = shared.start;
    loop {
        let slot = match interval {
            Some(i) => {
                if intended >= shared.end {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                intended += i;
                Some(intended - i)
            }
            None => None,
        };
        let began = slot.unwrap_or_else(Instant::now);
        if began >= shared.end {
            break;
        }
        let record = began >= shared.record_from;
        if record {
            if let Some(max) = plan.max_requests {
                if shared.recorded.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
            }
        }
        let p = &shared.pool[next % shared.pool.len()];
        next += 1;
        let sent = Instant::now();
        let outcome = async {
            if plan.protocol.connection_per_request() || conn.is_none() {
                conn = Some(shared.connector.connect().await?);
            }
            match conn.as_mut() {
                Some(c) => c.send(p, plan.timeout).await,
                None => Err(crate::client::Failure::Connect),
            }
        }
        .await;
        let service = sent.elapsed();
        if plan.protocol.connection_per_request() {
            conn = None;
        }
        if !record {
            continue;
        }
        let latency = match slot {
            Some(due) => {
                ideal_done = due.max(ideal_done) + service;
                ideal_done - due
            }
            None => service,
        };
        let micros = latency.as_micros().clamp(1, 100_000_000) as u64;
        let _ = tally.latency.record(micros);
        tally
            .timeline
            .record(began.saturating_duration_since(shared.record_from), micros);
        tally.requests += 1;
        match outcome {
            Ok(status) => {
                *tally.statuses.entry(status).or_default() += 1;
                if status == p.expect {
                    tally.items += u64::from(p.items);
                    let _ = tally.latency_expected.record(micros);
                    let sent_micros = service.as_micros().clamp(1, 100_000_000) as u64;
                    let _ = tally.latency_expected_sent.record(sent_micros);
                } else {
                    *tally.errors.entry(format!("status_{status}")).or_default() += 1;
                }
            }
            Err(f) => {
                *tally.errors.entry(f.label().to_owned()).or_default() += 1;
                // A failed connection is replaced on the next request (for HTTP/2, by one
                // of this worker's own).
                conn = None;
            }
        }
    }
    tally
}
