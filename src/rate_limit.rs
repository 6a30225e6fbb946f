//! Per-partner rate limits: a token bucket kept as GCRA (one atomic "theoretical arrival
//! time"), so the request path takes no lock and a bucket costs one word.
//!
//! Time comes from the injected [`Clock`](crate::clock::Clock) as Unix nanoseconds. A
//! wall clock stepping backwards only delays refills; it never grants extra requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Rate and burst as configured: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    /// Nanoseconds one token takes to refill.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run: `burst` tokens.
    tolerance: u64,
    /// When the bucket would be full again (Unix ns); starts full.
    tat: AtomicU64,
}

impl TokenBucket {
    pub fn new(limit: RateLimit) -> TokenBucket {
        let interval = (1e9 / limit.per_second).max(1.0) as u64;
        TokenBucket {
            limit,
            interval,
            tolerance: interval.saturating_mul(u64::from(limit.burst)),
            tat: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes `n` more tokens at `now_ns` whatever the bucket holds: the rest of a request's
    /// cost, known once it was answered. A bucket in debt refuses until it is paid.
    pub fn charge(&self, n: u64, now_ns: u64) {
        if n == 0 {
            return;
        }
        let add = self.interval.saturating_mul(n);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(add);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Whether the bucket lacks at most one token of its burst (the one just taken).
    pub fn is_nearly_full(&self, now_ns: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now_ns.saturating_add(self.interval)
    }

    /// Whether the bucket holds its whole burst again at `now_ns` (nothing taken lately).
    pub fn is_full(&self, now_ns: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now_ns
    }

    /// The quota as the RateLimit headers state it (draft-ietf-httpapi-ratelimit-headers):
    /// `burst` requests per the window in which an empty bucket fills again, in whole
    /// seconds (at least 1).
    pub fn policy(&self) -> (u32, u64) {
        let window = self.tolerance.div_ceil(1_000_000_000).max(1);
        (self.limit.burst, window)
    }

    /// At `now_ns`: the whole tokens left (none while in debt), and the whole seconds until
    /// the bucket is full again.
    pub fn state(&self, now_ns: u64) -> (u64, u64) {
        let ahead = self.tat.load(Ordering::Relaxed).saturating_sub(now_ns);
        let left = self.tolerance.saturating_sub(ahead) / self.interval;
        (left, ahead.div_ceil(1_000_000_000))
    }

    /// Takes one token at `now_ns`, or says how long until one is free.
    pub fn take(&self, now_ns: u64) -> Result<(), Duration> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(self.interval);
            let ahead = next - now_ns;
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// What the RateLimit headers say: the quota and its window, the tokens left and when
    /// the bucket is full again, a debt leaving none.
    #[test]
    fn the_headers_state_what_is_left() {
        let b = TokenBucket::new(RateLimit {
            per_second: 5.0,
            burst: 10,
        });
        let s = 1_000_000_000u64;
        assert_eq!(b.policy(), (10, 2));
        assert_eq!(b.state(100 * s), (10, 0));
        for _ in 0..4 {
            b.take(100 * s).expect("within the burst");
        }
        // Four taken at 5 a second: full again in 0.8 s, shown as 1.
        assert_eq!(b.state(100 * s), (6, 1));
        b.charge(20, 100 * s);
        assert_eq!(b.state(100 * s), (0, 5));
        assert_eq!(b.state(105 * s), (10, 0));
    }
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn bucket(per_second: f64, burst: u32) -> TokenBucket {
        TokenBucket::new(RateLimit { per_second, burst })
    }

    #[test]
    fn a_full_bucket_allows_the_burst_then_refuses() {
        let b = bucket(10.0, 5);
        let t = 1_000 * SEC;
        for i in 0..5 {
            assert_eq!(b.take(t), Ok(()), "request {i} of the burst");
        }
        let wait = b.take(t).expect_err("the sixth is over the burst");
        assert_eq!(
            wait,
            Duration::from_millis(100),
            "one token refills in 1/10 s"
        );
    }

    #[test]
    fn tokens_refill_at_the_rate_and_never_beyond_the_burst() {
        let b = bucket(2.0, 2);
        let t = 50 * SEC;
        assert!(b.take(t).is_ok() && b.take(t).is_ok());
        assert!(b.take(t).is_err());
        assert!(
            b.take(t + SEC / 2).is_ok(),
            "half a second refills one token"
        );
        assert!(b.take(t + SEC / 2).is_err());
        // A long pause fills the bucket to the burst, not more.
        let later = t + 3600 * SEC;
        assert!(b.take(later).is_ok() && b.take(later).is_ok());
        assert!(b.take(later).is_err());
    }

    #[test]
    fn a_sustained_flood_gets_exactly_the_rate() {
        let b = bucket(100.0, 10);
        let start = 10 * SEC;
        // A request every millisecond for ten seconds: 10 000 tries.
        let allowed = (0..10_000u64)
            .filter(|ms| b.take(start + ms * 1_000_000).is_ok())
            .count();
        assert_eq!(allowed, 10 + 100 * 10 - 1, "burst plus rate × time");
    }

    #[test]
    fn a_charge_runs_the_bucket_into_debt_that_later_requests_pay() {
        let b = bucket(10.0, 10);
        let t = 100 * SEC;
        assert!(b.take(t).is_ok());
        // The rest of a 200-token request: 199 more, whatever the bucket held.
        b.charge(199, t);
        let wait = b.take(t).expect_err("in debt");
        assert_eq!(wait, Duration::from_millis(20_000 - 1000 + 100));
        assert!(b.take(t + 19 * SEC).is_err());
        assert!(b.take(t + 20 * SEC).is_ok());
        b.charge(0, t);
    }

    #[test]
    fn a_clock_stepping_back_grants_nothing_extra() {
        let b = bucket(1.0, 1);
        let t = 100 * SEC;
        assert!(b.take(t).is_ok());
        assert!(b.take(t - 10 * SEC).is_err());
        assert!(b.take(t).is_err());
    }
}
