//! Reading HTTP responses: the one parser the tests share, and a raw connection.

use super::*;

/// One parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many fields are named `name`.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status line and headers, for failure messages.
    pub fn head_text(&self) -> String {
        let mut s = format!("{} {}\n", self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s
    }
}

/// Whether a response to a request with this status carries a body (not for
/// `HEAD`, 1xx, 204, 304).
fn has_body(status: u16, head_request: bool) -> bool {
    !head_request && !(100..200).contains(&status) && status != 204 && status != 304
}

/// One response at the start of `buf`: `Ok(None)` if more bytes are needed,
/// else the response and the bytes it took. The body is framed by
/// `Content-Length`, which this server always sends when there is a body.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<(Response, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(format!("response head over {MAX_RESPONSE_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "malformed response ({e}): {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ));
        }
    };
    if resp.version != Some(1) {
        return Err(format!("response version HTTP/1.{:?}", resp.version));
    }
    let status = resp.code.unwrap_or(0);
    let parsed = Response {
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    };
    let body_len = if has_body(status, head_request) {
        match parsed.content_length() {
            Some(n) => usize::try_from(n).map_err(|_| format!("Content-Length {n}"))?,
            None => {
                return Err(format!(
                    "{status} response without Content-Length:\n{}",
                    parsed.head_text()
                ));
            }
        }
    } else {
        0
    };
    let Some(end) = head_len.checked_add(body_len) else {
        return Err("response length overflows".into());
    };
    if buf.len() < end {
        return Ok(None);
    }
    let mut parsed = parsed;
    parsed.body = buf[head_len..end].to_vec();
    Ok(Some((parsed, end)))
}

/// How a read until the end of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed (FIN).
    Eof,
    /// The connection was reset (or aborted).
    Reset,
    /// Nothing ended it within the time allowed.
    TimedOut,
}

/// One TCP connection to the guest with a buffer of bytes received but not yet
/// consumed as responses.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects with `timeout` for the connect and for every read and write;
    /// `TCP_NODELAY` so each write goes out at once.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Bytes received but not consumed by [`Client::read_response`].
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The next response (`head_request`: it answers a `HEAD`, so no body).
    /// Each read waits at most the socket's read timeout; the whole call at
    /// most [`IO_TIMEOUT`] more than that.
    pub fn read_response(&mut self, head_request: bool) -> Result<Response, String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((resp, used)) = parse_response(&self.buf, head_request)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no complete response within {IO_TIMEOUT:?} ({} bytes buffered)",
                    self.buf.len()
                ));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "connection closed before a complete response ({} bytes buffered: {:?})",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "reading a response ({} bytes buffered): {e}",
                        self.buf.len()
                    ));
                }
            }
        }
    }

    /// Reads until the peer closes, resets, or `timeout` passes; returns how it
    /// ended and every byte not yet consumed (the buffer is emptied).
    pub fn read_until_close(&mut self, timeout: Duration) -> (Ending, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        let ending = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ending::TimedOut;
            }
            if self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
            {
                break Ending::Reset;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ending::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break Ending::Reset,
            }
        };
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        (ending, std::mem::take(&mut self.buf))
    }

    /// Whether the connection is still open after waiting `wait` for it to close;
    /// bytes that arrive meanwhile are kept in the buffer.
    pub fn still_open_after(&mut self, wait: Duration) -> bool {
        let (ending, bytes) = self.read_until_close(wait);
        self.buf = bytes;
        ending == Ending::TimedOut
    }
}

/// Parses every complete response in `bytes` (`heads[i]`: the i-th answers a
/// `HEAD`; missing entries mean `GET`). Returns them and the unparsed rest.
pub fn parse_all(bytes: &[u8], heads: &[bool]) -> Result<(Vec<Response>, Vec<u8>), String> {
    let mut out = Vec::new();
    let mut at = 0;
    for i in 0..10_000 {
        let head = heads.get(i).copied().unwrap_or(false);
        match parse_response(&bytes[at..], head)? {
            Some((r, used)) => {
                out.push(r);
                at += used;
            }
            None => break,
        }
    }
    Ok((out, bytes[at..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_pipelined_responses_with_head_and_304() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n\
            HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nn";
        let (rs, rest) = parse_all(wire, &[false, true, false, false]).unwrap();
        assert_eq!(rs.len(), 3);
        assert_eq!((rs[0].status, rs[0].body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!((rs[1].content_length(), rs[1].body.len()), (Some(10), 0));
        assert_eq!(rs[2].status, 304);
        assert!(rest.starts_with(b"HTTP/1.1 404"));
        let (r, _) = parse_response(&[rest.as_slice(), b"\n"].concat(), false)
            .unwrap()
            .unwrap();
        assert!(r.closes());
        assert_eq!(r.header("CONNECTION"), Some("close"));
    }

    #[test]
    fn rejects_bodies_without_length_and_garbage() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nabc", false).is_err());
        assert!(parse_response(b"hello world\r\n\r\n", false).is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap(),
            None
        );
    }
}
