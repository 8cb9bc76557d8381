//! The most recent requests, behind `/api/requests.json` and the status page:
//! a fixed ring of [`CAPACITY`] fixed-size entries, allocated once, so
//! recording a request never allocates.
//!
//! An entry is written when its response starts ([`RequestLog::record`], from
//! `Handler::on_response`) and finished when its last byte went into the socket
//! ([`RequestLog::sent`], from `Handler::on_sent`) or when its connection ended
//! first ([`RequestLog::dropped`]). Its duration runs from the request's first
//! byte to that moment, so it includes the time the client took to take the
//! response.

use super::stats::write_json_string;
use crate::http::{Exchange, Millis};
use alloc::string::String;
use core::fmt::Write as _;

/// Entries kept: the newest replace the oldest.
pub const CAPACITY: usize = 64;
/// Path bytes kept per entry; a longer path is cut (at a character boundary)
/// and flagged.
pub const PATH_MAX: usize = 96;

const _: () = assert!(CAPACITY > 0 && PATH_MAX > 0 && PATH_MAX <= u8::MAX as usize);

/// Where an entry's response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Started, not yet completely handed to the socket.
    Sending,
    /// The last byte went into the socket at this time.
    Sent(Millis),
    /// The connection ended (reset, aborted) at this time, before it was sent.
    Dropped(Millis),
}

impl State {
    /// How `/api/requests.json` names the state.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Sending => "sending",
            State::Sent(_) => "sent",
            State::Dropped(_) => "dropped",
        }
    }
}

/// One request and its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// 1 for the first request recorded since boot.
    pub seq: u64,
    /// The connection's id (the n-th accepted since boot).
    pub conn: u64,
    /// `GET`, `HEAD`, or the method a rejected request named.
    pub method: &'static str,
    path: [u8; PATH_MAX],
    path_len: u8,
    /// The path was longer than [`PATH_MAX`] bytes.
    pub path_truncated: bool,
    /// Status of the response.
    pub status: u16,
    /// Body bytes the response sends.
    pub body_bytes: u64,
    /// The request's first byte.
    pub received: Millis,
    /// Whether the response was sent, is being sent or was dropped.
    pub state: State,
}

impl Entry {
    const EMPTY: Entry = Entry {
        seq: 0,
        conn: 0,
        method: "",
        path: [0; PATH_MAX],
        path_len: 0,
        path_truncated: false,
        status: 0,
        body_bytes: 0,
        received: 0,
        state: State::Sending,
    };

    /// The recorded path (at most [`PATH_MAX`] bytes, cut at a character boundary).
    pub fn path(&self) -> &str {
        let bytes = self
            .path
            .get(..usize::from(self.path_len))
            .unwrap_or_default();
        // Cut at a character boundary of a `&str`, so always UTF-8.
        core::str::from_utf8(bytes).unwrap_or_default()
    }

    /// From the request's first byte until its response was sent or dropped.
    pub fn duration_ms(&self) -> Option<Millis> {
        match self.state {
            State::Sending => None,
            State::Sent(at) | State::Dropped(at) => Some(at.saturating_sub(self.received)),
        }
    }
}

/// The ring. Large (about 9 KiB): keep it in a `Box`.
#[derive(Debug, Clone)]
pub struct RequestLog {
    entries: [Entry; CAPACITY],
    /// Requests recorded since boot; the newest is `entries[(total - 1) % CAPACITY]`.
    total: u64,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog::new()
    }
}

impl RequestLog {
    /// An empty ring.
    pub const fn new() -> RequestLog {
        RequestLog {
            entries: [Entry::EMPTY; CAPACITY],
            total: 0,
        }
    }

    /// Requests recorded since boot (the ring holds the last [`CAPACITY`]).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// A response started: overwrite the oldest entry.
    pub fn record(&mut self, e: &Exchange<'_>) {
        self.total = self.total.saturating_add(1);
        let mut cut = e.path.len().min(PATH_MAX);
        while !e.path.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut path = [0u8; PATH_MAX];
        if let (Some(dst), Some(src)) = (path.get_mut(..cut), e.path.as_bytes().get(..cut)) {
            dst.copy_from_slice(src);
        }
        let entry = Entry {
            seq: self.total,
            conn: e.conn,
            method: e.method,
            path,
            path_len: cut as u8,
            path_truncated: cut < e.path.len(),
            status: e.status,
            body_bytes: e.body_bytes,
            received: e.received,
            state: State::Sending,
        };
        if let Some(slot) = self.entries.get_mut(slot_of(self.total)) {
            *slot = entry;
        }
    }

    /// Connection `conn`'s response went out completely.
    pub fn sent(&mut self, conn: u64, now: Millis) {
        self.finish(conn, State::Sent(now));
    }

    /// Connection `conn` ended: a response of it still sending was dropped.
    pub fn dropped(&mut self, conn: u64, now: Millis) {
        self.finish(conn, State::Dropped(now));
    }

    /// A connection has one response in flight at a time: its newest entry.
    fn finish(&mut self, conn: u64, state: State) {
        let newest = self.newest_first().position(|e| e.conn == conn);
        let Some(age) = newest else { return };
        let seq = self.total.saturating_sub(age as u64);
        if let Some(e) = self.entries.get_mut(slot_of(seq))
            && e.state == State::Sending
        {
            e.state = state;
        }
    }

    /// The recorded entries, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Entry> {
        let count = self.total.min(CAPACITY as u64);
        (0..count).filter_map(move |age| self.entries.get(slot_of(self.total - age)))
    }

    /// `{"capacity":..,"total":..,"uptime_ms":..,"requests":[..]}`, newest
    /// first, appended to `out`. `duration_ms` is `null` while sending.
    pub fn write_json(&self, out: &mut String, uptime_ms: Millis) {
        let _ = write!(
            out,
            "{{\"capacity\":{CAPACITY},\"total\":{},\"uptime_ms\":{uptime_ms},\"requests\":[",
            self.total
        );
        for (i, e) in self.newest_first().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"seq\":{},\"conn\":{},\"method\":", e.seq, e.conn);
            write_json_string(out, e.method);
            out.push_str(",\"path\":");
            write_json_string(out, e.path());
            let _ = write!(
                out,
                ",\"path_truncated\":{},\"status\":{},\"body_bytes\":{},\"received_ms\":{},\"duration_ms\":",
                e.path_truncated, e.status, e.body_bytes, e.received
            );
            match e.duration_ms() {
                Some(d) => {
                    let _ = write!(out, "{d}");
                }
                None => out.push_str("null"),
            }
            let _ = write!(out, ",\"state\":\"{}\"}}", e.state.as_str());
        }
        out.push_str("]}\n");
    }
}

/// Where the entry of request `seq` (from 1) lives.
fn slot_of(seq: u64) -> usize {
    (seq.wrapping_sub(1) % CAPACITY as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(conn: u64, path: &str, received: Millis) -> Exchange<'_> {
        Exchange {
            status: 200,
            body_bytes: 10,
            method: "GET",
            path,
            conn,
            received,
            now: received + 1,
            ..Exchange::default()
        }
    }

    fn json(log: &RequestLog) -> serde_json::Value {
        let mut out = String::new();
        log.write_json(&mut out, 12_345);
        serde_json::from_str(&out).unwrap()
    }

    #[test]
    fn empty_log() {
        let log = RequestLog::new();
        let v = json(&log);
        assert_eq!(v["capacity"], CAPACITY);
        assert_eq!(v["total"], 0);
        assert_eq!(v["uptime_ms"], 12_345);
        assert_eq!(v["requests"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn records_newest_first_and_wraps() {
        let mut log = RequestLog::new();
        let paths: Vec<String> = (0..CAPACITY * 2 + 5).map(|i| format!("/p{i}")).collect();
        for (i, p) in paths.iter().enumerate() {
            log.record(&exchange(i as u64, p, i as u64 * 10));
            if i.is_multiple_of(3) {
                log.sent(i as u64, i as u64 * 10 + 7);
            }
        }
        assert_eq!(log.total(), paths.len() as u64);
        let v = json(&log);
        let reqs = v["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), CAPACITY);
        for (age, r) in reqs.iter().enumerate() {
            let i = paths.len() - 1 - age;
            assert_eq!(r["seq"], i as u64 + 1);
            assert_eq!(r["path"], paths[i].as_str());
            assert_eq!(r["conn"], i as u64);
            assert_eq!(r["method"], "GET");
            assert_eq!(
                (r["status"].as_u64(), r["body_bytes"].as_u64()),
                (Some(200), Some(10))
            );
            assert_eq!(r["received_ms"], i as u64 * 10);
            if i.is_multiple_of(3) {
                assert_eq!(
                    (r["state"].as_str(), r["duration_ms"].as_u64()),
                    (Some("sent"), Some(7))
                );
            } else {
                assert_eq!(r["state"], "sending");
                assert!(r["duration_ms"].is_null());
            }
        }
    }

    #[test]
    fn finishing_touches_only_the_connections_newest_sending_entry() {
        let mut log = RequestLog::new();
        log.record(&exchange(1, "/a", 0));
        log.sent(1, 5);
        log.record(&exchange(2, "/b", 10));
        log.record(&exchange(1, "/c", 20));
        log.sent(1, 26);
        // Already sent: a second report changes nothing.
        log.sent(1, 99);
        log.dropped(2, 40);
        log.dropped(2, 50);
        // Unknown connection: nothing.
        log.sent(7, 60);
        let e: Vec<_> = log.newest_first().map(|e| (e.path(), e.state)).collect();
        assert_eq!(
            e,
            [
                ("/c", State::Sent(26)),
                ("/b", State::Dropped(40)),
                ("/a", State::Sent(5))
            ]
        );
        assert_eq!(log.newest_first().next().unwrap().duration_ms(), Some(6));
    }

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        let mut log = RequestLog::new();
        let long = "é".repeat(PATH_MAX); // 2 bytes each
        log.record(&exchange(1, &long, 0));
        let fits = "x".repeat(PATH_MAX);
        log.record(&exchange(2, &fits, 0));
        let odd = format!("/{}", "é".repeat(PATH_MAX / 2));
        log.record(&exchange(3, &odd, 0));
        let v: Vec<_> = log
            .newest_first()
            .map(|e| (e.path().len(), e.path_truncated))
            .collect();
        assert_eq!(
            v,
            [(PATH_MAX - 1, true), (PATH_MAX, false), (PATH_MAX, true)]
        );
        let entries: Vec<_> = log.newest_first().collect();
        assert!(long.starts_with(entries[2].path()));
        assert!(odd.starts_with(entries[0].path()));
    }

    #[test]
    fn json_escapes_paths() {
        let mut log = RequestLog::new();
        log.record(&exchange(1, "/a\"b\\c</script>", 0));
        let v = json(&log);
        assert_eq!(v["requests"][0]["path"], "/a\"b\\c</script>");
        assert_eq!(v["requests"][0]["path_truncated"], false);
    }
}
