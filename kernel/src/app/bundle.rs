//! Reads a site bundle (layout in [`bundle_format`](super::bundle_format),
//! prose in `docs/bundle-format.md`) in place: [`Bundle::parse`] checks
//! everything a lookup will later rely on (magic, version, length, checksum,
//! every table and span in bounds, strings UTF-8 and fit for a response head,
//! paths strictly sorted, bodies either shared or disjoint, rules valid), so
//! the accessors after it never index out of bounds and never copy a body.
//! Nothing about the bytes is trusted before that: they come from the host's
//! `-initrd` or the image, and a bad one must cost a 503, not the guest.

use super::asset_meta;
use super::bundle_format::{self as fmt, entry, field, hdr, header_set, redirect};
use super::site_rules;
use alloc::format;
use alloc::vec::Vec;
use core::fmt::{Display, Formatter};

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// Shorter than the header.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The first bytes are not [`MAGIC`](super::bundle_format::MAGIC).
    BadMagic,
    /// Written by a builder that speaks a later format.
    NewerVersion {
        /// The bundle's format version.
        found: u32,
        /// The version this reader speaks.
        supported: u32,
    },
    /// Written by a builder that spoke an earlier format.
    OldVersion {
        /// The bundle's format version.
        found: u32,
        /// The version this reader speaks.
        supported: u32,
    },
    /// The header's own length is not this format's.
    BadHeader,
    /// The header's file length is not the number of bytes given.
    Length {
        /// Length the header states.
        header: u64,
        /// Bytes given.
        actual: u64,
    },
    /// The CRC-32 does not match: a damaged or truncated copy.
    Checksum {
        /// CRC-32 the header states.
        stored: u32,
        /// CRC-32 of the bytes given.
        computed: u32,
    },
    /// A table, span or value is out of bounds or malformed.
    Invalid {
        /// Which table.
        table: &'static str,
        /// Index of the offending record in it.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Display for BundleError {
    fn fmt(&self, f: &mut Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::TooShort { len } => write!(
                f,
                "bundle too short: {len} bytes, the header alone is {}",
                fmt::HEADER_LEN
            ),
            BundleError::BadMagic => write!(f, "not a site bundle (wrong magic)"),
            BundleError::NewerVersion { found, supported } => write!(
                f,
                "bundle from a newer builder: format {found}, this kernel reads format {supported}"
            ),
            BundleError::OldVersion { found, supported } => write!(
                f,
                "bundle format {found} is no longer read (this kernel reads format {supported})"
            ),
            BundleError::BadHeader => write!(f, "bundle header length is wrong"),
            BundleError::Length { header, actual } if actual < header => write!(
                f,
                "bundle truncated: header says {header} bytes, got {actual}"
            ),
            BundleError::Length { header, actual } => write!(
                f,
                "bundle has trailing bytes: header says {header} bytes, got {actual}"
            ),
            BundleError::Checksum { stored, computed } => write!(
                f,
                "bundle checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BundleError::Invalid {
                table,
                index,
                reason,
            } => write!(f, "bundle {table} {index}: {reason}"),
        }
    }
}

/// A region of the file holding `count` records of `size` bytes.
#[derive(Debug, Clone, Copy)]
struct Table {
    off: usize,
    count: usize,
    size: usize,
}

/// A bundle whose every byte a lookup can reach has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    entries: Table,
    redirects: Table,
    header_sets: Table,
    fields: Table,
}

/// One path of the bundle, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// URL path, as served.
    pub path: &'a str,
    /// `Content-Type` value.
    pub content_type: &'a str,
    /// `Cache-Control` value, if any.
    pub cache_control: Option<&'a str>,
    /// The file as it is (identity coding).
    pub body: &'a [u8],
    /// Strong ETag of `body`.
    pub etag: &'a str,
    /// `(body, etag)` of the gzip variant.
    pub gzip: Option<(&'a [u8], &'a str)>,
    /// `(body, etag)` of the brotli variant.
    pub br: Option<(&'a [u8], &'a str)>,
    /// Index of its `_headers` fields ([`Bundle::header_set`]).
    pub header_set: usize,
}

/// One `_redirects` rule, borrowed from the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    /// Path pattern the rule matches.
    pub from: &'a str,
    /// Target, with placeholders and splat substituted.
    pub to: &'a str,
    /// Redirect status, or 200 for a rewrite.
    pub status: u16,
    /// Applies even where a file exists (`!`).
    pub force: bool,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The bytes `[off, off + len)` when they lie inside `region`.
fn span_in(b: &[u8], at: usize, region: (usize, usize)) -> Option<(usize, usize)> {
    let off = usize::try_from(u64_at(b, at)?).ok()?;
    let len = usize::try_from(u64_at(b, at + 8)?).ok()?;
    let end = off.checked_add(len)?;
    (off >= region.0 && end <= region.1).then_some((off, end))
}

/// A visible-ASCII string with inner spaces: safe to put in a response head.
fn is_field_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
}

/// An RFC 9110 token (a field name).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A strong entity tag: `"` + visible characters other than `"` + `"`.
fn is_strong_etag(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with('"')
        && s.ends_with('"')
        && s[1..s.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"')
}

/// A path a site file can be served at: a valid file path, or a directory
/// index `X/` (`/` included).
fn is_served_path(path: &str) -> bool {
    path == "/" || asset_meta::is_valid_url_path(path.strip_suffix('/').unwrap_or(path))
}

impl<'a> Bundle<'a> {
    /// Checks all of `bytes`; on success every accessor is in bounds.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.len() < fmt::HEADER_LEN {
            return Err(BundleError::TooShort { len: bytes.len() });
        }
        if bytes.get(hdr::MAGIC..hdr::MAGIC + 8) != Some(&fmt::MAGIC[..]) {
            return Err(BundleError::BadMagic);
        }
        let word = |at| u32_at(bytes, at).unwrap_or(0);
        let quad = |at| u64_at(bytes, at).unwrap_or(0);
        let version = word(hdr::VERSION);
        if version > fmt::VERSION {
            return Err(BundleError::NewerVersion {
                found: version,
                supported: fmt::VERSION,
            });
        }
        if version < fmt::VERSION {
            return Err(BundleError::OldVersion {
                found: version,
                supported: fmt::VERSION,
            });
        }
        if word(hdr::HEADER_LEN) as usize != fmt::HEADER_LEN {
            return Err(BundleError::BadHeader);
        }
        let file_len = quad(hdr::FILE_LEN);
        if file_len != bytes.len() as u64 {
            return Err(BundleError::Length {
                header: file_len,
                actual: bytes.len() as u64,
            });
        }
        let stored = word(hdr::CHECKSUM);
        let computed = crc32fast::hash(bytes.get(fmt::CHECKSUM_FROM..).unwrap_or_default());
        if stored != computed {
            return Err(BundleError::Checksum { stored, computed });
        }
        let layout = |reason| BundleError::Invalid {
            table: "header",
            index: 0,
            reason,
        };
        if bytes
            .get(hdr::RESERVED..fmt::HEADER_LEN)
            .is_none_or(|r| r.iter().any(|&b| b != 0))
        {
            return Err(layout("reserved header bytes are not zero"));
        }
        let table = |count_at, max: u32, off_at, size: usize| -> Result<Table, BundleError> {
            let count = word(count_at);
            if count > max {
                return Err(layout("a table count is over its limit"));
            }
            let off = usize::try_from(quad(off_at)).map_err(|_| layout("table offset"))?;
            Ok(Table {
                off,
                count: count as usize,
                size,
            })
        };
        let entries = table(
            hdr::ENTRY_COUNT,
            fmt::MAX_ENTRIES,
            hdr::ENTRIES_OFF,
            entry::LEN,
        )?;
        let redirects = table(
            hdr::REDIRECT_COUNT,
            fmt::MAX_REDIRECTS,
            hdr::REDIRECTS_OFF,
            redirect::LEN,
        )?;
        let header_sets = table(
            hdr::HEADER_SET_COUNT,
            fmt::MAX_HEADER_SETS,
            hdr::HEADER_SETS_OFF,
            header_set::LEN,
        )?;
        let fields = table(
            hdr::FIELD_COUNT,
            fmt::MAX_FIELDS,
            hdr::FIELDS_OFF,
            field::LEN,
        )?;
        let region = |off: u64, len: u64| -> Result<(usize, usize), BundleError> {
            let off = usize::try_from(off).map_err(|_| layout("section offset"))?;
            let len = usize::try_from(len).map_err(|_| layout("section length"))?;
            let end = off.checked_add(len).ok_or(layout("a section overflows"))?;
            Ok((off, end))
        };
        let strings = region(quad(hdr::STRINGS_OFF), quad(hdr::STRINGS_LEN))?;
        let data = region(quad(hdr::DATA_OFF), quad(hdr::DATA_LEN))?;
        let mut sections = [
            region(entries.off as u64, (entries.count * entries.size) as u64)?,
            region(
                redirects.off as u64,
                (redirects.count * redirects.size) as u64,
            )?,
            region(
                header_sets.off as u64,
                (header_sets.count * header_sets.size) as u64,
            )?,
            region(fields.off as u64, (fields.count * fields.size) as u64)?,
            strings,
            data,
        ];
        sections.sort_unstable();
        let mut floor = fmt::HEADER_LEN;
        for (start, end) in sections {
            if start < floor || end > bytes.len() {
                return Err(layout(
                    "sections overlap the header, each other or the end of the file",
                ));
            }
            floor = floor.max(end);
        }
        let bundle = Bundle {
            bytes,
            entries,
            redirects,
            header_sets,
            fields,
        };
        bundle.check_fields(strings)?;
        bundle.check_header_sets()?;
        bundle.check_entries(strings, data)?;
        bundle.check_redirects(strings)?;
        Ok(bundle)
    }

    fn record(&self, table: Table, i: usize) -> Option<&'a [u8]> {
        if i >= table.count {
            return None;
        }
        let at = table.off.checked_add(i.checked_mul(table.size)?)?;
        self.bytes.get(at..at.checked_add(table.size)?)
    }

    /// The string of a span at `at` in `rec`, if it is inside `strings` and UTF-8.
    fn string_in(&self, rec: &[u8], at: usize, strings: (usize, usize)) -> Option<&'a str> {
        let (start, end) = span_in(rec, at, strings)?;
        core::str::from_utf8(self.bytes.get(start..end)?).ok()
    }

    /// A span read after `parse`: in bounds by construction.
    fn str_at(&self, rec: &[u8], at: usize) -> &'a str {
        self.string_in(rec, at, (0, self.bytes.len()))
            .unwrap_or_default()
    }

    fn bytes_at(&self, rec: &[u8], at: usize) -> &'a [u8] {
        span_in(rec, at, (0, self.bytes.len()))
            .and_then(|(s, e)| self.bytes.get(s..e))
            .unwrap_or_default()
    }

    fn check_fields(&self, strings: (usize, usize)) -> Result<(), BundleError> {
        for i in 0..self.fields.count {
            let bad = |reason| BundleError::Invalid {
                table: "header field",
                index: i,
                reason,
            };
            let rec = self.record(self.fields, i).ok_or(bad("out of bounds"))?;
            let name = self
                .string_in(rec, field::NAME, strings)
                .ok_or(bad("name out of bounds or not UTF-8"))?;
            let value = self
                .string_in(rec, field::VALUE, strings)
                .ok_or(bad("value out of bounds or not UTF-8"))?;
            if !is_token(name) || !is_field_value(value) {
                return Err(bad("not a valid header field"));
            }
            if site_rules::RESERVED_HEADERS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
            {
                return Err(bad("a field the server sets itself"));
            }
        }
        Ok(())
    }

    fn check_header_sets(&self) -> Result<(), BundleError> {
        for i in 0..self.header_sets.count {
            let bad = |reason| BundleError::Invalid {
                table: "header set",
                index: i,
                reason,
            };
            let rec = self
                .record(self.header_sets, i)
                .ok_or(bad("out of bounds"))?;
            let first = u32_at(rec, header_set::FIRST).unwrap_or(u32::MAX) as usize;
            let count = u32_at(rec, header_set::COUNT).unwrap_or(u32::MAX) as usize;
            if first
                .checked_add(count)
                .is_none_or(|end| end > self.fields.count)
            {
                return Err(bad("fields out of bounds"));
            }
            let bytes: usize = self.header_set(i).map(|(n, v)| n.len() + v.len() + 4).sum();
            if bytes > asset_meta::MAX_RULE_HEADER_BYTES {
                return Err(bad("more header bytes than a response has room for"));
            }
        }
        Ok(())
    }

    fn check_entries(
        &self,
        strings: (usize, usize),
        data: (usize, usize),
    ) -> Result<(), BundleError> {
        // Up to three bodies per entry; a huge index must not end the guest
        // in an allocation failure.
        let mut bodies: Vec<(usize, usize)> = Vec::new();
        bodies
            .try_reserve_exact(self.entries.count.saturating_mul(3))
            .map_err(|_| BundleError::Invalid {
                table: "entry",
                index: self.entries.count,
                reason: "more entries than the guest has memory to check",
            })?;
        let mut previous: Option<&str> = None;
        for i in 0..self.entries.count {
            let bad = |reason| BundleError::Invalid {
                table: "entry",
                index: i,
                reason,
            };
            let rec = self.record(self.entries, i).ok_or(bad("out of bounds"))?;
            let flags = u32_at(rec, entry::FLAGS).unwrap_or(u32::MAX);
            if flags & !fmt::KNOWN_FLAGS != 0 {
                return Err(bad("unknown flags"));
            }
            let text = |at, what| self.string_in(rec, at, strings).ok_or(bad(what));
            let path = text(entry::PATH, "path out of bounds or not UTF-8")?;
            if !is_served_path(path) {
                return Err(bad("path is not a servable URL path"));
            }
            if previous.is_some_and(|p| p >= path) {
                return Err(bad("paths are not strictly sorted"));
            }
            previous = Some(path);
            let content_type = text(entry::CONTENT_TYPE, "content type out of bounds")?;
            if content_type.is_empty() || !is_field_value(content_type) {
                return Err(bad("content type is not a header value"));
            }
            if flags & fmt::HAS_CACHE_CONTROL != 0 {
                let cache = text(entry::CACHE_CONTROL, "cache control out of bounds")?;
                if !is_field_value(cache) {
                    return Err(bad("cache control is not a header value"));
                }
            } else if !rec_zero(rec, entry::CACHE_CONTROL) {
                return Err(bad("an absent cache control has a span"));
            }
            let mut body = |at_body, at_etag, present: bool| -> Result<(), BundleError> {
                if !present {
                    return if rec_zero(rec, at_body) && rec_zero(rec, at_etag) {
                        Ok(())
                    } else {
                        Err(bad("an absent variant has a span"))
                    };
                }
                let span = span_in(rec, at_body, data).ok_or(bad("body out of bounds"))?;
                let etag = text(at_etag, "etag out of bounds or not UTF-8")?;
                if !is_strong_etag(etag) {
                    return Err(bad("etag is not a strong entity tag"));
                }
                bodies.push(span);
                Ok(())
            };
            body(entry::BODY, entry::ETAG, true)?;
            body(entry::GZIP, entry::GZIP_ETAG, flags & fmt::HAS_GZIP != 0)?;
            body(entry::BR, entry::BR_ETAG, flags & fmt::HAS_BR != 0)?;
            let set = u32_at(rec, entry::HEADER_SET).unwrap_or(u32::MAX) as usize;
            if set >= self.header_sets.count {
                return Err(bad("header set out of bounds"));
            }
        }
        // `X/` and `X/index.html` share a body; any other overlap is corruption.
        bodies.sort_unstable();
        bodies.dedup();
        if let Some(i) = bodies.windows(2).position(|w| w[1].0 < w[0].1) {
            return Err(BundleError::Invalid {
                table: "body",
                index: i + 1,
                reason: "bodies overlap",
            });
        }
        Ok(())
    }

    fn check_redirects(&self, strings: (usize, usize)) -> Result<(), BundleError> {
        for i in 0..self.redirects.count {
            let bad = |reason| BundleError::Invalid {
                table: "redirect",
                index: i,
                reason,
            };
            let rec = self.record(self.redirects, i).ok_or(bad("out of bounds"))?;
            let from = self
                .string_in(rec, redirect::FROM, strings)
                .ok_or(bad("from out of bounds or not UTF-8"))?;
            let to = self
                .string_in(rec, redirect::TO, strings)
                .ok_or(bad("to out of bounds or not UTF-8"))?;
            let status = u16_at(rec, redirect::STATUS).unwrap_or(0);
            let force = match rec.get(redirect::FORCE) {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(bad("force is neither 0 nor 1")),
            };
            if rec
                .get(redirect::FORCE + 1..redirect::LEN)
                .is_none_or(|r| r.iter().any(|&b| b != 0))
            {
                return Err(bad("padding is not zero"));
            }
            // The rule must read back as itself through the `_redirects` parser
            // the builder used: one definition of a valid rule.
            if !is_field_value(from) || !is_field_value(to) {
                return Err(bad("from or to has control characters"));
            }
            let line = format!("{from} {to} {status}{}", if force { "!" } else { "" });
            let parsed = site_rules::parse_redirects(&line).map_err(|_| bad("not a valid rule"))?;
            let same = matches!(parsed.as_slice(), [r] if r.from == from && r.to == to && r.status == status && r.force == force);
            if !same {
                return Err(bad("not a valid rule"));
            }
        }
        Ok(())
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.entries.count
    }

    /// The bundle has no paths.
    pub fn is_empty(&self) -> bool {
        self.entries.count == 0
    }

    /// The whole bundle.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The `i`-th path in sorted order.
    pub fn entry(&self, i: usize) -> Option<Entry<'a>> {
        let rec = self.record(self.entries, i)?;
        let flags = u32_at(rec, entry::FLAGS)?;
        let variant = |present: bool, at_body, at_etag| {
            present.then(|| (self.bytes_at(rec, at_body), self.str_at(rec, at_etag)))
        };
        Some(Entry {
            path: self.str_at(rec, entry::PATH),
            content_type: self.str_at(rec, entry::CONTENT_TYPE),
            cache_control: (flags & fmt::HAS_CACHE_CONTROL != 0)
                .then(|| self.str_at(rec, entry::CACHE_CONTROL)),
            body: self.bytes_at(rec, entry::BODY),
            etag: self.str_at(rec, entry::ETAG),
            gzip: variant(flags & fmt::HAS_GZIP != 0, entry::GZIP, entry::GZIP_ETAG),
            br: variant(flags & fmt::HAS_BR != 0, entry::BR, entry::BR_ETAG),
            header_set: u32_at(rec, entry::HEADER_SET)? as usize,
        })
    }

    fn path_of(&self, i: usize) -> &'a str {
        self.record(self.entries, i)
            .map(|rec| self.str_at(rec, entry::PATH))
            .unwrap_or_default()
    }

    /// Binary search of the sorted entry table, in place.
    pub fn find(&self, path: &str) -> Option<Entry<'a>> {
        let (mut lo, mut hi) = (0usize, self.entries.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.path_of(mid).cmp(path) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return self.entry(mid),
            }
        }
        None
    }

    /// Number of `_headers` field sets.
    pub fn header_set_count(&self) -> usize {
        self.header_sets.count
    }

    /// The fields of header set `i`, in order (empty if there is none).
    pub fn header_set(&self, i: usize) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (first, count) = self
            .record(self.header_sets, i)
            .and_then(|rec| {
                Some((
                    u32_at(rec, header_set::FIRST)? as usize,
                    u32_at(rec, header_set::COUNT)? as usize,
                ))
            })
            .unwrap_or((0, 0));
        let this = *self;
        (first..first.saturating_add(count)).filter_map(move |f| {
            let rec = this.record(this.fields, f)?;
            Some((
                this.str_at(rec, field::NAME),
                this.str_at(rec, field::VALUE),
            ))
        })
    }

    /// The `_redirects` rules in file order.
    pub fn rules(&self) -> impl Iterator<Item = Rule<'a>> + 'a {
        let this = *self;
        (0..self.redirects.count).filter_map(move |i| {
            let rec = this.record(this.redirects, i)?;
            Some(Rule {
                from: this.str_at(rec, redirect::FROM),
                to: this.str_at(rec, redirect::TO),
                status: u16_at(rec, redirect::STATUS)?,
                force: rec.get(redirect::FORCE) == Some(&1),
            })
        })
    }
}

/// The span at `at` is all zero (an absent optional field).
fn rec_zero(rec: &[u8], at: usize) -> bool {
    rec.get(at..at + fmt::SPAN_LEN)
        .is_some_and(|s| s.iter().all(|&b| b == 0))
}

#[cfg(test)]
mod tests;
