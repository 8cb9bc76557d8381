//! `Accept-Encoding` (RFC 9110 §12.5.3): the q-value a request gives each
//! content coding we can send, and the choice among the ones a resource has.

/// The content codings a response can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No content coding.
    Identity,
    /// `gzip`.
    Gzip,
    /// `br` (brotli).
    Br,
}

impl Coding {
    /// The `Content-Encoding` token; `None` for identity (no header).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Br => Some("br"),
        }
    }
}

/// Quality in thousandths: `q=1` is 1000, `q=0` (not acceptable) is 0.
pub type Quality = u16;

/// The rank of identity when `Accept-Encoding` does not name it.
const UNNAMED_IDENTITY: Quality = 1;

/// What the `Accept-Encoding` fields of a request say, for the codings we know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptEncoding {
    gzip: Option<Quality>,
    br: Option<Quality>,
    identity: Option<Quality>,
    any: Option<Quality>,
}

impl AcceptEncoding {
    /// Adds one `Accept-Encoding` field value (several fields form one list).
    pub fn add(&mut self, value: &[u8]) {
        for item in list_items(value) {
            let mut parts = item.split(|&b| b == b';');
            let coding = trim(parts.next().unwrap_or_default());
            let mut q = 1000;
            for param in parts {
                let mut name_value = param.splitn(2, |&b| b == b'=');
                let name = trim(name_value.next().unwrap_or_default());
                if name.eq_ignore_ascii_case(b"q") {
                    // A malformed q-value counts as a refusal.
                    q = name_value
                        .next()
                        .and_then(|v| parse_qvalue(trim(v)))
                        .unwrap_or(0);
                }
            }
            // The lowest q wins when a coding is listed twice: a refusal sticks.
            let keep_lowest =
                |slot: &mut Option<Quality>| *slot = Some(slot.map_or(q, |s| s.min(q)));
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                keep_lowest(&mut self.gzip);
            } else if coding.eq_ignore_ascii_case(b"br") {
                keep_lowest(&mut self.br);
            } else if coding.eq_ignore_ascii_case(b"identity") {
                keep_lowest(&mut self.identity);
            } else if coding == b"*" {
                keep_lowest(&mut self.any);
            }
        }
    }

    /// The q-value the request gives `coding`. Without any `Accept-Encoding`
    /// field only identity is acceptable (a client that says nothing gets what it
    /// surely understands, as nginx and Caddy do). Identity is acceptable unless
    /// refused by name or by `*;q=0` (RFC 9110 §12.5.3), but when it is not
    /// named it ranks below every coding the client did name (a q of 0.001):
    /// `gzip;q=0.5` means "gzip, please", not "rather identity".
    pub fn quality(&self, coding: Coding) -> Quality {
        let named = match coding {
            Coding::Identity => self.identity,
            Coding::Gzip => self.gzip,
            Coding::Br => self.br,
        };
        match (coding, named, self.any) {
            (_, Some(q), _) => q,
            (Coding::Identity, None, Some(0)) => 0,
            (Coding::Identity, None, _) => UNNAMED_IDENTITY,
            (_, None, any) => any.unwrap_or(0),
        }
    }

    /// Picks among the codings a resource has (`(coding, size)` pairs, identity
    /// always among them): the highest q-value wins, a tie goes to the smaller
    /// body. When the request refuses everything the resource has, identity is
    /// sent anyway (RFC 9110 §12.5.3 lets a server ignore the field rather than
    /// answer 406; nginx and Caddy do).
    pub fn choose(&self, available: &[(Coding, usize)]) -> Coding {
        let mut best: Option<(Quality, usize, Coding)> = None;
        for &(coding, size) in available {
            let q = self.quality(coding);
            if q == 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((bq, bsize, _)) => q > bq || (q == bq && size < bsize),
            };
            if better {
                best = Some((q, size, coding));
            }
        }
        best.map_or(Coding::Identity, |(_, _, coding)| coding)
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<Quality> {
    let (&first, rest) = v.split_first()?;
    let frac = match rest.split_first() {
        None => &[][..],
        Some((b'.', frac)) if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => frac,
        _ => return None,
    };
    let thousandths = frac
        .iter()
        .chain(core::iter::repeat(&b'0'))
        .take(3)
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match first {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Items of a comma-separated field value, trimmed, empty ones skipped.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

/// `value` without leading and trailing spaces and tabs (OWS).
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = s.split_first() {
        if b != b' ' && b != b'\t' {
            break;
        }
        s = rest;
    }
    while let Some((&b, rest)) = s.split_last() {
        if b != b' ' && b != b'\t' {
            break;
        }
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(fields: &[&str]) -> AcceptEncoding {
        let mut a = AcceptEncoding::default();
        for f in fields {
            a.add(f.as_bytes());
        }
        a
    }

    const ALL: &[(Coding, usize)] = &[
        (Coding::Identity, 100),
        (Coding::Gzip, 40),
        (Coding::Br, 30),
    ];

    #[test]
    fn qvalues() {
        for (v, q) in [
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.123", Some(123)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("1.", Some(1000)),
            ("0.", Some(0)),
            ("1.001", None),
            ("2", None),
            ("0.1234", None),
            ("", None),
            (".5", None),
        ] {
            assert_eq!(parse_qvalue(v.as_bytes()), q, "{v}");
        }
    }

    #[test]
    fn quality_per_coding() {
        let none = AcceptEncoding::default();
        assert_eq!(none.quality(Coding::Identity), UNNAMED_IDENTITY);
        assert_eq!(none.quality(Coding::Gzip), 0);
        assert_eq!(none.quality(Coding::Br), 0);
        let empty = accept(&[""]);
        assert_eq!(empty.quality(Coding::Identity), UNNAMED_IDENTITY);
        assert_eq!(empty.quality(Coding::Gzip), 0);
        let star = accept(&["*;q=0.3"]);
        assert_eq!(star.quality(Coding::Br), 300);
        assert_eq!(star.quality(Coding::Identity), UNNAMED_IDENTITY);
        let no_star = accept(&["*;q=0"]);
        assert_eq!(no_star.quality(Coding::Identity), 0);
        assert_eq!(accept(&["*;q=0, identity"]).quality(Coding::Identity), 1000);
        let a = accept(&["gzip;q=0.5", "BR ; Q=0.4", "x-gzip;q=0.9"]);
        assert_eq!(a.quality(Coding::Gzip), 500, "lowest of gzip and x-gzip");
        assert_eq!(a.quality(Coding::Br), 400);
        assert_eq!(accept(&["br;q=bad"]).quality(Coding::Br), 0);
    }

    #[test]
    fn choice_by_quality_then_size() {
        assert_eq!(AcceptEncoding::default().choose(ALL), Coding::Identity);
        assert_eq!(accept(&["gzip, deflate, br"]).choose(ALL), Coding::Br);
        assert_eq!(accept(&["gzip"]).choose(ALL), Coding::Gzip);
        assert_eq!(accept(&["br;q=0, gzip"]).choose(ALL), Coding::Gzip);
        assert_eq!(accept(&["gzip;q=0.5, br;q=0.4"]).choose(ALL), Coding::Gzip);
        assert_eq!(accept(&["identity"]).choose(ALL), Coding::Identity);
        assert_eq!(accept(&["*"]).choose(ALL), Coding::Br);
        assert_eq!(
            accept(&["br;q=0.5, identity;q=1"]).choose(ALL),
            Coding::Identity
        );
        // Ties go to the smaller body, whatever the order listed.
        let gzip_smaller = &[
            (Coding::Identity, 100),
            (Coding::Br, 50),
            (Coding::Gzip, 40),
        ];
        assert_eq!(accept(&["br, gzip"]).choose(gzip_smaller), Coding::Gzip);
        // Only what the resource has.
        let plain = &[(Coding::Identity, 10)];
        assert_eq!(accept(&["br"]).choose(plain), Coding::Identity);
        // Everything refused: identity anyway.
        assert_eq!(accept(&["*;q=0"]).choose(ALL), Coding::Identity);
        assert_eq!(
            accept(&["identity;q=0, br;q=0"]).choose(&[(Coding::Identity, 9), (Coding::Br, 3)]),
            Coding::Identity
        );
    }

    #[test]
    fn tokens() {
        assert_eq!(Coding::Identity.token(), None);
        assert_eq!(Coding::Gzip.token(), Some("gzip"));
        assert_eq!(Coding::Br.token(), Some("br"));
    }
}
