//! Expensive requests (a batch of up to 1,000 link checks, each perhaps with a signed
//! receipt: 20 ms of CPU and more) are answered here: on a thread of their own below the
//! request workers (nice 10), one at a time, partners in weighted fair order by cost
//! (weighted fair queuing: each job's virtual finish time is its start plus its cost over
//! its partner's weight, and the smallest goes next). A cheap request never waits behind
//! one on a request worker, and a partner sending the most expensive requests it may has
//! its share of this thread, not more: another partner's batch waits for at most the job
//! in progress.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

struct Queued {
    start: f64,
    finish: f64,
    job: Job,
}

#[derive(Default)]
struct PartnerQueue {
    jobs: VecDeque<Queued>,
    /// Virtual finish time of the partner's last job.
    last_finish: f64,
}

#[derive(Default)]
struct State {
    queues: HashMap<Arc<str>, PartnerQueue>,
    /// The start tag of the job in service: where a newly busy partner starts.
    virtual_time: f64,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

pub struct WorkQueue {
    shared: Arc<Shared>,
}

impl WorkQueue {
    /// Starts the thread `name`, which calls `on_start` first (its priority).
    pub fn start(
        name: &str,
        on_start: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<WorkQueue> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                on_start();
                while let Some(job) = worker.next() {
                    job();
                }
            })?;
        Ok(WorkQueue { shared })
    }

    /// Runs `job` on the work thread in its turn: `cost` (in checks) weighed against
    /// `partner`'s `weight`. `None` if the queue stopped before it ran.
    pub async fn run<T: Send + 'static>(
        &self,
        partner: &Arc<str>,
        weight: u32,
        cost: u64,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut s = self.shared.lock();
            let v = s.virtual_time;
            let q = s.queues.entry(partner.clone()).or_default();
            let start = q.last_finish.max(v);
            let finish = start + cost.max(1) as f64 / f64::from(weight.max(1));
            q.last_finish = finish;
            q.jobs.push_back(Queued {
                start,
                finish,
                job: Box::new(move || {
                    let _ = tx.send(job());
                }),
            });
        }
        self.shared.ready.notify_one();
        rx.await.ok()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queued job with the smallest finish tag; `None` once stopping.
    fn next(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if s.stopping {
                return None;
            }
            let next = s
                .queues
                .iter()
                .filter_map(|(p, q)| q.jobs.front().map(|j| (j.finish, p.clone())))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((_, partner)) = next {
                let v = s.virtual_time;
                let job = s.queues.get_mut(&partner).and_then(|q| q.jobs.pop_front());
                if let Some(job) = job {
                    s.virtual_time = job.start.max(v);
                    // Partners with nothing queued and no finish ahead are forgotten.
                    let vt = s.virtual_time;
                    s.queues
                        .retain(|_, q| !q.jobs.is_empty() || q.last_finish > vt);
                    return Some(job.job);
                }
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A heavy partner queues many costly jobs; a light partner's job, queued after them,
    /// runs after at most the one in progress and the next of the heavy's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partner_queueing_costly_jobs_cannot_make_another_wait_behind_them() {
        let q = Arc::new(WorkQueue::start("pg-test-work", || {}).expect("start"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (heavy, light): (Arc<str>, Arc<str>) = ("heavy".into(), "light".into());
        // Hold the thread while the queue fills.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = {
            let q = q.clone();
            let heavy = heavy.clone();
            tokio::spawn(async move {
                q.run(&heavy, 1, 1000, move || {
                    let _ = held.recv();
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut waiting = Vec::new();
        for i in 0..10 {
            let (q, order, heavy) = (q.clone(), order.clone(), heavy.clone());
            waiting.push(tokio::spawn(async move {
                q.run(&heavy, 1, 1000, move || {
                    order.lock().expect("order").push(format!("heavy-{i}"))
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            let (q, order, light) = (q.clone(), order.clone(), light.clone());
            waiting.push(tokio::spawn(async move {
                q.run(&light, 1, 1000, move || {
                    order.lock().expect("order").push("light".into())
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).expect("release");
        first.await.expect("first").expect("ran");
        for w in waiting {
            w.await.expect("task").expect("ran");
        }
        let order = order.lock().expect("order").clone();
        let light_at = order.iter().position(|o| o == "light").expect("light ran");
        assert!(light_at <= 1, "the light partner waited behind: {order:?}");
    }

    #[tokio::test]
    async fn weights_share_the_thread_in_proportion() {
        let q = Arc::new(WorkQueue::start("pg-test-work", || {}).expect("start"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let gate = {
            let q = q.clone();
            tokio::spawn(async move {
                q.run(&Arc::from("gate"), 1, 1, move || {
                    let _ = held.recv();
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut waiting = Vec::new();
        for (name, weight) in [("double", 2), ("single", 1)] {
            for _ in 0..6 {
                let (q, order) = (q.clone(), order.clone());
                waiting.push(tokio::spawn(async move {
                    q.run(&Arc::from(name), weight, 10, move || {
                        order.lock().expect("order").push(name)
                    })
                    .await
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).expect("release");
        gate.await.expect("gate").expect("ran");
        for w in waiting {
            w.await.expect("task").expect("ran");
        }
        let order = order.lock().expect("order").clone();
        let first_six = &order[..6];
        let doubles = first_six.iter().filter(|n| **n == "double").count();
        assert_eq!(doubles, 4, "weight 2 gets two turns to one: {order:?}");
    }
}
