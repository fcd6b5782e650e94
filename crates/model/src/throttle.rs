//! Growing delay for repeated failed logons from one source address.
//!
//! The wiring asks [`AuthThrottle::delay`] before answering an authentication attempt and holds
//! the answer that long, so password guessing from one address slows down exponentially while a
//! user who mistypes once barely notices. Memory is bounded: at most `max_tracked` addresses are
//! remembered, and entries older than `forget_after` count for nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Delay after the first failure; doubles with each further failure.
    pub base: Duration,
    /// The delay never exceeds this.
    pub max: Duration,
    /// Failures this old are forgotten.
    pub forget_after: Duration,
    /// At most this many source addresses are remembered; beyond that the oldest is evicted.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            forget_after: Duration::from_secs(15 * 60),
            max_tracked: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug)]
pub struct AuthThrottle {
    config: ThrottleConfig,
    failures: HashMap<IpAddr, Failures>,
}

impl AuthThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            failures: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// How long to hold the answer to the next attempt from `addr`: zero without recent
    /// failures, then `base · 2^(n-1)` after n failures, capped at `max`.
    pub fn delay(&self, addr: IpAddr, now: Instant) -> Duration {
        match self.failures.get(&source_key(addr)) {
            Some(f) if !self.expired(f, now) => self.backoff(f.count),
            _ => Duration::ZERO,
        }
    }

    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) {
        if self.config.max_tracked == 0 {
            return;
        }
        let key = source_key(addr);
        if let Some(f) = self.failures.get(&key).copied() {
            let count = if self.expired(&f, now) {
                1
            } else {
                f.count.saturating_add(1)
            };
            self.failures.insert(
                key,
                Failures {
                    count,
                    last: now.max(f.last),
                },
            );
            return;
        }
        if self.failures.len() >= self.config.max_tracked {
            self.evict(now);
        }
        self.failures.insert(
            key,
            Failures {
                count: 1,
                last: now,
            },
        );
    }

    /// A successful logon from `addr` clears its failures.
    pub fn record_success(&mut self, addr: IpAddr) {
        self.failures.remove(&source_key(addr));
    }

    /// Number of source addresses currently remembered.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    fn expired(&self, f: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(f.last) >= self.config.forget_after
    }

    fn backoff(&self, count: u32) -> Duration {
        if count == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(count - 1).unwrap_or(u32::MAX);
        self.config
            .base
            .checked_mul(factor)
            .unwrap_or(self.config.max)
            .min(self.config.max)
    }

    /// Make room for one more address: drop the forgotten ones, then the least recent.
    fn evict(&mut self, now: Instant) {
        let forget_after = self.config.forget_after;
        self.failures
            .retain(|_, f| now.saturating_duration_since(f.last) < forget_after);
        while self.failures.len() >= self.config.max_tracked {
            let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.failures.remove(&oldest);
        }
    }
}

/// The unit an attacker controls: one IPv4 address, or one IPv6 /64 (hosts commonly get a whole
/// /64, so per-address keys would be trivially rotated). IPv4-mapped IPv6 counts as IPv4.
fn source_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }
    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn delay_grows_exponentially_and_caps() {
        let mut th = AuthThrottle::new(ThrottleConfig::default());
        let t0 = Instant::now();
        assert_eq!(th.delay(ip(1), t0), Duration::ZERO);
        let mut seen = Vec::new();
        for _ in 0..8 {
            th.record_failure(ip(1), t0);
            seen.push(th.delay(ip(1), t0).as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
        // Other addresses are unaffected.
        assert_eq!(th.delay(ip(2), t0), Duration::ZERO);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut th = AuthThrottle::new(ThrottleConfig::default());
        let t0 = Instant::now();
        for _ in 0..100 {
            th.record_failure(ip(1), t0);
        }
        assert_eq!(th.delay(ip(1), t0), secs(30));
    }

    #[test]
    fn success_clears() {
        let mut th = AuthThrottle::new(ThrottleConfig::default());
        let t0 = Instant::now();
        th.record_failure(ip(1), t0);
        th.record_failure(ip(1), t0);
        th.record_success(ip(1));
        assert_eq!(th.delay(ip(1), t0), Duration::ZERO);
        assert_eq!(th.tracked(), 0);
    }

    #[test]
    fn failures_are_forgotten_after_a_while() {
        let mut th = AuthThrottle::new(ThrottleConfig::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            th.record_failure(ip(1), t0);
        }
        assert_eq!(th.delay(ip(1), t0 + secs(899)), secs(8));
        assert_eq!(th.delay(ip(1), t0 + secs(900)), Duration::ZERO);
        // A failure after the window starts counting from one again.
        th.record_failure(ip(1), t0 + secs(1000));
        assert_eq!(th.delay(ip(1), t0 + secs(1000)), secs(1));
    }

    #[test]
    fn memory_is_bounded_and_oldest_is_evicted() {
        let cfg = ThrottleConfig {
            max_tracked: 3,
            ..ThrottleConfig::default()
        };
        let mut th = AuthThrottle::new(cfg);
        let t0 = Instant::now();
        for (i, last) in [1u8, 2, 3].into_iter().enumerate() {
            th.record_failure(ip(last), t0 + secs(i as u64));
        }
        th.record_failure(ip(4), t0 + secs(10));
        assert_eq!(th.tracked(), 3);
        assert_eq!(
            th.delay(ip(1), t0 + secs(10)),
            Duration::ZERO,
            "oldest evicted"
        );
        for last in [2, 3, 4] {
            assert_eq!(th.delay(ip(last), t0 + secs(10)), secs(1));
        }
        // Many distinct addresses never exceed the bound.
        for i in 0..=255u8 {
            th.record_failure(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)), t0 + secs(20));
        }
        assert_eq!(th.tracked(), 3);
    }

    #[test]
    fn expired_entries_are_evicted_before_recent_ones() {
        let cfg = ThrottleConfig {
            max_tracked: 2,
            ..ThrottleConfig::default()
        };
        let mut th = AuthThrottle::new(cfg);
        let t0 = Instant::now();
        th.record_failure(ip(1), t0);
        th.record_failure(ip(2), t0 + secs(1000));
        th.record_failure(ip(2), t0 + secs(1000));
        th.record_failure(ip(3), t0 + secs(1001));
        assert_eq!(th.tracked(), 2);
        assert_eq!(th.delay(ip(2), t0 + secs(1001)), secs(2));
    }

    #[test]
    fn zero_capacity_tracks_nothing() {
        let mut th = AuthThrottle::new(ThrottleConfig {
            max_tracked: 0,
            ..ThrottleConfig::default()
        });
        th.record_failure(ip(1), Instant::now());
        assert_eq!(th.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_is_v4() {
        let mut th = AuthThrottle::new(ThrottleConfig::default());
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        th.record_failure(a, t0);
        th.record_failure(b, t0);
        assert_eq!(th.delay(a, t0), secs(2));
        assert_eq!(th.delay(other, t0), Duration::ZERO);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        th.record_failure(mapped, t0);
        assert_eq!(th.delay(ip(7), t0), secs(1));
    }
}
