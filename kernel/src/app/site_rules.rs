//! A site's `_headers` and `_redirects` files (Netlify / Cloudflare Pages
//! syntax), parsed once when the site is built, never per request.
//!
//! `build.rs` includes this file with `#[path]` beside [`pattern`]
//! and turns the rules into static tables; the kernel's host tests exercise it.
//! Every malformed line is an error naming its line and the reason.
//!
//! `_headers`: a line starting with `/` opens a rule for that path pattern;
//! indented `Name: value` lines below it add a header, `! Name` detaches one
//! that a default or an earlier rule set. Every matching rule applies, in file
//! order; a header set twice is joined with `, ` (Cloudflare Pages), except
//! `Content-Type` and `Cache-Control`, where the later value replaces the
//! earlier (and the default).
//!
//! `_redirects`: `from to [status[!]]` per line, first match wins. Status 301
//! (the default), 302, 303, 307 and 308 redirect; 200 rewrites to another file
//! of the site (the URL stays); 404 serves another file with status 404. A rule
//! does not apply where a file (or a directory index) exists unless its status
//! ends in `!` (Netlify's shadowing). `to` may use the placeholders `from`
//! binds and `:splat`; a redirect may point to an absolute `http(s)://` URL.

use super::pattern::{self, PatternError};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Most rules one file may hold.
pub const MAX_RULES: usize = 1000;
/// Longest line of a rules file, in bytes.
pub const MAX_LINE: usize = 2048;

/// Headers the server sets itself from the request and the representation: a
/// rule may neither set nor detach them.
pub const RESERVED_HEADERS: &[&str] = &[
    "accept-ranges",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "date",
    "etag",
    "keep-alive",
    "location",
    "server",
    "transfer-encoding",
    "upgrade",
    "vary",
];

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// 1-based.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl core::fmt::Display for RuleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

fn err<T>(line: usize, reason: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError {
        line,
        reason: reason.into(),
    })
}

/// One `_headers` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    /// Path pattern the block applies to.
    pub pattern: String,
    /// 1-based line of the pattern.
    pub line: usize,
    /// In file order: `Some(value)` sets, `None` detaches.
    pub fields: Vec<(String, Option<String>)>,
}

/// One `_redirects` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRule {
    /// Path pattern the rule matches.
    pub from: String,
    /// Target, with placeholders and splat substituted.
    pub to: String,
    /// Redirect status, or 200 for a rewrite.
    pub status: u16,
    /// Applies even where a file exists (`!`).
    pub force: bool,
    /// 1-based line in `_redirects`.
    pub line: usize,
}

impl RedirectRule {
    /// 200 and 404 serve another file of the site instead of redirecting.
    pub fn is_rewrite(&self) -> bool {
        matches!(self.status, 200 | 404)
    }
}

/// The statuses a `_redirects` rule may carry.
pub const REDIRECT_STATUSES: &[u16] = &[200, 301, 302, 303, 307, 308, 404];

/// Lines of a rules file with their 1-based numbers, checked for length and
/// control bytes.
fn lines(text: &str) -> Result<impl Iterator<Item = (usize, &str)>, RuleError> {
    for (i, line) in text.lines().enumerate() {
        if line.len() > MAX_LINE {
            return err(i + 1, format!("line longer than {MAX_LINE} bytes"));
        }
        if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return err(i + 1, "control character in line");
        }
    }
    Ok(text.lines().enumerate().map(|(i, l)| (i + 1, l)))
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

fn pattern_error(line: usize, what: &str, e: PatternError) -> RuleError {
    RuleError {
        line,
        reason: format!("{what}: {e}"),
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a `_headers` file.
pub fn parse_headers(text: &str) -> Result<Vec<HeaderRule>, RuleError> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    for (n, line) in lines(text)? {
        if is_comment_or_blank(line) {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        let t = line.trim();
        if !indented {
            if t.contains(char::is_whitespace) {
                return err(n, format!("a path line holds one pattern, not {t:?}"));
            }
            pattern::check(t).map_err(|e| pattern_error(n, "path", e))?;
            if rules.len() >= MAX_RULES {
                return err(n, format!("more than {MAX_RULES} rules"));
            }
            rules.push(HeaderRule {
                pattern: t.to_string(),
                line: n,
                fields: Vec::new(),
            });
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            return err(
                n,
                "header line before any path line (a path line is not indented)",
            );
        };
        let field = if let Some(name) = t.strip_prefix('!') {
            let name = name.trim();
            check_name(n, name)?;
            (name.to_string(), None)
        } else {
            let Some((name, value)) = t.split_once(':') else {
                return err(n, format!("expected `Name: value` or `! Name`, got {t:?}"));
            };
            let (name, value) = (name.trim_end(), value.trim());
            check_name(n, name)?;
            if value.is_empty() {
                return err(
                    n,
                    format!("header {name} has an empty value (use `! {name}` to detach it)"),
                );
            }
            if !value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
            {
                return err(n, format!("header {name}: value must be visible ASCII"));
            }
            (name.to_string(), Some(value.to_string()))
        };
        rule.fields.push(field);
    }
    Ok(rules)
}

fn check_name(line: usize, name: &str) -> Result<(), RuleError> {
    if !is_token(name) {
        return err(line, format!("{name:?} is not a header name"));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return err(
            line,
            format!("{name} is set by the server and cannot be changed by a rule"),
        );
    }
    Ok(())
}

/// The headers of one path once every matching rule applied: the content type
/// and cache policy (starting from the defaults given) and the other fields in
/// the order first set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedHeaders {
    /// `None` when a rule detached it.
    pub content_type: Option<String>,
    /// `None` when a rule detached it.
    pub cache_control: Option<String>,
    /// The other fields, in the order first set.
    pub fields: Vec<(String, String)>,
}

/// Applies every rule that matches `path`, in order, over the defaults.
pub fn resolve_headers(
    rules: &[HeaderRule],
    path: &str,
    content_type: &str,
    cache_control: &str,
) -> ResolvedHeaders {
    let mut out = ResolvedHeaders {
        content_type: Some(content_type.to_string()),
        cache_control: Some(cache_control.to_string()),
        fields: Vec::new(),
    };
    let mut caps = pattern::Captures::default();
    for rule in rules {
        if !pattern::matches(&rule.pattern, path, &mut caps) {
            continue;
        }
        for (name, value) in &rule.fields {
            let replaced = if name.eq_ignore_ascii_case("content-type") {
                Some(&mut out.content_type)
            } else if name.eq_ignore_ascii_case("cache-control") {
                Some(&mut out.cache_control)
            } else {
                None
            };
            if let Some(slot) = replaced {
                *slot = value.clone();
                continue;
            }
            let existing = out
                .fields
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(name));
            match (value, existing) {
                (Some(v), Some(i)) => {
                    if let Some((_, old)) = out.fields.get_mut(i) {
                        old.push_str(", ");
                        old.push_str(v);
                    }
                }
                (Some(v), None) => out.fields.push((name.clone(), v.clone())),
                (None, Some(i)) => {
                    out.fields.remove(i);
                }
                (None, None) => {}
            }
        }
    }
    out
}

/// Parses a `_redirects` file.
pub fn parse_redirects(text: &str) -> Result<Vec<RedirectRule>, RuleError> {
    let mut rules = Vec::new();
    for (n, line) in lines(text)? {
        if is_comment_or_blank(line) {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let condition = |f: &&str| {
            f.contains('=')
                && !f.starts_with('/')
                && !f.starts_with("http://")
                && !f.starts_with("https://")
        };
        if fields.iter().skip(1).any(condition) {
            return err(
                n,
                "query-parameter, country, language and role conditions are not supported",
            );
        }
        let (from, to, status) = match fields.as_slice() {
            [from, to] => (*from, *to, None),
            [from, to, status] => (*from, *to, Some(*status)),
            [_] => return err(n, "expected `from to [status]`, got one field"),
            _ => {
                return err(
                    n,
                    format!("expected `from to [status]`, got {} fields", fields.len()),
                );
            }
        };
        if from.starts_with("http://") || from.starts_with("https://") {
            return err(n, "rules for a host (absolute `from`) are not supported");
        }
        pattern::check(from).map_err(|e| pattern_error(n, "from", e))?;
        let (status, force) = match status {
            None => (301, false),
            Some(s) => {
                let (digits, force) = match s.strip_suffix('!') {
                    Some(d) => (d, true),
                    None => (s, false),
                };
                let code: u16 = digits
                    .parse()
                    .ok()
                    .filter(|c| REDIRECT_STATUSES.contains(c))
                    .map_or_else(
                        || err(n, format!("status {s:?} is not one of 200, 301, 302, 303, 307, 308, 404 (optionally with `!`)")),
                        Ok,
                    )?;
                (code, force)
            }
        };
        let absolute = to.starts_with("http://") || to.starts_with("https://");
        if !absolute && !to.starts_with('/') {
            return err(
                n,
                format!("target {to:?} must start with `/` or be an http(s) URL"),
            );
        }
        if !to.bytes().all(|b| b.is_ascii_graphic()) {
            return err(n, "target holds only visible ASCII characters");
        }
        let rule = RedirectRule {
            from: from.to_string(),
            to: to.to_string(),
            status,
            force,
            line: n,
        };
        if rule.is_rewrite() {
            if absolute {
                return err(
                    n,
                    format!(
                        "a {status} rewrite serves a file of this site: proxying to {to} is not supported"
                    ),
                );
            }
            if to.contains(['?', '#']) {
                return err(
                    n,
                    format!(
                        "a {status} rewrite target is a file: drop the query or fragment of {to:?}"
                    ),
                );
            }
        }
        for name in pattern::placeholders_used(to) {
            if !pattern::binds(from, name) {
                return err(
                    n,
                    format!("target uses :{name}, which {from:?} does not bind"),
                );
            }
        }
        if rules.len() >= MAX_RULES {
            return err(n, format!("more than {MAX_RULES} rules"));
        }
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_err(text: &str) -> (usize, String) {
        let e = parse_headers(text).unwrap_err();
        (e.line, e.reason)
    }

    fn redirect_err(text: &str) -> (usize, String) {
        let e = parse_redirects(text).unwrap_err();
        (e.line, e.reason)
    }

    #[test]
    fn headers_file() {
        let text = "# comment\n\n/*\n  X-A: 1\n  X-B:  two words \n\n/docs/*\n\t! X-A\n  Cache-Control: max-age=60\n";
        let rules = parse_headers(text).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].pattern, "/*");
        assert_eq!(rules[0].line, 3);
        assert_eq!(
            rules[0].fields,
            [
                ("X-A".into(), Some("1".into())),
                ("X-B".into(), Some("two words".into()))
            ]
        );
        assert_eq!(
            rules[1].fields,
            [
                ("X-A".into(), None),
                ("Cache-Control".into(), Some("max-age=60".into()))
            ]
        );
    }

    #[test]
    fn bad_header_lines() {
        assert_eq!(header_err("  X-A: 1\n").0, 1);
        assert!(header_err("  X-A: 1\n").1.contains("before any path"));
        assert!(header_err("/a\n  X-A 1\n").1.contains("Name: value"));
        assert_eq!(header_err("/a\n  X-A 1\n").0, 2);
        assert!(
            header_err("/a\n  Bad Name: 1\n")
                .1
                .contains("not a header name")
        );
        assert!(header_err("/a\n  X-A:\n").1.contains("empty value"));
        assert!(
            header_err("/a\n  ETag: x\n")
                .1
                .contains("set by the server")
        );
        assert!(
            header_err("/a\n  ! content-length\n")
                .1
                .contains("set by the server")
        );
        assert!(
            header_err("/a\n  X-A: caf\u{e9}\n")
                .1
                .contains("visible ASCII")
        );
        assert!(header_err("/a b\n").1.contains("one pattern"));
        assert!(header_err("a\n").1.contains("start with `/`"));
        assert!(header_err("/*/x\n").1.contains("last character"));
        assert!(header_err("/a\n  X: \u{1}\n").1.contains("control"));
        let long = alloc::format!("/a\n  X: {}\n", "v".repeat(MAX_LINE));
        assert_eq!(header_err(&long).0, 2);
        let many: String = (0..=MAX_RULES).map(|i| alloc::format!("/p{i}\n")).collect();
        assert!(header_err(&many).1.contains("more than"));
    }

    #[test]
    fn header_precedence() {
        let rules = parse_headers(
            "/*\n  X-A: 1\n  Cache-Control: max-age=1\n/docs/*\n  X-A: 2\n  X-B: b\n  Content-Type: text/x\n/docs/old/*\n  ! X-B\n  ! Cache-Control\n",
        )
        .unwrap();
        let r = resolve_headers(&rules, "/index.html", "text/html", "no-cache");
        assert_eq!(r.content_type.as_deref(), Some("text/html"));
        assert_eq!(r.cache_control.as_deref(), Some("max-age=1"));
        assert_eq!(r.fields, [("X-A".into(), "1".into())]);
        let r = resolve_headers(&rules, "/docs/a", "text/html", "no-cache");
        assert_eq!(r.content_type.as_deref(), Some("text/x"));
        assert_eq!(
            r.fields,
            [("X-A".into(), "1, 2".into()), ("X-B".into(), "b".into())]
        );
        let r = resolve_headers(&rules, "/docs/old/a", "text/html", "no-cache");
        assert_eq!(r.cache_control, None, "detached");
        assert_eq!(r.fields, [("X-A".into(), "1, 2".into())]);
        let none = resolve_headers(&[], "/x", "a/b", "no-cache");
        assert_eq!(none.fields, []);
        assert_eq!(none.cache_control.as_deref(), Some("no-cache"));
    }

    #[test]
    fn redirects_file() {
        let rules = parse_redirects(
            "# c\n/a /b\n/c   /d  302\n/e/:x /f/:x 200!\n/g/* https://h.example/:splat 308\n/h /404.html 404\n",
        )
        .unwrap();
        let summary: alloc::vec::Vec<(&str, &str, u16, bool, usize)> = rules
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str(), r.status, r.force, r.line))
            .collect();
        assert_eq!(
            summary,
            [
                ("/a", "/b", 301, false, 2),
                ("/c", "/d", 302, false, 3),
                ("/e/:x", "/f/:x", 200, true, 4),
                ("/g/*", "https://h.example/:splat", 308, false, 5),
                ("/h", "/404.html", 404, false, 6),
            ]
        );
        assert!(rules[2].is_rewrite() && !rules[0].is_rewrite());
    }

    #[test]
    fn bad_redirect_lines() {
        assert_eq!(
            redirect_err("/a /b\n/only\n"),
            (2, "expected `from to [status]`, got one field".into())
        );
        assert!(redirect_err("/a /b 301 extra\n").1.contains("4 fields"));
        assert!(
            redirect_err("/store id=:id /b 301\n")
                .1
                .contains("conditions are not supported")
        );
        assert!(
            redirect_err("/a /b 301 Country=us\n")
                .1
                .contains("conditions")
        );
        assert!(redirect_err("/a /b 304\n").1.contains("not one of"));
        assert!(redirect_err("/a /b 30x\n").1.contains("not one of"));
        assert!(redirect_err("/a /b !\n").1.contains("not one of"));
        assert!(redirect_err("https://x/a /b\n").1.contains("host"));
        assert!(redirect_err("/a?x=1 /b\n").1.contains("query"));
        assert!(redirect_err("/a b/c\n").1.contains("must start with"));
        assert!(redirect_err("/a /b/:x\n").1.contains(":x"));
        assert!(redirect_err("/a /b/:splat\n").1.contains(":splat"));
        assert!(redirect_err("/a https://x/ 200\n").1.contains("proxying"));
        assert!(redirect_err("/a /b?x=1 200\n").1.contains("query"));
        assert!(redirect_err("/a/*/b /c\n").1.contains("last character"));
    }
}
