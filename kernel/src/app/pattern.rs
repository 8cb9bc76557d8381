//! Path patterns of a site's `_headers` and `_redirects` rules (Netlify and
//! Cloudflare Pages syntax): literal characters, `:name` placeholders that
//! match one whole path segment, and one `*` splat at the end that matches the
//! rest of the path (possibly empty). A target substitutes `:name` and
//! `:splat`.
//!
//! `build.rs` includes this file with `#[path]` (it matches `_headers` against
//! every baked path and checks `_redirects`), and the kernel matches redirects
//! with it per request, so it is plain `core` code.

use core::fmt::{self, Write};

/// Most placeholders one pattern may hold (the splat not counted).
pub const MAX_PLACEHOLDERS: usize = 8;

/// What a match bound: placeholder names with their values, and the splat.
#[derive(Debug, Clone, Copy, Default)]
pub struct Captures<'p, 'a> {
    names: [&'p str; MAX_PLACEHOLDERS],
    values: [&'a str; MAX_PLACEHOLDERS],
    len: usize,
    splat: Option<&'a str>,
}

impl<'p, 'a> Captures<'p, 'a> {
    /// The value bound to `name` (`splat` for the splat).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        if name == "splat" {
            return self.splat;
        }
        let n = self.len.min(MAX_PLACEHOLDERS);
        self.names
            .get(..n)?
            .iter()
            .position(|&bound| bound == name)
            .and_then(|i| self.values.get(i).copied())
    }
}

/// Why a pattern is not one we can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// Does not start with `/`.
    NotAbsolute,
    /// `*` somewhere other than at the end.
    SplatNotAtEnd,
    /// A `:placeholder` that is not a whole path segment.
    PlaceholderNotWholeSegment,
    /// `:` without a name after it.
    EmptyPlaceholder,
    /// More placeholders than a match can bind.
    TooManyPlaceholders,
    /// Holds `?` or `#`.
    QueryOrFragment,
    /// Holds a byte a path cannot (control, space, non-ASCII).
    BadByte,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternError::NotAbsolute => {
                "a path pattern must start with `/` (host and scheme rules are not supported)"
            }
            PatternError::SplatNotAtEnd => {
                "`*` is only supported as the last character of a pattern"
            }
            PatternError::PlaceholderNotWholeSegment => {
                "a `:placeholder` must be a whole path segment"
            }
            PatternError::EmptyPlaceholder => {
                "`:` must be followed by a placeholder name (letters, digits, `_`)"
            }
            PatternError::TooManyPlaceholders => "more than 8 placeholders in one pattern",
            PatternError::QueryOrFragment => {
                "query and fragment matching (`?`, `#`) are not supported"
            }
            PatternError::BadByte => "a pattern holds only visible ASCII characters",
        })
    }
}

/// The name of a placeholder at the start of `s` (`s` begins after the `:`):
/// a letter or `_`, then letters, digits and `_`.
pub fn placeholder_name(s: &str) -> &str {
    let mut end = 0usize;
    for (i, b) in s.bytes().enumerate() {
        let ok = b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit());
        if !ok {
            break;
        }
        end = i + 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Checks a pattern's form: what [`matches()`] assumes of it.
pub fn check(pattern: &str) -> Result<(), PatternError> {
    if !pattern.starts_with('/') {
        return Err(PatternError::NotAbsolute);
    }
    if pattern.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(PatternError::BadByte);
    }
    if pattern.contains(['?', '#']) {
        return Err(PatternError::QueryOrFragment);
    }
    if let Some(star) = pattern.find('*')
        && star + 1 != pattern.len()
    {
        return Err(PatternError::SplatNotAtEnd);
    }
    let mut placeholders = 0usize;
    for segment in pattern.split('/') {
        let Some(colon) = segment.find(':') else {
            continue;
        };
        if colon != 0 {
            return Err(PatternError::PlaceholderNotWholeSegment);
        }
        let name = placeholder_name(segment.get(1..).unwrap_or_default());
        if name.is_empty() {
            return Err(PatternError::EmptyPlaceholder);
        }
        if name.len() + 1 != segment.len() {
            return Err(PatternError::PlaceholderNotWholeSegment);
        }
        placeholders += 1;
    }
    if placeholders > MAX_PLACEHOLDERS {
        return Err(PatternError::TooManyPlaceholders);
    }
    Ok(())
}

/// Whether `path` matches `pattern` (a checked one), binding into `caps`.
/// Literals compare exactly (paths are case-sensitive); a placeholder takes a
/// non-empty segment; the final `*` takes the rest.
pub fn matches<'p, 'a>(pattern: &'p str, path: &'a str, caps: &mut Captures<'p, 'a>) -> bool {
    *caps = Captures::default();
    let (fixed, splat) = match pattern.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (pattern, false),
    };
    let mut rest = path;
    let mut pat = fixed;
    while !pat.is_empty() {
        if let Some(after_colon) = pat.strip_prefix(':') {
            let name = placeholder_name(after_colon);
            let end = rest.find('/').unwrap_or(rest.len());
            if end == 0 || caps.len >= MAX_PLACEHOLDERS {
                return false;
            }
            let (value, tail) = rest.split_at(end);
            if let (Some(n), Some(v)) =
                (caps.names.get_mut(caps.len), caps.values.get_mut(caps.len))
            {
                *n = name;
                *v = value;
            }
            caps.len += 1;
            rest = tail;
            pat = after_colon.get(name.len()..).unwrap_or_default();
        } else {
            let lit_end = pat.find(':').unwrap_or(pat.len());
            let (lit, tail) = pat.split_at(lit_end);
            let Some(after) = rest.strip_prefix(lit) else {
                return false;
            };
            rest = after;
            pat = tail;
        }
    }
    if splat {
        caps.splat = Some(rest);
        true
    } else {
        rest.is_empty()
    }
}

/// Writes `target` with `:name` / `:splat` replaced by their captures. With
/// `encode`, captured bytes outside RFC 3986 `pchar` and `/` are
/// percent-encoded (a `Location` header must be a valid URI reference; the
/// captures come from the decoded path). An unbound placeholder is written as
/// it stands (the builder refuses such rules).
pub fn substitute(
    target: &str,
    caps: &Captures<'_, '_>,
    encode: bool,
    out: &mut impl Write,
) -> fmt::Result {
    let mut rest = target;
    while let Some(colon) = rest.find(':') {
        let (lit, tail) = rest.split_at(colon);
        out.write_str(lit)?;
        let after = tail.get(1..).unwrap_or_default();
        let name = placeholder_name(after);
        match (name.is_empty(), caps.get(name)) {
            (false, Some(value)) => {
                if encode {
                    write_encoded(value, out)?;
                } else {
                    out.write_str(value)?;
                }
                rest = after.get(name.len()..).unwrap_or_default();
            }
            _ => {
                out.write_char(':')?;
                rest = after;
            }
        }
    }
    out.write_str(rest)
}

fn write_encoded(value: &str, out: &mut impl Write) -> fmt::Result {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.write_char(char::from(b))?;
        } else {
            write!(out, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// The placeholder names `target` uses, each once, in order of appearance,
/// for the builder's check that every one is bound.
pub fn placeholders_used(target: &str) -> impl Iterator<Item = &str> {
    target
        .split(':')
        .skip(1)
        .map(placeholder_name)
        .filter(|name| !name.is_empty())
}

/// Whether `pattern` binds the placeholder `name` (`splat`: ends in `*`).
pub fn binds(pattern: &str, name: &str) -> bool {
    if name == "splat" {
        return pattern.ends_with('*');
    }
    pattern
        .split('/')
        .any(|segment| segment.strip_prefix(':') == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn bind(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        check(pattern).unwrap();
        let mut caps = Captures::default();
        if !matches(pattern, path, &mut caps) {
            return None;
        }
        let mut out: Vec<(String, String)> = ["a", "b", "year", "slug", "splat"]
            .iter()
            .filter_map(|n| caps.get(n).map(|v| (String::from(*n), String::from(v))))
            .collect();
        out.sort();
        Some(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        let mut v: Vec<(String, String)> = list
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        v.sort();
        Some(v)
    }

    #[test]
    fn literals_placeholders_and_splats() {
        assert_eq!(bind("/a", "/a"), pairs(&[]));
        assert_eq!(bind("/a", "/A"), None, "case-sensitive");
        assert_eq!(bind("/a", "/a/"), None);
        assert_eq!(bind("/a", "/ab"), None);
        assert_eq!(
            bind("/blog/:year/:slug", "/blog/2024/hi"),
            pairs(&[("year", "2024"), ("slug", "hi")])
        );
        assert_eq!(
            bind("/blog/:year/:slug", "/blog/2024/"),
            None,
            "a placeholder is never empty"
        );
        assert_eq!(bind("/blog/:year/:slug", "/blog/2024/hi/x"), None);
        assert_eq!(bind("/*", "/"), pairs(&[("splat", "")]));
        assert_eq!(bind("/*", "/x/y.z"), pairs(&[("splat", "x/y.z")]));
        assert_eq!(bind("/docs/*", "/docs"), None);
        assert_eq!(bind("/docs/*", "/docs/"), pairs(&[("splat", "")]));
        assert_eq!(
            bind("/:a/*", "/x/y/z"),
            pairs(&[("a", "x"), ("splat", "y/z")])
        );
        assert_eq!(bind("/:a/:b", "/x/y"), pairs(&[("a", "x"), ("b", "y")]));
        assert_eq!(bind("/x*", "/xyz"), pairs(&[("splat", "yz")]));
    }

    #[test]
    fn pattern_forms() {
        assert_eq!(check("/ok/:name/*"), Ok(()));
        assert_eq!(check("ok"), Err(PatternError::NotAbsolute));
        assert_eq!(check("https://x/a"), Err(PatternError::NotAbsolute));
        assert_eq!(check("/*/a"), Err(PatternError::SplatNotAtEnd));
        assert_eq!(check("/**"), Err(PatternError::SplatNotAtEnd));
        assert_eq!(check("/a:b"), Err(PatternError::PlaceholderNotWholeSegment));
        assert_eq!(
            check("/:a.html"),
            Err(PatternError::PlaceholderNotWholeSegment)
        );
        assert_eq!(check("/:"), Err(PatternError::EmptyPlaceholder));
        assert_eq!(check("/:1a"), Err(PatternError::EmptyPlaceholder));
        assert_eq!(check("/a?b=1"), Err(PatternError::QueryOrFragment));
        assert_eq!(check("/a b"), Err(PatternError::BadByte));
        assert_eq!(check("/:a/:b/:c/:d/:e/:f/:g/:h"), Ok(()));
        assert_eq!(
            check("/:a/:b/:c/:d/:e/:f/:g/:h/:i"),
            Err(PatternError::TooManyPlaceholders)
        );
    }

    #[test]
    fn substitution() {
        let mut caps = Captures::default();
        assert!(matches(
            "/blog/:year/:slug/*",
            "/blog/2024/a b/rest/of it",
            &mut caps
        ));
        let sub = |target: &str, encode: bool| {
            let mut out = String::new();
            substitute(target, &caps, encode, &mut out).unwrap();
            out
        };
        assert_eq!(sub("/p/:year-:slug", false), "/p/2024-a b");
        assert_eq!(sub("/p/:year-:slug", true), "/p/2024-a%20b");
        assert_eq!(sub("/s/:splat", true), "/s/rest/of%20it");
        assert_eq!(
            sub("https://example.com:8080/:year", true),
            "https://example.com:8080/2024"
        );
        assert_eq!(sub("/x/:unbound:", true), "/x/:unbound:");
        assert_eq!(
            placeholders_used("/a/:x-:splat/:8080").collect::<Vec<_>>(),
            ["x", "splat"]
        );
        assert!(
            binds("/a/:x", "x")
                && !binds("/a/:xy", "x")
                && binds("/a/*", "splat")
                && !binds("/a", "splat")
        );
    }
}
