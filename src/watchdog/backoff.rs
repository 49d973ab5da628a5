//! The wait before (re)connecting: `min(initial·2^n, max)` with ±15 % jitter, where `n`
//! is the persisted count of consecutive failures. Pure, apart from [`jitter_seed`].

use std::time::Duration;

/// The jitter is ±this fraction of the nominal wait, so tunnels that failed together do
/// not reconnect in lock-step.
pub const JITTER: f64 = 0.15;

/// The nominal wait (no jitter) after `failures` consecutive failures; 0 → no wait.
pub fn nominal(failures: u32, initial: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64.checked_shl(failures - 1).unwrap_or(u64::MAX).max(1);
    let nominal = initial
        .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .unwrap_or(max);
    nominal.min(max)
}

/// The wait with jitter; `unit` in [0, 1) picks where in the ±[`JITTER`] band it lands.
pub fn with_jitter(nominal: Duration, unit: f64) -> Duration {
    let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    nominal.mul_f64(factor)
}

/// The smallest failure count whose wait is the maximum: where permanent errors jump to.
pub fn failures_for_max(initial: Duration, max: Duration) -> u32 {
    (1..64)
        .find(|&n| nominal(n, initial, max) >= max)
        .unwrap_or(64)
}

/// A number in [0, 1) that differs between processes and runs (pid and clock), enough
/// to spread reconnects without a random-number crate.
pub fn jitter_seed() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 of clock ⊕ pid
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_up_to_max() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let seq: Vec<u64> = (0..10).map(|n| nominal(n, i, m).as_secs()).collect();
        assert_eq!(seq, [0, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(nominal(1000, i, m), m);
        assert_eq!(failures_for_max(i, m), 9);
    }

    #[test]
    fn jitter_stays_in_band() {
        let n = Duration::from_secs(10);
        assert_eq!(with_jitter(n, 0.0), Duration::from_millis(8500));
        assert_eq!(with_jitter(n, 1.0), Duration::from_millis(11500));
        for _ in 0..100 {
            let s = jitter_seed();
            assert!((0.0..1.0).contains(&s));
        }
    }
}
