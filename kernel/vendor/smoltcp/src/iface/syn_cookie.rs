//! PATCH (unikernel): TCP SYN cookies (RFC 4987 §3.6), after Linux's
//! `net/ipv4/syncookies.c`.
//!
//! With cookies on, the interface answers every SYN to a served port with a
//! SYN-ACK whose sequence number is the cookie, and keeps nothing: a SYN flood
//! costs no socket and no memory. The ACK that completes the handshake carries
//! the cookie back (`ack - 1`); if it checks out, a listening socket is moved
//! straight to ESTABLISHED with the sequence numbers and MSS the cookie holds.
//!
//! The cookie is Linux's layout:
//!
//! ```text
//! cookie = H0(tuple) + their ISN + (count << 24) + ((H1(tuple, count, their ISN) + (mss index << 22)) & 0xffffff)
//! ```
//!
//! Linux adds the index itself (0..3). Linux checks cookies only for ACKs
//! that come while it is sending them, under a flood; this interface sends a
//! cookie for every SYN, so every ACK that matches no connection is checked,
//! among them a stray segment of a connection already gone (evicted, or
//! reset). Such a segment carries `seq = ISN + 1 + k` after `k` bytes of its
//! stream, so it presents `their_isn + k` and the check sees `index - k`,
//! which for `k <= index` is another valid index: a segment 1-3 bytes into
//! a stream would open a connection that starts in the middle of it. The
//! index is therefore stored in the top two of the 24 bits, so the valid
//! values are the multiples of `1 << 22` and a shift of the ISN or of the
//! acknowledged cookie by less than `1 << 22` (4 MiB of either stream) never
//! passes. And since a segment shifted by the same amount in both streams
//! cancels out in the sum, `H1` also covers their ISN (Linux's does not):
//! a wrong ISN then draws an unrelated field, which passes with the odds of
//! a forgery. Those stay 4 in `1 << 24` per counter value, as in Linux.
//!
//! `H0`, `H1` are SipHash-2-4 under two secret keys; `count` is a minute
//! counter, so a cookie is accepted during the minute it was made and the
//! next one (Linux's `MAX_SYNCOOKIE_AGE` of 2). The MSS the peer offered is
//! rounded down to an entry of a four-value table and stored as its index.
//! Window scaling, SACK and timestamps are not encoded, so a connection made
//! from a cookie has none of them (Linux encodes them in the timestamp
//! option; this interface does not).

use crate::time::Instant;
use crate::wire::IpAddress;

/// Bits of the cookie below the time counter.
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Where the MSS index sits within those bits: at the top, so the valid
/// values are far apart (see the module doc).
const MSS_SHIFT: u32 = COOKIE_BITS - 2;
/// Length of one counter step: a cookie stays valid for one to two steps.
pub const COOKIE_PERIOD_MS: i64 = 60_000;
/// Counter steps a cookie may age (Linux's `MAX_SYNCOOKIE_AGE`).
const MAX_AGE: u32 = 2;

/// MSS values a cookie can carry, ascending, as Linux's IPv4 `msstab`:
/// the classic minimum, a common tunnel size, PPPoE-ish, and Ethernet.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// What happened to cookies since the interface started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynCookieStats {
    /// SYN-ACKs sent carrying a cookie.
    pub sent: u64,
    /// ACKs whose cookie checked out and that took a listening socket.
    pub valid: u64,
    /// ACKs with no connection whose cookie did not check out (answered RST).
    pub invalid: u64,
    /// ACKs with a valid cookie that found no listening socket free (dropped,
    /// so the peer's retransmission can try again).
    pub no_socket: u64,
}

/// The secret keys and counters of the cookie machinery.
#[derive(Debug, Clone)]
pub struct SynCookies {
    keys: [[u64; 2]; 2],
    pub(crate) stats: SynCookieStats,
}

/// The connection a segment belongs to, as the server sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieTuple {
    pub(crate) remote_addr: IpAddress,
    pub(crate) local_addr: IpAddress,
    pub(crate) remote_port: u16,
    pub(crate) local_port: u16,
}

impl SynCookies {
    /// Cookies keyed by a 256-bit secret (two SipHash keys).
    pub fn new(secret: [u64; 4]) -> SynCookies {
        SynCookies {
            keys: [[secret[0], secret[1]], [secret[2], secret[3]]],
            stats: SynCookieStats::default(),
        }
    }

    pub fn stats(&self) -> SynCookieStats {
        self.stats
    }

    /// The minute counter at `now`.
    pub(crate) fn count(now: Instant) -> u32 {
        (now.total_millis().max(0) / COOKIE_PERIOD_MS) as u32
    }

    /// Index of the largest table MSS not above what the peer offered (the
    /// smallest entry when it offered less, or nothing: RFC 9293's default is
    /// 536).
    pub(crate) fn mss_index(offered: Option<u16>) -> u32 {
        let offered = offered.filter(|&m| m != 0).unwrap_or(MSS_TABLE[0]);
        MSS_TABLE.iter().rposition(|&m| m <= offered).unwrap_or(0) as u32
    }

    fn hash(&self, key: usize, t: &CookieTuple, count: u32, their_isn: u32) -> u32 {
        let mut buf = [0u8; 16 + 16 + 4 + 4 + 4];
        let mut len = 0;
        for addr in [&t.remote_addr, &t.local_addr] {
            let bytes: &[u8] = match addr {
                #[cfg(feature = "proto-ipv4")]
                IpAddress::Ipv4(a) => &a.octets(),
                #[cfg(feature = "proto-ipv6")]
                IpAddress::Ipv6(a) => &a.octets(),
            };
            buf[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        }
        buf[len..len + 2].copy_from_slice(&t.remote_port.to_be_bytes());
        buf[len + 2..len + 4].copy_from_slice(&t.local_port.to_be_bytes());
        buf[len + 4..len + 8].copy_from_slice(&count.to_le_bytes());
        buf[len + 8..len + 12].copy_from_slice(&their_isn.to_le_bytes());
        len += 12;
        siphash24(self.keys[key], &buf[..len]) as u32
    }

    /// The cookie (our initial sequence number) for a SYN with sequence
    /// number `their_isn` offering `mss`, made at `now`; and the MSS it holds.
    pub(crate) fn make(
        &self,
        t: &CookieTuple,
        their_isn: u32,
        mss: Option<u16>,
        now: Instant,
    ) -> (u32, u16) {
        let index = Self::mss_index(mss);
        let count = Self::count(now);
        let cookie = self
            .hash(0, t, 0, 0)
            .wrapping_add(their_isn)
            .wrapping_add(count << COOKIE_BITS)
            .wrapping_add(
                self.hash(1, t, count, their_isn)
                    .wrapping_add(index << MSS_SHIFT)
                    & COOKIE_MASK,
            );
        (cookie, MSS_TABLE[index as usize])
    }

    /// The MSS a returned cookie holds, if it was made by us for this tuple
    /// and this ISN within the last [`MAX_AGE`] counter steps.
    pub(crate) fn check(
        &self,
        t: &CookieTuple,
        their_isn: u32,
        cookie: u32,
        now: Instant,
    ) -> Option<u16> {
        let count = Self::count(now);
        let rest = cookie
            .wrapping_sub(self.hash(0, t, 0, 0))
            .wrapping_sub(their_isn);
        // The counter travels in the top 8 bits; compare modulo 256.
        let age = count.wrapping_sub(rest >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
        if age >= MAX_AGE {
            return None;
        }
        let made = count.wrapping_sub(age);
        let field = rest.wrapping_sub(self.hash(1, t, made, their_isn)) & COOKIE_MASK;
        if field & ((1 << MSS_SHIFT) - 1) != 0 {
            return None;
        }
        MSS_TABLE.get((field >> MSS_SHIFT) as usize).copied()
    }
}

/// SipHash-2-4 (Aumasson and Bernstein) of `data` under `key`.
pub(crate) fn siphash24(key: [u64; 2], data: &[u8]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(word);
        let m = u64::from_le_bytes(b);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let tail = words.remainder();
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(all(test, feature = "proto-ipv4"))]
mod tests {
    use super::*;
    use crate::wire::Ipv4Address;

    fn tuple() -> CookieTuple {
        CookieTuple {
            remote_addr: IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 7)),
            local_addr: IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)),
            remote_port: 40000,
            local_port: 80,
        }
    }

    fn jar() -> SynCookies {
        SynCookies::new([1, 2, 3, 4])
    }

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The paper's appendix: key 00..0f, message 00..0e.
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash24(key, &msg), 0xa129_ca61_49be_45e5);
        // And the first entry of the reference implementation's table (empty input).
        assert_eq!(siphash24(key, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn mss_is_rounded_down_to_the_table() {
        assert_eq!(SynCookies::mss_index(Some(1460)), 3);
        assert_eq!(SynCookies::mss_index(Some(9000)), 3);
        assert_eq!(SynCookies::mss_index(Some(1459)), 2);
        assert_eq!(SynCookies::mss_index(Some(1440)), 2);
        assert_eq!(SynCookies::mss_index(Some(1300)), 1);
        assert_eq!(SynCookies::mss_index(Some(600)), 0);
        assert_eq!(SynCookies::mss_index(Some(100)), 0);
        assert_eq!(SynCookies::mss_index(Some(0)), 0);
        assert_eq!(SynCookies::mss_index(None), 0);
    }

    #[test]
    fn a_cookie_round_trips_with_its_mss() {
        let j = jar();
        for (offered, held) in [(1460, 1460), (1448, 1440), (1400, 1300), (536, 536)] {
            let (cookie, mss) = j.make(&tuple(), 0xdead_beef, Some(offered), at(5_000));
            assert_eq!(mss, held);
            assert_eq!(
                j.check(&tuple(), 0xdead_beef, cookie, at(5_000)),
                Some(held)
            );
        }
    }

    #[test]
    fn a_cookie_survives_into_the_next_period_and_then_expires() {
        let j = jar();
        // Made in period 1; good through period 2, refused from period 3.
        let (cookie, _) = j.make(&tuple(), 7, Some(1460), at(61_000));
        assert_eq!(j.check(&tuple(), 7, cookie, at(61_000)), Some(1460));
        assert_eq!(j.check(&tuple(), 7, cookie, at(119_999)), Some(1460));
        assert_eq!(j.check(&tuple(), 7, cookie, at(179_999)), Some(1460));
        assert_eq!(j.check(&tuple(), 7, cookie, at(180_000)), None);
        assert_eq!(j.check(&tuple(), 7, cookie, at(600_000)), None);
        // A cookie from the future (a clock gone backwards) is refused too.
        assert_eq!(j.check(&tuple(), 7, cookie, at(59_999)), None);
    }

    #[test]
    fn a_cookie_works_across_the_counter_wrap() {
        let j = jar();
        let period = COOKIE_PERIOD_MS;
        let (cookie, _) = j.make(&tuple(), 7, Some(1460), at(255 * period));
        assert_eq!(j.check(&tuple(), 7, cookie, at(256 * period)), Some(1460));
        assert_eq!(j.check(&tuple(), 7, cookie, at(257 * period)), None);
    }

    #[test]
    fn tampered_cookies_are_refused() {
        let j = jar();
        let t = tuple();
        let (cookie, _) = j.make(&t, 1000, Some(1460), at(1_000));
        // Every single-bit change but those of the MSS index. (The index is
        // added to the keyed hash, as in Linux, so a change of its two bits
        // can name another table entry; that needs the cookie itself, which
        // only a peer that saw our SYN-ACK has.)
        for bit in (0..MSS_SHIFT).chain(COOKIE_BITS..32) {
            assert_eq!(
                j.check(&t, 1000, cookie ^ (1 << bit), at(1_000)),
                None,
                "bit {bit}"
            );
        }
        // Another ISN, port, address or secret.
        assert_eq!(j.check(&t, 1001, cookie, at(1_000)), None);
        assert_eq!(j.check(&t, 1000 + (1 << 12), cookie, at(1_000)), None);
        let mut other = t;
        other.remote_port = 40001;
        assert_eq!(j.check(&other, 1000, cookie, at(1_000)), None);
        let mut other = t;
        other.remote_addr = IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 8));
        assert_eq!(j.check(&other, 1000, cookie, at(1_000)), None);
        assert_eq!(
            SynCookies::new([1, 2, 3, 5]).check(&t, 1000, cookie, at(1_000)),
            None
        );
    }

    #[test]
    fn a_segment_from_inside_a_stream_is_not_a_cookie_ack() {
        // A segment k bytes into the client's stream presents seq - 1 = ISN + k;
        // one acknowledging n bytes of ours presents ack - 1 = cookie + n. With
        // the index added plainly, k up to the index passed; with the ISN
        // outside the keyed hash, equal shifts k = n cancelled.
        let j = jar();
        let t = tuple();
        for offered in [536, 1300, 1440, 1460] {
            let (cookie, _) = j.make(&t, 1000, Some(offered), at(1_000));
            for k in 1..=4096u32 {
                assert_eq!(
                    j.check(&t, 1000 + k, cookie, at(1_000)),
                    None,
                    "{k} bytes into the client's stream, MSS {offered}"
                );
                assert_eq!(
                    j.check(&t, 1000, cookie.wrapping_add(k), at(1_000)),
                    None,
                    "{k} bytes into ours, MSS {offered}"
                );
                assert_eq!(
                    j.check(&t, 1000 + k, cookie.wrapping_add(k), at(1_000)),
                    None,
                    "{k} bytes into both, MSS {offered}"
                );
            }
        }
    }

    #[test]
    fn guessed_cookies_almost_never_pass() {
        // A spoofer who cannot see our SYN-ACKs guesses: with 2 valid counter
        // values and 4 MSS indices out of 2^32, about 2 in a billion pass.
        let j = jar();
        let t = tuple();
        let passed = (0..200_000u32)
            .filter(|&g| {
                j.check(&t, 1000, g.wrapping_mul(0x9e37_79b9), at(1_000))
                    .is_some()
            })
            .count();
        assert_eq!(passed, 0);
    }
}
