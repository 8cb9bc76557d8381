//! A deterministic simulation of the whole guest (host tests only).
//!
//! The production [`Service`](crate::service::Service) (driver, smoltcp
//! stack, HTTP server, site) runs over the real virtio-net driver on the
//! fake device, against a population of clients on a second smoltcp
//! interface across a simulated wire, under a virtual clock. Every choice
//! (traffic, weather on the wire, interrupt delivery, device faults, VM
//! pauses) comes from one seed, so a failure replays exactly:
//! `scripts/sim --seed S --days D`.
//!
//! - [`world`]: the loop, the device side of the NIC (interrupts delivered,
//!   delayed, lost or duplicated; TX completions withheld, a wedged ring,
//!   out-of-order completions, NEEDS_RESET, hostile used entries), busy
//!   periods and idle gaps (idle time jumps to the next deadline), and the
//!   invariants.
//! - [`wire`]: loss, duplication, reordering, corruption, latency and
//!   jitter, bandwidth caps, the link down for seconds to minutes.
//! - [`client`]: keep-alive, pipelined, `Connection: close`, HTTP/1.0,
//!   conditional, gzip, brotli, ranges, slow readers, slowloris, sessions
//!   abandoned mid-body, malformed heads, silent connections, bursts past
//!   the socket pool.
//! - [`oracle`]: the exact response the site defines for each request,
//!   written out from the asset table, not by the code under test.
//! - [`guest`]: the composition as the guest's main loop drives it.
//! - [`mutations`]: bugs put back by wrappers, which the simulator must catch.
//! - [`alloc`]: the counting allocator that measures the guest's heap.
//!
//! Checked as it runs: every response byte-identical to the oracle's, in
//! order, nothing unasked for; no request waiting on the server while the
//! network and device behave ([`client::STALL_MS`]); idle and slowloris
//! connections closed by their deadlines; RX buffers posted = queue size
//! after every pass; the guest's heap under [`world::HEAP_BOUND`] and back
//! to its baseline whenever the clients are gone; every connection closed
//! within [`world::LISTEN_BOUND_MS`] of the last client leaving; the
//! server's counters agreeing with the clients'; device resets only after
//! device faults; no panic (the `sim` profile keeps overflow checks on).
pub mod alloc;
pub mod client;
pub mod guest;
pub mod guest_log;
pub mod mutations;
pub mod oracle;
pub mod wire;

/// The simulator's PRNG: the tests' xorshift64*, seeded through SplitMix64 so
/// that nearby seeds (and 0) give unrelated streams.
pub struct Rng(crate::test_rng::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng(crate::test_rng::Rng((z ^ (z >> 31)) | 1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    /// True one time in `n`.
    pub fn chance(&mut self, n: usize) -> bool {
        self.0.chance(n)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

pub mod world;

#[cfg(test)]
mod tests {
    use super::world::{self, Options};

    fn run(seed: u64, days: f64, requests: u64, faults: bool) -> world::Report {
        let opts = Options {
            seed,
            duration_ms: (days * world::DAY_MS as f64) as u64,
            requests,
            faults,
        };
        let start = std::time::Instant::now();
        let r = world::run(opts, |nic, s| {
            super::guest::Guest::new(nic, crate::dev::fake_nic::Real::<16>, 16, s)
        })
        .unwrap_or_else(|f| panic!("{f}"));
        std::eprintln!(
            "seed {}: {} virtual, {} responses in {} busy periods, {} passes, {} device resets, guest heap {} at rest, {} at most, {:.1} s real\n  clients: {:?}",
            r.seed,
            world::human(r.virtual_ms),
            r.counts.responses,
            r.busy_periods,
            r.passes,
            r.stats.device_resets,
            r.heap_baseline,
            r.heap_peak,
            start.elapsed().as_secs_f64(),
            r.counts,
        );
        r
    }

    /// `scripts/sim`: the seeds, days and requests from the environment.
    #[test]
    #[ignore = "long: run by scripts/sim"]
    fn from_env() {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
        let seed: u64 = var("SIM_SEED", "1").parse().expect("SIM_SEED");
        let seeds: u64 = var("SIM_SEEDS", "1").parse().expect("SIM_SEEDS");
        let days: f64 = var("SIM_DAYS", "1").parse().expect("SIM_DAYS");
        let per_day: u64 = var("SIM_REQUESTS_PER_DAY", "300000")
            .parse()
            .expect("SIM_REQUESTS_PER_DAY");
        let threads: u64 = var("SIM_THREADS", "1").parse().expect("SIM_THREADS");
        let start = std::time::Instant::now();
        let requests = (days * per_day as f64) as u64;
        // Seeds are dealt to the threads round-robin; each run is on one
        // thread from start to end (the heap is counted per thread).
        let workers: std::vec::Vec<_> = (0..threads.max(1))
            .map(|t| {
                std::thread::spawn(move || {
                    let mut done = (0u64, 0u64);
                    let mut s = seed + t;
                    while s < seed + seeds {
                        let r = run(s, days, requests, true);
                        done.0 += r.counts.responses;
                        done.1 += r.virtual_ms;
                        s += threads.max(1);
                    }
                    done
                })
            })
            .collect();
        let (mut total, mut virtual_ms) = (0, 0);
        for w in workers {
            let (t, v) = w
                .join()
                .unwrap_or_else(|_| panic!("a simulation failed (above)"));
            total += t;
            virtual_ms += v;
        }
        std::eprintln!(
            "sim: {seeds} seeds from {seed}: {:.1} simulated days, {total} requests, {:.1} s real",
            virtual_ms as f64 / world::DAY_MS as f64,
            start.elapsed().as_secs_f64()
        );
    }

    #[test]
    fn stormy_days() {
        for seed in 1..4 {
            run(seed, 3.0, 60_000, true);
        }
    }

    #[test]
    fn a_calm_day() {
        let r = run(1, 1.0, 20_000, false);
        assert!(r.counts.responses >= 15_000);
    }
}
