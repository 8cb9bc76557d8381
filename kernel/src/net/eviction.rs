//! Which connection to close when the socket pool is full and a new one
//! arrives: the least valuable, so a few hoarding peers cannot lock everyone
//! else out. Pure, so the policy is tested on the host.
//!
//! Order, most expendable first (each oldest first):
//! 1. idle keep-alive connections: a client that wants to send again can
//!    reconnect, as it must after any idle timeout;
//! 2. connections still sending their request head, longest first: slowloris
//!    lives here, and a real client sends its head in one round trip;
//! 3. peers that have not closed after our FIN: the exchange is over;
//! 4. responses stalled by their reader (under [`PROGRESS_BYTES`] taken in
//!    [`STALLED_AFTER_MS`]), longest stalled first: a slow-read attacker
//!    takes a few bytes every few seconds through a tiny window and would
//!    otherwise hold its socket for as long as it likes;
//! 5. new connections that have sent nothing yet, oldest first: most are
//!    clients whose request is on its way (under a flood of new connections
//!    the pool turns over in milliseconds, and a request still in the RX
//!    ring must not lose its connection to an attacker's older one).
//!
//! A connection idle for less than [`GRACE_MS`] (most often a keep-alive
//! client between two requests) goes after all of these, oldest first. A
//! connection new for less than [`GRACE_MS`] is never chosen: its request is
//! most likely on its way, and closing it would fail a client to admit
//! another that can retry. Nor is one receiving a response at a useful rate.

/// A response whose reader has taken fewer than [`PROGRESS_BYTES`] for this
/// long is stalled: a slow-read attacker takes a few bytes every few seconds
/// through a tiny window, any useful reader far more.
pub const STALLED_AFTER_MS: u64 = 2_000;
/// How long a connection must have been idle before it is chosen in its
/// turn rather than last, or new (with nothing sent) before it can be chosen.
pub const GRACE_MS: u64 = 500;
/// Acknowledged bytes that count as progress (a reader slower than this per
/// [`STALLED_AFTER_MS`], 512 B/s, is stalled).
pub const PROGRESS_BYTES: u64 = 1024;

/// What a connection is doing, as far as its value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Kept alive, waiting for the next request.
    Idle,
    /// Sending its request head (or a small body).
    Head,
    /// New; nothing received yet.
    Opened,
    /// We closed; the peer has not.
    Lingering,
    /// Sending a response (or its tail is not yet acknowledged), its reader
    /// without progress since `since`.
    Responding,
    /// Not to be closed (no connection, or a response still in flight).
    Busy,
}

/// Why a connection was closed to make room (each is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Idle,
    /// A request head not complete, or nothing sent at all.
    SlowHead,
    Lingering,
    StalledReader,
}

/// How fast a connection's reader takes what we send: the time of the last
/// [`PROGRESS_BYTES`] acknowledged (or of the last moment nothing was
/// outstanding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadProgress {
    written: u64,
    acked_at_mark: u64,
    mark: u64,
}

impl ReadProgress {
    /// A new connection at `now`.
    pub fn open(now: u64) -> ReadProgress {
        ReadProgress {
            written: 0,
            acked_at_mark: 0,
            mark: now,
        }
    }

    /// `n` more bytes handed to the socket.
    pub fn wrote(&mut self, n: usize) {
        self.written = self.written.saturating_add(n as u64);
    }

    /// With `unacked` bytes still in the socket at `now`: since when the
    /// reader has made no progress.
    pub fn update(&mut self, unacked: usize, now: u64) -> u64 {
        let acked = self.written.saturating_sub(unacked as u64);
        if unacked == 0 || acked.saturating_sub(self.acked_at_mark) >= PROGRESS_BYTES {
            self.mark = now;
            self.acked_at_mark = acked;
        }
        self.mark
    }

    pub fn since(&self) -> u64 {
        self.mark
    }
}

/// One open connection: what it is doing and since when (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub standing: Standing,
    pub since: u64,
}

/// The index (in `candidates`' order) of the connection to close at `now`,
/// and why; `None` when every connection is busy.
pub fn choose(
    candidates: impl IntoIterator<Item = Candidate>,
    now: u64,
) -> Option<(usize, Reason)> {
    candidates
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let age = now.saturating_sub(c.since);
            let (rank, reason) = match c.standing {
                Standing::Idle if age < GRACE_MS => (5, Reason::Idle),
                Standing::Opened if age < GRACE_MS => return None,
                Standing::Idle => (0u8, Reason::Idle),
                Standing::Head => (1, Reason::SlowHead),
                Standing::Lingering => (2, Reason::Lingering),
                Standing::Responding if age >= STALLED_AFTER_MS => (3, Reason::StalledReader),
                Standing::Opened => (4, Reason::SlowHead),
                Standing::Responding | Standing::Busy => return None,
            };
            Some(((rank, c.since, i), reason))
        })
        .min_by_key(|&(key, _)| key)
        .map(|((_, _, i), reason)| (i, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(standing: Standing, since: u64) -> Candidate {
        Candidate { standing, since }
    }

    #[test]
    fn idle_goes_first_oldest_first() {
        let slots = [
            c(Standing::Head, 10),
            c(Standing::Idle, 500),
            c(Standing::Lingering, 1),
            c(Standing::Idle, 200),
            c(Standing::Busy, 0),
        ];
        assert_eq!(choose(slots, 10_000), Some((3, Reason::Idle)));
    }

    #[test]
    fn then_the_longest_request_head() {
        let slots = [
            c(Standing::Head, 300),
            c(Standing::Lingering, 1),
            c(Standing::Head, 100),
            c(Standing::Busy, 0),
        ];
        assert_eq!(choose(slots, 10_000), Some((2, Reason::SlowHead)));
    }

    #[test]
    fn then_peers_lingering_after_our_fin() {
        let slots = [
            c(Standing::Busy, 0),
            c(Standing::Lingering, 9),
            c(Standing::Lingering, 4),
        ];
        assert_eq!(choose(slots, 10_000), Some((2, Reason::Lingering)));
    }

    #[test]
    fn a_connection_receiving_a_response_is_kept() {
        assert_eq!(
            choose([c(Standing::Busy, 0), c(Standing::Busy, 1)], 10_000),
            None
        );
        assert_eq!(choose([], 10_000), None);
        // A response that moved within the stall limit is in flight.
        let moving = c(Standing::Responding, 10_000 - STALLED_AFTER_MS + 1);
        assert_eq!(choose([moving, c(Standing::Busy, 0)], 10_000), None);
    }

    #[test]
    fn ties_go_to_the_first_slot() {
        let slots = [
            c(Standing::Busy, 0),
            c(Standing::Idle, 7),
            c(Standing::Idle, 7),
        ];
        assert_eq!(choose(slots, 10_000), Some((1, Reason::Idle)));
    }

    #[test]
    fn last_the_longest_stalled_response() {
        let slots = [
            c(Standing::Responding, 9_000),
            c(Standing::Responding, 3_000),
            c(Standing::Responding, 5_000),
            c(Standing::Busy, 0),
        ];
        assert_eq!(choose(slots, 10_000), Some((1, Reason::StalledReader)));
        // Anything else goes first.
        let slots = [c(Standing::Responding, 0), c(Standing::Lingering, 9_999)];
        assert_eq!(choose(slots, 10_000), Some((1, Reason::Lingering)));
    }

    #[test]
    fn a_reader_progresses_by_acknowledged_kilobytes() {
        let mut r = ReadProgress::open(0);
        // Nothing outstanding: never stalled.
        assert_eq!(r.update(0, 500), 500);
        // 64 KiB in the socket, nothing taken yet.
        r.wrote(64 * 1024);
        assert_eq!(r.update(64 * 1024, 1_000), 500);
        // A slow reader: 32 bytes at a time.
        assert_eq!(r.update(64 * 1024 - 32, 4_000), 500);
        assert_eq!(r.update(64 * 1024 - 64, 7_000), 500);
        // A kilobyte taken is progress.
        assert_eq!(r.update(63 * 1024 - 64, 7_100), 7_100);
        assert_eq!(r.since(), 7_100);
        // Everything taken: progress too.
        assert_eq!(r.update(0, 9_000), 9_000);
    }

    #[test]
    fn a_new_connection_that_sent_nothing_goes_last() {
        let slots = [
            c(Standing::Opened, 1),
            c(Standing::Responding, 0),
            c(Standing::Head, 9_999),
        ];
        assert_eq!(choose(slots, 10_000), Some((2, Reason::SlowHead)));
        let slots = [
            c(Standing::Opened, 5),
            c(Standing::Opened, 2),
            c(Standing::Busy, 0),
        ];
        assert_eq!(choose(slots, 10_000), Some((1, Reason::SlowHead)));
    }

    #[test]
    fn a_connection_idle_for_less_than_the_grace_goes_last() {
        let now = 10_000;
        let young = now - GRACE_MS + 1;
        let slots = [c(Standing::Idle, young), c(Standing::Opened, 0)];
        assert_eq!(choose(slots, now), Some((1, Reason::SlowHead)));
        let slots = [c(Standing::Idle, young), c(Standing::Head, now)];
        assert_eq!(choose(slots, now), Some((1, Reason::SlowHead)));
        let slots = [c(Standing::Idle, young), c(Standing::Idle, now - GRACE_MS)];
        assert_eq!(choose(slots, now), Some((1, Reason::Idle)));
        // Among the young, the oldest.
        let slots = [c(Standing::Idle, young + 5), c(Standing::Idle, young)];
        assert_eq!(choose(slots, now), Some((1, Reason::Idle)));
    }

    #[test]
    fn a_connection_new_for_less_than_the_grace_is_kept() {
        let now = 10_000;
        let young = now - GRACE_MS + 1;
        assert_eq!(choose([c(Standing::Opened, young)], now), None);
        let slots = [c(Standing::Opened, young), c(Standing::Idle, now)];
        assert_eq!(choose(slots, now), Some((1, Reason::Idle)));
    }
}
