//! The order in which handshakes get the TLS thread's CPU.
//!
//! Reading a ClientHello costs nothing; answering it (key exchange, and the server's
//! signature) is the work anyone can ask for with a replayed hello and no crypto of its
//! own. So a handshake whose ClientHello has arrived takes a [`Turn`] for that work: one at
//! a time on the thread, partner networks' first, then strangers' in arrival order. At most
//! `max_queued_handshakes` strangers wait; one more is closed, so a flood is shed where it
//! costs least instead of making everyone's handshake wait behind it. The client's second
//! flight (its certificate, checked against the partner CA) comes after the turn: only a
//! holder of a partner certificate can make the gateway do that work, and the door's
//! per-source rate bounds how often.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;
use tokio::sync::oneshot;

use super::door::{Class, Turned};

#[derive(Default)]
struct Waiting {
    busy: bool,
    partner_networks: VecDeque<oneshot::Sender<()>>,
    strangers: VecDeque<oneshot::Sender<()>>,
}

pub struct HandshakeQueue {
    max_strangers: usize,
    waiting: Mutex<Waiting>,
    depth: IntGauge,
}

/// The TLS thread's CPU for one handshake's answer; the next waiter's when dropped.
pub struct Turn {
    queue: Arc<HandshakeQueue>,
}

impl HandshakeQueue {
    /// `depth`: the gauge of handshakes waiting (`permitgate_handshakes_waiting`).
    pub fn new(max_strangers: usize, depth: IntGauge) -> Arc<HandshakeQueue> {
        Arc::new(HandshakeQueue {
            max_strangers,
            waiting: Mutex::new(Waiting::default()),
            depth,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a turn; a stranger finding `max_queued_handshakes` strangers waiting is
    /// turned away.
    pub async fn turn(self: &Arc<HandshakeQueue>, class: Class) -> Result<Turn, Turned> {
        let rx = {
            let mut w = self.lock();
            if !w.busy {
                w.busy = true;
                return Ok(Turn {
                    queue: self.clone(),
                });
            }
            let (tx, rx) = oneshot::channel();
            match class {
                Class::PartnerNetwork => w.partner_networks.push_back(tx),
                Class::Stranger if w.strangers.len() >= self.max_strangers => {
                    return Err(Turned::HandshakeQueue)
                }
                Class::Stranger => w.strangers.push_back(tx),
            }
            self.depth.inc();
            rx
        };
        // The sender is only dropped after it was sent on (or the queue is gone).
        rx.await.map_err(|_| Turned::HandshakeQueue)?;
        Ok(Turn {
            queue: self.clone(),
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let q = &self.queue;
        let mut w = q.lock();
        loop {
            let next = match w.partner_networks.pop_front() {
                Some(n) => n,
                None => match w.strangers.pop_front() {
                    Some(n) => n,
                    None => {
                        w.busy = false;
                        return;
                    }
                },
            };
            q.depth.dec();
            // A waiter whose handshake gave up (its deadline) is skipped.
            if next.send(()).is_ok() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("waiting", "test").expect("gauge")
    }

    #[tokio::test]
    async fn partner_networks_go_first_and_strangers_wait_in_a_bounded_queue() {
        let q = HandshakeQueue::new(2, gauge());
        let first = q.turn(Class::Stranger).await.expect("free");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (name, class) in [
            ("stranger-1", Class::Stranger),
            ("stranger-2", Class::Stranger),
            ("partner", Class::PartnerNetwork),
        ] {
            let (q, order) = (q.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let turn = q.turn(class).await.expect("a turn");
                order.lock().expect("order").push(name);
                drop(turn);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(
            q.turn(Class::Stranger).await.err(),
            Some(Turned::HandshakeQueue),
            "two strangers wait already"
        );
        let partner_again = q.clone();
        assert_eq!(q.depth.get(), 3);
        drop(first);
        for w in waiting {
            w.await.expect("waiter");
        }
        assert_eq!(
            *order.lock().expect("order"),
            vec!["partner", "stranger-1", "stranger-2"]
        );
        assert_eq!(partner_again.depth.get(), 0);
        assert!(q.turn(Class::Stranger).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let q = HandshakeQueue::new(4, gauge());
        let first = q.turn(Class::Stranger).await.expect("free");
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            q.turn(Class::Stranger),
        )
        .await;
        assert!(gave_up.is_err());
        let q2 = q.clone();
        let later = tokio::spawn(async move { q2.turn(Class::Stranger).await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(later.await.expect("task"), Ok(()));
    }
}
