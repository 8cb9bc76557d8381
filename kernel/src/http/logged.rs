//! The parts of a request head an access log prints: the raw request line and
//! the `User-Agent`, `Referer`, `X-Forwarded-For` and `Forwarded` values.
//!
//! A connection keeps the head it parsed in its input buffer until the next
//! request starts, which is after that request's response was sent; so it keeps
//! only where these parts are ([`HeadSpans`]) and lends them out with every
//! [`super::Exchange`] ([`LoggedHead`]), never copying them.

/// Borrowed views of the logged parts of one request head. All raw bytes, as
/// the client sent them: the log formatter escapes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoggedHead<'a> {
    /// The request line without its line ending (for a rejected request, as
    /// far as it arrived).
    pub request_line: &'a [u8],
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// `Referer`.
    pub referer: Option<&'a [u8]>,
    /// `X-Forwarded-For`.
    pub forwarded_for: Option<&'a [u8]>,
    /// `Forwarded`.
    pub forwarded: Option<&'a [u8]>,
}

/// Where a [`LoggedHead`]'s parts are in a head buffer: `(start, len)` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadSpans {
    line: (usize, usize),
    /// User-Agent, Referer, X-Forwarded-For, Forwarded.
    fields: [Option<(usize, usize)>; 4],
}

const FIELDS: [&[u8]; 4] = [b"user-agent", b"referer", b"x-forwarded-for", b"forwarded"];

impl HeadSpans {
    /// Finds the request line in `head` and, with `fields`, the logged header
    /// fields (only for a head that parsed: a rejected one may not even have
    /// lines). `User-Agent` and `Referer` are the first of their name; the
    /// forwarding fields the last, which is the one the nearest proxy wrote.
    pub fn scan(head: &[u8], fields: bool) -> HeadSpans {
        let start = head
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(head.len());
        let rest = head.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let mut spans = HeadSpans {
            line: (start, len),
            fields: [None; 4],
        };
        if !fields {
            return spans;
        }
        let mut at = start.saturating_add(len);
        while let Some(tail) = head.get(at..).filter(|t| !t.is_empty()) {
            let line_len = tail.iter().position(|&b| b == b'\n').unwrap_or(tail.len());
            let line_start = at;
            at = at.saturating_add(line_len).saturating_add(1);
            let line = tail.get(..line_len).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // Line endings and the empty line that ends the head have no colon.
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = line.get(..colon).unwrap_or_default();
            let Some(which) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(name)) else {
                continue;
            };
            let value = line.get(colon.saturating_add(1)..).unwrap_or_default();
            let lead = value
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(value.len());
            let trail = value
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(lead, |p| p.saturating_add(1));
            let span = (
                line_start
                    .saturating_add(colon)
                    .saturating_add(1)
                    .saturating_add(lead),
                trail.saturating_sub(lead),
            );
            if let Some(slot) = spans.fields.get_mut(which)
                && (slot.is_none() || which >= 2)
            {
                *slot = Some(span);
            }
        }
        spans
    }

    /// The parts in `buf`, the buffer [`HeadSpans::scan`] was given (empty
    /// where it no longer reaches).
    pub fn resolve<'a>(&self, buf: &'a [u8]) -> LoggedHead<'a> {
        let get = |(start, len): (usize, usize)| buf.get(start..start.saturating_add(len));
        let field = |i: usize| self.fields.get(i).copied().flatten().and_then(get);
        LoggedHead {
            request_line: get(self.line).unwrap_or_default(),
            user_agent: field(0),
            referer: field(1),
            forwarded_for: field(2),
            forwarded: field(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_and_fields() {
        let head = b"\r\nGET /a?b HTTP/1.1\r\nHost: x\r\nuser-agent:  curl/8 \r\nReferer: http://r/\r\n\
            X-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\nForwarded: for=4.4.4.4\r\n\
            User-Agent: second\r\n\r\n";
        let h = HeadSpans::scan(head, true).resolve(head);
        assert_eq!(h.request_line, b"GET /a?b HTTP/1.1");
        assert_eq!(h.user_agent, Some(&b"curl/8"[..]));
        assert_eq!(h.referer, Some(&b"http://r/"[..]));
        assert_eq!(h.forwarded_for, Some(&b"2.2.2.2, 3.3.3.3"[..]));
        assert_eq!(h.forwarded, Some(&b"for=4.4.4.4"[..]));
    }

    #[test]
    fn rejected_heads_give_the_line_only() {
        let head = b"GET /\x01\xff HTTP/1.1";
        let h = HeadSpans::scan(head, false).resolve(head);
        assert_eq!(h.request_line, &head[..]);
        assert_eq!(h.user_agent, None);
        let empty = HeadSpans::default().resolve(b"");
        assert_eq!(empty, LoggedHead::default());
        // A span beyond a shorter buffer resolves to nothing, never panics.
        let spans = HeadSpans::scan(b"GET / HTTP/1.1\r\nReferer: abc\r\n\r\n", true);
        assert_eq!(spans.resolve(b"GET").request_line, b"");
        assert_eq!(spans.resolve(b"GET").referer, None);
        let h = HeadSpans::scan(b"GET / HTTP/1.1\r\nReferer:\r\n\r\n", true)
            .resolve(b"GET / HTTP/1.1\r\nReferer:\r\n\r\n");
        assert_eq!(h.referer, Some(&b""[..]));
    }
}
