//! Capacity shared among partners by weight: request slots, relay places, connections.
//!
//! A partner's fair share is the pool's capacity times its weight over the weights of the
//! partners holding part of it now (itself included), so shares shrink as more partners
//! are active and grow back as they leave. While the pool has room anyone may take from
//! it (a lone partner may use it all). When it is full, a partner below its fair share is
//! still let in: a unit of the partner furthest above its own share is taken back, if
//! one is waiting on its client ([`Unit::preemptible`]: a body still arriving, a held
//! long-poll, an idle connection), and the partner below its share gets it. A partner at
//! or above its share is refused. So no number of partners, colluding or merely busy, can
//! refuse a partner below its share for want of room.
//!
//! The fast path is two atomic additions; the pool's member list and a partner's list of
//! preemptible units are locked only to register a unit that waits on its client, and to
//! choose one to take back when the pool is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// One pool of capacity (slots, places, connections).
pub struct Pool {
    capacity: usize,
    total: AtomicUsize,
    /// Sum of the weights of the holders holding at least one unit.
    active_weight: AtomicI64,
    members: Mutex<Vec<Weak<Holder>>>,
}

/// One partner's part in one pool; kept across reloads with the partner.
pub struct Holder {
    weight: AtomicU32,
    /// The weight added to the pool's active weight when this holder became active (the
    /// weight may change by a reload while it holds units).
    counted: AtomicU32,
    held: AtomicUsize,
    waiting: Mutex<VecDeque<Weak<Preempt>>>,
}

/// Why a unit was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The pool is full and the partner holds its fair share or more.
    OverShare { share: usize },
    /// The pool is full, the partner is below its share, and nothing can be taken back
    /// (every unit above a share is busy, not waiting).
    Full,
}

/// A unit held; given back when dropped.
pub struct Unit {
    pool: Arc<Pool>,
    holder: Arc<Holder>,
}

/// The signal that a preemptible unit is taken back.
#[derive(Default)]
struct Preempt {
    fired: AtomicBool,
    notify: Notify,
}

/// A unit waiting on its client, registered as one that may be taken back.
pub struct Preemptible<'a> {
    _unit: &'a Unit,
    signal: Arc<Preempt>,
}

impl Preemptible<'_> {
    /// Resolves when the unit is taken back for a partner below its share.
    pub async fn taken_back(&self) {
        loop {
            let notified = self.signal.notify.notified();
            if self.signal.fired.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Pool {
    pub fn new(capacity: usize) -> Arc<Pool> {
        Arc::new(Pool {
            capacity,
            total: AtomicUsize::new(0),
            active_weight: AtomicI64::new(0),
            members: Mutex::new(Vec::new()),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Units held now.
    pub fn in_use(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A new member with `weight` (at least 1).
    pub fn holder(&self, weight: u32) -> Arc<Holder> {
        let h = Arc::new(Holder {
            weight: AtomicU32::new(weight.max(1)),
            counted: AtomicU32::new(0),
            held: AtomicUsize::new(0),
            waiting: Mutex::new(VecDeque::new()),
        });
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(&h));
        h
    }

    /// The active weight with `holder` counted as active, and its weight.
    fn weights(&self, holder: &Holder) -> (i64, i64) {
        let w = i64::from(holder.weight.load(Ordering::Relaxed));
        let active = self.active_weight.load(Ordering::Relaxed);
        let active = if holder.held.load(Ordering::Relaxed) == 0 {
            active + w
        } else {
            active
        };
        (active.max(w), w)
    }

    /// Whether `held` units are fewer than `holder`'s fair share, exactly.
    fn below_share(&self, holder: &Holder, held: usize) -> bool {
        let (active, w) = self.weights(holder);
        (held as i64) * active < self.capacity as i64 * w
    }

    /// `holder`'s fair share now, counting it as active, rounded up (for messages).
    pub fn share_of(&self, holder: &Holder) -> usize {
        let (active, w) = self.weights(holder);
        usize::try_from((self.capacity as i64 * w + active - 1) / active).unwrap_or(0)
    }

    /// A unit for `holder`, within the rules above.
    pub fn acquire(self: &Arc<Pool>, holder: &Arc<Holder>) -> Result<Unit, Refused> {
        let before = holder.take();
        if before == 0 {
            let w = holder.weight.load(Ordering::Relaxed);
            holder.counted.store(w, Ordering::Relaxed);
            self.active_weight
                .fetch_add(i64::from(w), Ordering::Relaxed);
        }
        let unit = Unit {
            pool: self.clone(),
            holder: holder.clone(),
        };
        if self.total.fetch_add(1, Ordering::AcqRel) < self.capacity {
            return Ok(unit);
        }
        // Below its share: fewer than its share held before this one (a share need not be
        // a whole number of units: two partners on one slot have half of it each, and the
        // one holding none may take it).
        if !self.below_share(holder, before) {
            return Err(Refused::OverShare {
                share: self.share_of(holder),
            });
        }
        if self.take_back_from_the_most_over_share(holder) {
            Ok(unit)
        } else {
            Err(Refused::Full)
        }
    }

    /// Signals one waiting unit of the holder furthest above its fair share; whether one
    /// was found.
    fn take_back_from_the_most_over_share(&self, asking: &Arc<Holder>) -> bool {
        let members: Vec<Arc<Holder>> = {
            let m = self.members.lock().unwrap_or_else(|e| e.into_inner());
            m.iter().filter_map(Weak::upgrade).collect()
        };
        let mut over: Vec<(i64, Arc<Holder>)> = members
            .into_iter()
            .filter(|h| !Arc::ptr_eq(h, asking))
            .filter_map(|h| {
                let held = h.held.load(Ordering::Relaxed);
                let (active, w) = self.weights(&h);
                // How far above its share, in units × active weight.
                let excess = held as i64 * active - self.capacity as i64 * w;
                (excess > 0).then_some((excess / w.max(1), h))
            })
            .collect();
        // Furthest above its share first.
        over.sort_by_key(|o| std::cmp::Reverse(o.0));
        over.iter().any(|(_, h)| h.fire_oldest_waiting())
    }
}

impl Holder {
    fn take(&self) -> usize {
        self.held.fetch_add(1, Ordering::AcqRel)
    }

    /// Units held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// A reload's new weight; counted from the next time the holder becomes active.
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    fn fire_oldest_waiting(&self) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(w) = waiting.pop_front() {
            if let Some(p) = w.upgrade() {
                if !p.fired.swap(true, Ordering::AcqRel) {
                    p.notify.notify_waiters();
                    return true;
                }
            }
        }
        false
    }
}

impl Unit {
    /// Registers this unit as waiting on its client, so that it may be taken back for a
    /// partner below its share while the returned guard lives.
    pub fn preemptible(&self) -> Preemptible<'_> {
        let signal = Arc::new(Preempt::default());
        let mut waiting = self
            .holder
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if waiting.len() >= 64 && waiting.len().is_power_of_two() {
            waiting.retain(|w| w.strong_count() > 0);
        }
        waiting.push_back(Arc::downgrade(&signal));
        Preemptible {
            _unit: self,
            signal,
        }
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        self.pool.total.fetch_sub(1, Ordering::AcqRel);
        if self.holder.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            let w = self.holder.counted.load(Ordering::Relaxed);
            self.pool
                .active_weight
                .fetch_sub(i64::from(w), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_partner_may_use_it_all_and_shares_shrink_as_partners_arrive() {
        let pool = Pool::new(8);
        let (a, b) = (pool.holder(1), pool.holder(1));
        let held: Vec<_> = (0..8).map(|_| pool.acquire(&a).expect("room")).collect();
        assert_eq!(pool.share_of(&a), 8, "alone, all of it");
        assert_eq!(pool.share_of(&b), 4, "b would share it half and half");
        // Full, and none of a's units waits on its client: b is below its share but
        // nothing can be taken back.
        assert_eq!(pool.acquire(&b).err(), Some(Refused::Full));
        assert_eq!(b.held(), 0, "a refusal gives its unit back");
        assert_eq!(
            pool.acquire(&a).err(),
            Some(Refused::OverShare { share: 8 })
        );
        drop(held);
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn a_partner_below_its_share_takes_back_a_waiting_unit_of_the_greediest() {
        let pool = Pool::new(8);
        let (greedy, modest, newcomer) = (pool.holder(1), pool.holder(1), pool.holder(2));
        let g: Vec<_> = (0..6)
            .map(|_| pool.acquire(&greedy).expect("room"))
            .collect();
        let m: Vec<_> = (0..2)
            .map(|_| pool.acquire(&modest).expect("room"))
            .collect();
        let g_waiting: Vec<_> = g.iter().map(Unit::preemptible).collect();
        let m_waiting: Vec<_> = m.iter().map(Unit::preemptible).collect();
        // Full. The newcomer (weight 2 of 4) has a share of 4: let in, and the oldest
        // waiting unit of the partner furthest above its share (greedy: 6 of 2) is taken
        // back; modest (2 of 2) keeps its own.
        let n = pool.acquire(&newcomer).expect("below its share");
        g_waiting[0].taken_back().await;
        assert!(g_waiting[1..]
            .iter()
            .all(|w| !w.signal.fired.load(Ordering::Relaxed)));
        assert!(m_waiting
            .iter()
            .all(|w| !w.signal.fired.load(Ordering::Relaxed)));
        assert_eq!(pool.share_of(&newcomer), 4);
        assert_eq!(pool.share_of(&greedy), 2);
        drop(g_waiting);
        drop(m_waiting);
        drop((g, m, n));
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.active_weight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn colluders_cannot_keep_out_a_partner_below_its_share() {
        // Eight partners fill the pool with units waiting on their clients; a ninth is let
        // in, again and again, as long as it stays below its share.
        let pool = Pool::new(64);
        let colluders: Vec<_> = (0..8).map(|_| pool.holder(1)).collect();
        let held: Vec<Unit> = colluders
            .iter()
            .flat_map(|c| {
                (0..8)
                    .map(|_| pool.acquire(c).expect("room"))
                    .collect::<Vec<_>>()
            })
            .collect();
        let _waiting: Vec<_> = held.iter().map(Unit::preemptible).collect();
        let ninth = pool.holder(1);
        let share = pool.share_of(&ninth);
        assert_eq!(share, 64_usize.div_ceil(9));
        let mine: Vec<_> = (0..share)
            .map(|i| {
                pool.acquire(&ninth)
                    .unwrap_or_else(|e| panic!("unit {i}: {e:?}"))
            })
            .collect();
        assert_eq!(
            pool.acquire(&ninth).err(),
            Some(Refused::OverShare { share })
        );
        // The colluders are over their shares now: none of them gets another.
        assert!(colluders
            .iter()
            .all(|c| matches!(pool.acquire(c), Err(Refused::OverShare { .. }))));
        drop(mine);
    }
}
