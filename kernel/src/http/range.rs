//! Byte ranges (RFC 9110 §14): the `Range` field against a representation's
//! length, `If-Range`, and the `multipart/byteranges` body of several ranges.
//!
//! Decisions where the RFC lets a server choose (nginx's and Go's, which Caddy
//! uses, agree on each):
//! - a `Range` that does not parse (another unit, a bad number, `last < first`)
//!   is ignored: the full representation with 200;
//! - more than [`MAX_RANGES`] ranges, or satisfiable ranges that overlap, are
//!   ignored the same way (nginx's `max_ranges`; §14.2 allows 200 here);
//! - ranges that cannot be satisfied are dropped from a list; when none is
//!   left the answer is 416 with `Content-Range: bytes */LEN`;
//! - one satisfiable range is a plain 206 with `Content-Range`; several are a
//!   `multipart/byteranges` 206 with the parts in the order they were asked for;
//! - numbers too large for a `u64` are read as `u64::MAX`, so
//!   `bytes=0-99999999999999999999` is the whole representation and
//!   `bytes=99999999999999999999-` is unsatisfiable.

use super::negotiate::{list_items, trim};
use super::{Body, Chunk};
use alloc::format;
use alloc::vec::Vec;

/// Most ranges one request may list; more and the `Range` field is ignored.
pub const MAX_RANGES: usize = 16;

/// One satisfiable range: byte offsets `first..=last` of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub first: u64,
    /// Last byte offset (inclusive).
    pub last: u64,
}

impl ByteRange {
    /// Bytes in the range (at least 1).
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never: a satisfiable range has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The part of `body` this range selects (`body` is the representation the
    /// range was resolved against, so the range lies inside it).
    pub fn slice<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        let (Ok(first), Ok(last)) = (usize::try_from(self.first), usize::try_from(self.last))
        else {
            return &[];
        };
        body.get(first..=last).unwrap_or_default()
    }
}

/// What a `Range` field asks of a representation of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Serve the whole representation (no field, a field we do not act on).
    Ignore,
    /// 416.
    Unsatisfiable,
    /// 206: the satisfiable ranges in request order (1..=[`MAX_RANGES`]).
    Satisfiable(Vec<ByteRange>),
}

/// `Content-Range` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes FIRST-LAST/LEN` (a 206 with one part).
    Bytes {
        /// The range sent.
        range: ByteRange,
        /// Length of the whole representation.
        complete: u64,
    },
    /// `bytes */LEN` (a 416).
    Unsatisfied {
        /// Length of the whole representation.
        complete: u64,
    },
}

impl core::fmt::Display for ContentRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ContentRange::Bytes { range, complete } => {
                write!(f, "bytes {}-{}/{}", range.first, range.last, complete)
            }
            ContentRange::Unsatisfied { complete } => write!(f, "bytes */{complete}"),
        }
    }
}

/// One `range-spec` as written, before it meets the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-suffix`.
    Suffix(u64),
}

/// Evaluates a `Range` field value against a representation of `len` bytes.
pub fn evaluate(value: &str, len: u64) -> Ranges {
    let Some(specs) = parse(value.as_bytes()) else {
        return Ranges::Ignore;
    };
    let mut ranges = Vec::new();
    for spec in specs.iter().flatten() {
        let range = match *spec {
            Spec::From { first, last } if first < len => ByteRange {
                first,
                last: last.unwrap_or(u64::MAX).min(len - 1),
            },
            Spec::Suffix(n) if n > 0 && len > 0 => ByteRange {
                first: len - n.min(len),
                last: len - 1,
            },
            _ => continue,
        };
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if overlapping(&ranges) {
        return Ranges::Ignore;
    }
    Ranges::Satisfiable(ranges)
}

/// `bytes=` followed by 1..=MAX_RANGES specs; `None` when the field is not one
/// we act on.
fn parse(value: &[u8]) -> Option<[Option<Spec>; MAX_RANGES]> {
    let value = trim(value);
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (value.get(..eq)?, value.get(eq + 1..)?);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = [None; MAX_RANGES];
    let mut count = 0usize;
    for item in list_items(set) {
        let slot = specs.get_mut(count)?;
        *slot = Some(parse_spec(item)?);
        count += 1;
    }
    (count > 0).then_some(specs)
}

fn parse_spec(item: &[u8]) -> Option<Spec> {
    let dash = item.iter().position(|&b| b == b'-')?;
    let (first, last) = (item.get(..dash)?, item.get(dash + 1..)?);
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(number(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::From { first, last })
}

/// `1*DIGIT`, saturating at `u64::MAX`.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn overlapping(ranges: &[ByteRange]) -> bool {
    let mut sorted: Vec<ByteRange> = ranges.to_vec();
    sorted.sort_by_key(|r| r.first);
    sorted.windows(2).any(|w| match w {
        [a, b] => b.first <= a.last,
        _ => false,
    })
}

/// Whether `If-Range` lets the `Range` apply (RFC 9110 §13.1.5): only when it
/// is exactly the selected representation's strong `etag`. A weak tag never
/// matches, and neither does a date (we send no `Last-Modified`).
pub fn if_range_allows(if_range: Option<&str>, etag: &str) -> bool {
    match if_range {
        None => true,
        Some(value) => {
            let value = value.trim_matches([' ', '\t']);
            value.starts_with('"') && value == etag
        }
    }
}

/// The body of a `multipart/byteranges` 206 (RFC 9110 §14.6): for each range a
/// delimiter, its `Content-Type` and `Content-Range`, and its bytes sliced
/// from `body` (never copied); then the closing delimiter.
pub fn multipart_body(
    body: &'static [u8],
    ranges: &[ByteRange],
    content_type: &str,
    boundary: &str,
) -> Body {
    let complete = body.len() as u64;
    let mut chunks = Vec::with_capacity(ranges.len().saturating_mul(2).saturating_add(1));
    for (i, range) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        let head = format!(
            "{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
            ContentRange::Bytes {
                range: *range,
                complete
            }
        );
        chunks.push(Chunk::Owned(head.into_bytes()));
        chunks.push(Chunk::Static(range.slice(body)));
    }
    chunks.push(Chunk::Owned(format!("\r\n--{boundary}--\r\n").into_bytes()));
    Body::Parts(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec;

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    fn sat(v: &str, len: u64) -> Vec<ByteRange> {
        match evaluate(v, len) {
            Ranges::Satisfiable(list) => list,
            other => panic!("{v:?} on {len}: {other:?}"),
        }
    }

    #[test]
    fn every_form_of_the_grammar() {
        assert_eq!(sat("bytes=0-99", 1000), vec![r(0, 99)]);
        assert_eq!(sat("bytes=0-0", 1000), vec![r(0, 0)]);
        assert_eq!(sat("bytes=100-", 1000), vec![r(100, 999)]);
        assert_eq!(sat("bytes=-500", 1000), vec![r(500, 999)]);
        assert_eq!(sat("bytes=999-999", 1000), vec![r(999, 999)]);
        // Last past the end is clamped; a suffix longer than the file is all of it.
        assert_eq!(sat("bytes=900-5000", 1000), vec![r(900, 999)]);
        assert_eq!(sat("bytes=-5000", 1000), vec![r(0, 999)]);
        // Case-insensitive unit, OWS around list items, empty list elements.
        assert_eq!(sat(" BYTES=0-1 ,\t5-6,,", 10), vec![r(0, 1), r(5, 6)]);
        // Request order kept.
        assert_eq!(sat("bytes=5-6,0-1", 10), vec![r(5, 6), r(0, 1)]);
        // Adjacent is not overlapping.
        assert_eq!(sat("bytes=0-4,5-9", 10), vec![r(0, 4), r(5, 9)]);
    }

    #[test]
    fn overflow_saturates() {
        assert_eq!(sat("bytes=0-99999999999999999999", 1000), vec![r(0, 999)]);
        assert_eq!(sat("bytes=-99999999999999999999", 1000), vec![r(0, 999)]);
        assert_eq!(
            evaluate("bytes=99999999999999999999-", 1000),
            Ranges::Unsatisfiable
        );
        assert_eq!(
            evaluate("bytes=18446744073709551615-18446744073709551615", u64::MAX),
            Ranges::Unsatisfiable
        );
        assert_eq!(
            sat("bytes=18446744073709551614-", u64::MAX),
            vec![r(u64::MAX - 1, u64::MAX - 1)]
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(evaluate("bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(evaluate("bytes=1000-2000", 1000), Ranges::Unsatisfiable);
        assert_eq!(evaluate("bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(evaluate("bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(evaluate("bytes=-1", 0), Ranges::Unsatisfiable);
        // Unsatisfiable members of a list are dropped.
        assert_eq!(sat("bytes=2000-,0-1", 1000), vec![r(0, 1)]);
    }

    #[test]
    fn ignored_fields() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes 0-1",
            "bytes=x",
            "bytes=1",
            "bytes=-",
            "bytes=5-1",
            "bytes=0-1-2",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes= 0 - 1",
            "bytes=0x1-2",
            "bytes=0-1;x",
            "=0-1",
        ] {
            assert_eq!(evaluate(v, 1000), Ranges::Ignore, "{v:?}");
        }
        // Overlapping ranges, and more than MAX_RANGES of them.
        assert_eq!(evaluate("bytes=0-10,5-20", 1000), Ranges::Ignore);
        assert_eq!(evaluate("bytes=0-10,-995", 1000), Ranges::Ignore);
        assert_eq!(evaluate("bytes=0-0,0-0", 1000), Ranges::Ignore);
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{}-{}", i * 2, i * 2))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(evaluate(&format!("bytes={many}"), 1000), Ranges::Ignore);
        let just_enough = (0..MAX_RANGES)
            .map(|i| format!("{}-{}", i * 2, i * 2))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(sat(&format!("bytes={just_enough}"), 1000).len(), MAX_RANGES);
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(None, "\"a\""));
        assert!(if_range_allows(Some("\"a\""), "\"a\""));
        assert!(if_range_allows(Some(" \"a\" "), "\"a\""));
        assert!(!if_range_allows(Some("\"b\""), "\"a\""));
        assert!(!if_range_allows(Some("W/\"a\""), "\"a\""));
        assert!(!if_range_allows(
            Some("Tue, 01 Dec 2026 10:00:00 GMT"),
            "\"a\""
        ));
        assert!(!if_range_allows(Some(""), "\"a\""));
    }

    #[test]
    fn content_range_text() {
        let c = ContentRange::Bytes {
            range: r(0, 99),
            complete: 1000,
        };
        assert_eq!(c.to_string(), "bytes 0-99/1000");
        assert_eq!(
            ContentRange::Unsatisfied { complete: 7 }.to_string(),
            "bytes */7"
        );
    }

    /// An independent reading of RFC 9110 §14.6 / RFC 2046 §5.1.1: split on the
    /// delimiter lines, read each part's fields, return (content-range, bytes).
    fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String, Vec<u8>)> {
        let delimiter = format!("--{boundary}");
        let mut parts = Vec::new();
        let mut rest = body;
        // The body starts with the first delimiter (no preamble).
        assert!(rest.starts_with(delimiter.as_bytes()));
        loop {
            rest = &rest[delimiter.len()..];
            if rest.starts_with(b"--") {
                assert_eq!(&rest[2..], b"\r\n", "epilogue");
                return parts;
            }
            assert!(rest.starts_with(b"\r\n"));
            rest = &rest[2..];
            let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = core::str::from_utf8(&rest[..head_end]).unwrap();
            let mut ctype = String::new();
            let mut crange = String::new();
            for line in head.split("\r\n") {
                let (name, value) = line.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-type" => ctype = value.trim().into(),
                    "content-range" => crange = value.trim().into(),
                    other => panic!("unexpected part field {other}"),
                }
            }
            rest = &rest[head_end + 4..];
            let next = format!("\r\n{delimiter}");
            let end = rest
                .windows(next.len())
                .position(|w| w == next.as_bytes())
                .unwrap();
            parts.push((ctype, crange, rest[..end].to_vec()));
            rest = &rest[end + 2..];
        }
    }

    #[test]
    fn multipart_parses_back() {
        static BODY: &[u8] = b"0123456789abcdefghij";
        let ranges = [r(10, 12), r(0, 1), r(19, 19)];
        let body = multipart_body(BODY, &ranges, "text/plain", "b0undary");
        let bytes = body.to_vec();
        assert_eq!(bytes.len(), body.len());
        let parts = parse_multipart(&bytes, "b0undary");
        assert_eq!(parts.len(), 3);
        for (part, range) in parts.iter().zip(ranges) {
            assert_eq!(part.0, "text/plain");
            assert_eq!(part.1, format!("bytes {}-{}/20", range.first, range.last));
            assert_eq!(part.2, range.slice(BODY));
        }
        // Copying from every offset in small windows gives the same bytes.
        for window in [1usize, 3, 7, 64] {
            let mut out = Vec::new();
            let mut buf = vec![0u8; window];
            loop {
                let n = body.copy_at(out.len(), &mut buf);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, bytes, "window {window}");
        }
    }

    #[test]
    fn slices_stay_inside() {
        let body = b"abc";
        assert_eq!(r(0, 2).slice(body), b"abc");
        assert_eq!(r(1, 1).slice(body), b"b");
        assert_eq!(r(2, 5).slice(body), b"", "never out of bounds");
        assert_eq!(r(0, 2).len(), 3);
    }
}
