//! The host's TSC frequency, for the guest's `tsc_early_khz`.
//!
//! Under TCG the guest reads the host's TSC, and calibrating it against the
//! emulated PIT hangs about one boot in six. Stating the frequency skips the
//! calibration; stating the host's real one keeps guest time right, where a
//! made-up figure makes the clocksource watchdog mark the TSC unstable (with
//! a warning on the console) and the guest's clock run fast or slow.

use std::time::{Duration, Instant};

/// Long enough to measure the TSC to well under the guest watchdog's 6 %.
const WINDOW: Duration = Duration::from_millis(10);
/// Used only if the TSC cannot be measured; still skips the calibration.
const FALLBACK_KHZ: u64 = 2_000_000;

/// The figure to state on the guest's command line.
pub fn host_tsc_khz() -> u64 {
    measure_host_tsc_khz(WINDOW).unwrap_or(FALLBACK_KHZ)
}

/// Measures the TSC against the monotonic clock over `window`.
fn measure_host_tsc_khz(window: Duration) -> Option<u64> {
    let started = Instant::now();
    let first = read_tsc();
    std::thread::sleep(window);
    let last = read_tsc();
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).ok()?;
    let khz = last.checked_sub(first)?.checked_mul(1000)? / elapsed_us.max(1);
    // Round to whole MHz: the measurement is not finer than that.
    Some((khz + 500) / 1000 * 1000).filter(|khz| *khz > 0)
}

fn read_tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64; it only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_plausible_frequency() {
        let khz = measure_host_tsc_khz(Duration::from_millis(20)).unwrap();
        // Any x86_64 made this century: 500 MHz to 10 GHz.
        assert!((500_000..10_000_000).contains(&khz), "{khz} kHz");
    }
}
