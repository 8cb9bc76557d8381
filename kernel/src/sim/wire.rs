//! The simulated Ethernet between the guest's NIC and the clients: two
//! directions, each with its own weather (loss, duplication, reordering,
//! corruption, latency and jitter, a bandwidth cap) and a link that can go
//! down for a while. Frames are delivered in order of their arrival time,
//! which reordering and jitter shuffle.

use super::Rng;
use std::collections::BinaryHeap;
use std::vec::Vec;

/// What one direction of the wire does to frames, chances in parts per
/// million.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weather {
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    pub corrupt_ppm: u32,
    /// A reordered frame is held back by up to `reorder_ms` more.
    pub reorder_ppm: u32,
    pub reorder_ms: u64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Bytes per millisecond; 0 = no cap.
    pub bytes_per_ms: u64,
}

impl Weather {
    pub const CALM: Weather = Weather {
        loss_ppm: 0,
        duplicate_ppm: 0,
        corrupt_ppm: 0,
        reorder_ppm: 0,
        reorder_ms: 0,
        latency_ms: 1,
        jitter_ms: 0,
        bytes_per_ms: 0,
    };

    /// Bad weather of a random kind and strength.
    pub fn storm(rng: &mut Rng) -> Weather {
        let mut w = Weather::CALM;
        let ppm = |rng: &mut Rng, max: usize| rng.below(max + 1) as u32;
        if rng.chance(2) {
            w.loss_ppm = ppm(rng, 50_000);
        }
        if rng.chance(3) {
            w.duplicate_ppm = ppm(rng, 20_000);
        }
        if rng.chance(3) {
            w.corrupt_ppm = ppm(rng, 10_000);
        }
        if rng.chance(3) {
            w.reorder_ppm = ppm(rng, 50_000);
            w.reorder_ms = 1 + rng.below(50) as u64;
        }
        w.latency_ms = 1 + rng.below(40) as u64;
        if rng.chance(2) {
            w.jitter_ms = rng.below(20) as u64;
        }
        if rng.chance(3) {
            // 100 KB/s to 100 MB/s.
            w.bytes_per_ms = 100 + rng.below(100_000) as u64;
        }
        w
    }
}

struct InFlight {
    at: u64,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest frame goes first.
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Frames a direction holds before it drops more (a switch's buffer).
const QUEUE_LIMIT: usize = 4096;

/// One direction of the wire.
pub struct Direction {
    pub weather: Weather,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    /// When the link has serialised everything sent so far (bandwidth cap).
    busy_until: u64,
    pub stats: DirectionStats,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DirectionStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    pub dropped_link_down: u64,
    pub dropped_full: u64,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            weather: Weather::CALM,
            queue: BinaryHeap::new(),
            seq: 0,
            busy_until: 0,
            stats: DirectionStats::default(),
        }
    }

    fn push(&mut self, at: u64, frame: Vec<u8>) {
        if self.queue.len() >= QUEUE_LIMIT {
            self.stats.dropped_full += 1;
            return;
        }
        self.seq += 1;
        self.queue.push(InFlight {
            at,
            seq: self.seq,
            frame,
        });
    }

    /// Puts `frame` on the wire at `now`, as the weather lets it.
    pub fn send(&mut self, now: u64, mut frame: Vec<u8>, rng: &mut Rng) {
        self.stats.sent += 1;
        let w = self.weather;
        let ppm = |rng: &mut Rng, p: u32| p > 0 && rng.below(1_000_000) < p as usize;
        if ppm(rng, w.loss_ppm) {
            self.stats.lost += 1;
            return;
        }
        let mut at = now + w.latency_ms;
        if w.bytes_per_ms > 0 {
            let start = self.busy_until.max(now);
            self.busy_until = start + (frame.len() as u64).div_ceil(w.bytes_per_ms);
            at = at.max(self.busy_until + w.latency_ms);
        }
        if w.jitter_ms > 0 {
            at += rng.below(w.jitter_ms as usize + 1) as u64;
        }
        if ppm(rng, w.reorder_ppm) {
            self.stats.reordered += 1;
            at += 1 + rng.below(w.reorder_ms.max(1) as usize) as u64;
        }
        if ppm(rng, w.duplicate_ppm) {
            self.stats.duplicated += 1;
            let later = at + rng.below(5) as u64;
            self.push(later, frame.clone());
        }
        if ppm(rng, w.corrupt_ppm) && !frame.is_empty() {
            self.stats.corrupted += 1;
            let i = rng.below(frame.len());
            frame[i] ^= 1 << rng.below(8);
        }
        self.push(at, frame);
    }

    /// The frames due by `now`, in arrival order.
    pub fn due(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        while self.queue.peek().is_some_and(|f| f.at <= now) {
            if let Some(f) = self.queue.pop() {
                self.stats.delivered += 1;
                out.push(f.frame);
            }
        }
    }

    pub fn next_arrival(&self) -> Option<u64> {
        self.queue.peek().map(|f| f.at)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The link went down: what was on it is gone.
    fn cut(&mut self) {
        self.stats.dropped_link_down += self.queue.len() as u64;
        self.queue.clear();
    }
}

/// Both directions and the link's state.
pub struct Wire {
    pub to_guest: Direction,
    pub to_clients: Direction,
    /// The link is down until then (0: up).
    down_until: u64,
}

impl Default for Wire {
    fn default() -> Self {
        Wire::new()
    }
}

impl Wire {
    pub fn new() -> Wire {
        Wire {
            to_guest: Direction::new(),
            to_clients: Direction::new(),
            down_until: 0,
        }
    }

    pub fn is_up(&self, now: u64) -> bool {
        now >= self.down_until
    }

    /// Takes the link down until `until`; frames on it are lost.
    pub fn take_down(&mut self, until: u64) {
        self.down_until = self.down_until.max(until);
        self.to_guest.cut();
        self.to_clients.cut();
    }

    pub fn send_to_guest(&mut self, now: u64, frame: Vec<u8>, rng: &mut Rng) {
        if self.is_up(now) {
            self.to_guest.send(now, frame, rng);
        } else {
            self.to_guest.stats.dropped_link_down += 1;
        }
    }

    pub fn send_to_clients(&mut self, now: u64, frame: Vec<u8>, rng: &mut Rng) {
        if self.is_up(now) {
            self.to_clients.send(now, frame, rng);
        } else {
            self.to_clients.stats.dropped_link_down += 1;
        }
    }

    pub fn set_weather(&mut self, weather: Weather) {
        self.to_guest.weather = weather;
        self.to_clients.weather = weather;
    }

    pub fn next_arrival(&self) -> Option<u64> {
        match (self.to_guest.next_arrival(), self.to_clients.next_arrival()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.to_guest.is_empty() && self.to_clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calm_wire_delivers_in_order_after_the_latency() {
        let mut rng = Rng::new(1);
        let mut wire = Wire::new();
        for i in 0..10u8 {
            wire.send_to_guest(5, std::vec![i], &mut rng);
        }
        let mut out = Vec::new();
        wire.to_guest.due(5, &mut out);
        assert!(out.is_empty());
        wire.to_guest.due(6, &mut out);
        assert_eq!(out, (0..10u8).map(|i| std::vec![i]).collect::<Vec<_>>());
    }

    #[test]
    fn storms_lose_duplicate_and_reorder_and_the_link_drops_everything() {
        let mut rng = Rng::new(7);
        let mut wire = Wire::new();
        wire.set_weather(Weather {
            loss_ppm: 100_000,
            duplicate_ppm: 100_000,
            reorder_ppm: 100_000,
            reorder_ms: 10,
            ..Weather::CALM
        });
        for i in 0..1000u32 {
            wire.send_to_clients(0, i.to_le_bytes().to_vec(), &mut rng);
        }
        let mut out = Vec::new();
        wire.to_clients.due(1000, &mut out);
        let s = wire.to_clients.stats;
        assert!(
            s.lost > 50 && s.duplicated > 50 && s.reordered > 50,
            "{s:?}"
        );
        assert_eq!(out.len() as u64, 1000 - s.lost + s.duplicated);
        let order: Vec<u32> = out
            .iter()
            .map(|f| u32::from_le_bytes([f[0], f[1], f[2], f[3]]))
            .collect();
        assert!(order.windows(2).any(|w| w[0] > w[1]));
        wire.send_to_guest(2000, std::vec![1], &mut rng);
        wire.take_down(3000);
        wire.send_to_guest(2500, std::vec![2], &mut rng);
        assert!(wire.is_empty() && !wire.is_up(2999) && wire.is_up(3000));
    }
}
