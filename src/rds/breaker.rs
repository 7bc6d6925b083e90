//! Circuit breaker over the RDS transport: after `threshold` consecutive transport failures
//! (connect, handshake, lost connection, no answer before the deadline) calls fail fast for
//! `cooldown`, so a dead RDS costs each RPC microseconds instead of a connect timeout; then
//! one probe is let through. Timeouts count because an RDS that accepts TCP but never speaks
//! SSH shows as nothing else. Any RouterOS answer (even an error) resets the count. Time is
//! passed in, so tests drive it.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Gauge values of `rds_csi_rds_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time until a probe will be let through (zero while a probe is in flight).
    pub retry_in: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    pub fn state(&self) -> BreakerState {
        match *self.inner.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Admits a call, or refuses it while open. After the cooldown exactly one caller
    /// becomes the probe; the others keep failing fast until its outcome is recorded.
    pub fn admit(&self, now: Instant) -> Result<(), Rejected> {
        let mut inner = self.inner.lock();
        match *inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now < until => Err(Rejected {
                retry_in: until - now,
            }),
            Inner::Open { .. }
            | Inner::HalfOpen {
                probe_in_flight: false,
            } => {
                *inner = Inner::HalfOpen {
                    probe_in_flight: true,
                };
                Ok(())
            }
            Inner::HalfOpen {
                probe_in_flight: true,
            } => Err(Rejected {
                retry_in: Duration::ZERO,
            }),
        }
    }

    /// The RDS answered (whatever it said): the transport works.
    pub fn record_success(&self) {
        *self.inner.lock() = Inner::Closed { failures: 0 };
    }

    /// A transport failure. Returns true when this failure opened the breaker.
    pub fn record_transport_failure(&self, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        let open = Inner::Open {
            until: now + self.cooldown,
        };
        match *inner {
            Inner::Closed { failures } if failures + 1 >= self.threshold => {
                *inner = open;
                true
            }
            Inner::Closed { failures } => {
                *inner = Inner::Closed {
                    failures: failures + 1,
                };
                false
            }
            Inner::HalfOpen { .. } => {
                *inner = open;
                true
            }
            Inner::Open { .. } => false,
        }
    }

    /// An admitted call was abandoned before its outcome (the caller's future was dropped,
    /// e.g. a cancelled RPC): a half-open probe slot is released for the next caller, so
    /// the breaker never stays half-open with no probe running.
    pub fn record_abandoned(&self) {
        let mut inner = self.inner.lock();
        if let Inner::HalfOpen { .. } = *inner {
            *inner = Inner::HalfOpen {
                probe_in_flight: false,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_fails_fast_then_probes_once() {
        let b = Breaker::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(!b.record_transport_failure(t0));
        assert!(!b.record_transport_failure(t0));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.record_transport_failure(t0));
        assert_eq!(b.state(), BreakerState::Open);
        let r = b.admit(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(r.retry_in, Duration::from_secs(20));
        // After the cooldown: one probe, the rest still fail fast.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.admit(later), Ok(()));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(later).is_err());
        // A failed probe reopens for a whole cooldown.
        assert!(b.record_transport_failure(later));
        assert!(b.admit(later + Duration::from_secs(29)).is_err());
        assert_eq!(b.admit(later + Duration::from_secs(30)), Ok(()));
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(later), Ok(()));
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        b.record_transport_failure(t0);
        b.record_success();
        assert!(!b.record_transport_failure(t0));
        assert!(b.record_transport_failure(t0));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = Breaker::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(b.record_transport_failure(t0));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.admit(later), Ok(()));
        assert!(b.admit(later).is_err());
        b.record_abandoned();
        assert_eq!(b.admit(later), Ok(()));
    }
}
