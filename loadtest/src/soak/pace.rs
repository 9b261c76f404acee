//! Pacing and chance: a token bucket per action rate, and random picks
//! from the WebSocket masking generator ([`MaskRng`], xorshift64*).

use std::time::Instant;

use crate::wsc::MaskRng;

/// A token bucket: `rate` tokens a second, at most `cap` saved up, so a
/// thread that stalled catches up by a bounded burst, not by a storm.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    rate: f64,
    cap: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Saves up at most a quarter of a second of tokens (and at least one,
    /// so that rates under 4 a second still happen).
    pub fn new(rate: f64, now: Instant) -> Self {
        Bucket {
            rate,
            cap: (rate / 4.0).max(1.0),
            tokens: 0.0,
            last: now,
        }
    }

    /// Adds the tokens earned since the last call.
    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.cap);
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A number in `0..n` (`n` > 0).
pub fn below(rng: &mut MaskRng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// True with probability `p`.
pub fn chance(rng: &mut MaskRng, p: f64) -> bool {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit < p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_pace_and_cap() {
        let t = Instant::now();
        let mut b = Bucket::new(100.0, t);
        b.refill(t + Duration::from_millis(100));
        let n = std::iter::from_fn(|| b.take().then_some(())).count();
        assert_eq!(n, 10);
        // A stall of 10 s is worth a quarter of a second, not 1,000 tokens.
        b.refill(t + Duration::from_secs(10));
        let n = std::iter::from_fn(|| b.take().then_some(())).count();
        assert_eq!(n, 25);
        let mut slow = Bucket::new(0.5, t);
        slow.refill(t + Duration::from_secs(2));
        assert!(slow.take() && !slow.take());
    }

    #[test]
    fn chances_are_about_right() {
        let mut rng = MaskRng::new();
        let hits = (0..10_000).filter(|_| chance(&mut rng, 0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| below(&mut rng, 7) < 7));
        assert!(!chance(&mut rng, 0.0));
    }
}
