//! Writes a compiled site as a bundle (layout in `kernel/src/app/bundle_format.rs`,
//! prose in `docs/bundle-format.md`). The kernel's host tests include this file
//! too, to read back what it writes.

use super::bundle_format::{self as fmt, entry, field, hdr, header_set, redirect};
use super::site::CompiledSite;
use std::collections::HashMap;

/// A section being laid out: bytes plus where equal strings already are.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    seen: HashMap<String, (u64, u64)>,
}

impl Strings {
    /// `(offset within the section, len)` of `s`, stored once.
    fn add(&mut self, s: &str) -> (u64, u64) {
        if let Some(&span) = self.seen.get(s) {
            return span;
        }
        let span = (self.bytes.len() as u64, s.len() as u64);
        self.bytes.extend_from_slice(s.as_bytes());
        self.seen.insert(s.to_string(), span);
        span
    }
}

fn put_u16(rec: &mut [u8], at: usize, v: u16) {
    rec[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(rec: &mut [u8], at: usize, v: u32) {
    rec[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(rec: &mut [u8], at: usize, v: u64) {
    rec[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn put_span(rec: &mut [u8], at: usize, base: u64, (off, len): (u64, u64)) {
    put_u64(rec, at, base + off);
    put_u64(rec, at + 8, len);
}

fn count(n: usize, max: u32, what: &str) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("bundle: {n} {what}, at most {max}"))
}

/// The bundle bytes of `site`.
pub fn write(site: &CompiledSite) -> Result<Vec<u8>, String> {
    let mut strings = Strings::default();
    let mut data: Vec<u8> = Vec::new();
    let mut push_data = |bytes: &[u8]| {
        let span = (data.len() as u64, bytes.len() as u64);
        data.extend_from_slice(bytes);
        span
    };
    // Per file: (body, gzip, br) spans within the data section.
    type Spans = ((u64, u64), Option<(u64, u64)>, Option<(u64, u64)>);
    let bodies: Vec<Spans> = site
        .files
        .iter()
        .map(|f| {
            (
                push_data(&f.body),
                f.gzip.as_ref().map(|(b, _)| push_data(b)),
                f.br.as_ref().map(|(b, _)| push_data(b)),
            )
        })
        .collect();

    // Header sets shared between rows with the same fields, in first-use order.
    let mut set_index: HashMap<&[(String, String)], u32> = HashMap::new();
    let mut sets: Vec<(u32, u32)> = Vec::new();
    let mut fields: Vec<((u64, u64), (u64, u64))> = Vec::new();
    let mut row_sets = Vec::with_capacity(site.rows.len());
    for row in &site.rows {
        let next = sets.len() as u32;
        let set = *set_index.entry(&row.headers).or_insert_with(|| {
            sets.push((fields.len() as u32, row.headers.len() as u32));
            for (name, value) in &row.headers {
                fields.push((strings.add(name), strings.add(value)));
            }
            next
        });
        row_sets.push(set);
    }
    if sets.is_empty() {
        // Every entry names a set; a site with no rows still has the empty one.
        sets.push((0, 0));
    }

    let entry_count = count(site.rows.len(), fmt::MAX_ENTRIES, "paths")?;
    let redirect_count = count(site.redirects.len(), fmt::MAX_REDIRECTS, "redirect rules")?;
    let set_count = count(sets.len(), fmt::MAX_HEADER_SETS, "header sets")?;
    let field_count = count(fields.len(), fmt::MAX_FIELDS, "header fields")?;

    // Every string goes in before the layout is fixed.
    let mut row_strings = Vec::with_capacity(site.rows.len());
    for row in &site.rows {
        let file = &site.files[row.file];
        row_strings.push((
            strings.add(&row.url),
            strings.add(&row.content_type),
            row.cache_control.as_deref().map(|c| strings.add(c)),
            strings.add(&file.etag),
            file.gzip.as_ref().map(|(_, e)| strings.add(e)),
            file.br.as_ref().map(|(_, e)| strings.add(e)),
        ));
    }
    let rule_strings: Vec<_> = site
        .redirects
        .iter()
        .map(|r| (strings.add(&r.from), strings.add(&r.to)))
        .collect();

    let entries_off = fmt::HEADER_LEN;
    let redirects_off = entries_off + site.rows.len() * entry::LEN;
    let sets_off = redirects_off + site.redirects.len() * redirect::LEN;
    let fields_off = sets_off + sets.len() * header_set::LEN;
    let strings_off = fields_off + fields.len() * field::LEN;
    let data_off = strings_off + strings.bytes.len();
    let file_len = data_off + data.len();
    let (s_base, d_base) = (strings_off as u64, data_off as u64);

    let mut out = vec![0u8; data_off];
    out[hdr::MAGIC..hdr::MAGIC + 8].copy_from_slice(&fmt::MAGIC);
    put_u32(&mut out, hdr::VERSION, fmt::VERSION);
    put_u32(&mut out, hdr::HEADER_LEN, fmt::HEADER_LEN as u32);
    put_u64(&mut out, hdr::FILE_LEN, file_len as u64);
    put_u32(&mut out, hdr::ENTRY_COUNT, entry_count);
    put_u32(&mut out, hdr::REDIRECT_COUNT, redirect_count);
    put_u32(&mut out, hdr::HEADER_SET_COUNT, set_count);
    put_u32(&mut out, hdr::FIELD_COUNT, field_count);
    put_u64(&mut out, hdr::ENTRIES_OFF, entries_off as u64);
    put_u64(&mut out, hdr::REDIRECTS_OFF, redirects_off as u64);
    put_u64(&mut out, hdr::HEADER_SETS_OFF, sets_off as u64);
    put_u64(&mut out, hdr::FIELDS_OFF, fields_off as u64);
    put_u64(&mut out, hdr::STRINGS_OFF, s_base);
    put_u64(&mut out, hdr::STRINGS_LEN, strings.bytes.len() as u64);
    put_u64(&mut out, hdr::DATA_OFF, d_base);
    put_u64(&mut out, hdr::DATA_LEN, data.len() as u64);

    for (i, row) in site.rows.iter().enumerate() {
        let at = entries_off + i * entry::LEN;
        let rec = &mut out[at..at + entry::LEN];
        let (path, ctype, cache, etag, gzip_etag, br_etag) = row_strings[i];
        let (body, gzip, br) = bodies[row.file];
        let mut flags = 0;
        put_span(rec, entry::PATH, s_base, path);
        put_span(rec, entry::CONTENT_TYPE, s_base, ctype);
        if let Some(cache) = cache {
            put_span(rec, entry::CACHE_CONTROL, s_base, cache);
            flags |= fmt::HAS_CACHE_CONTROL;
        }
        put_span(rec, entry::BODY, d_base, body);
        put_span(rec, entry::ETAG, s_base, etag);
        if let (Some(body), Some(etag)) = (gzip, gzip_etag) {
            put_span(rec, entry::GZIP, d_base, body);
            put_span(rec, entry::GZIP_ETAG, s_base, etag);
            flags |= fmt::HAS_GZIP;
        }
        if let (Some(body), Some(etag)) = (br, br_etag) {
            put_span(rec, entry::BR, d_base, body);
            put_span(rec, entry::BR_ETAG, s_base, etag);
            flags |= fmt::HAS_BR;
        }
        put_u32(rec, entry::HEADER_SET, row_sets[i]);
        put_u32(rec, entry::FLAGS, flags);
    }
    for (i, (rule, (from, to))) in site.redirects.iter().zip(rule_strings).enumerate() {
        let at = redirects_off + i * redirect::LEN;
        let rec = &mut out[at..at + redirect::LEN];
        put_span(rec, redirect::FROM, s_base, from);
        put_span(rec, redirect::TO, s_base, to);
        put_u16(rec, redirect::STATUS, rule.status);
        rec[redirect::FORCE] = u8::from(rule.force);
    }
    for (i, (first, n)) in sets.iter().enumerate() {
        let at = sets_off + i * header_set::LEN;
        put_u32(&mut out, at + header_set::FIRST, *first);
        put_u32(&mut out, at + header_set::COUNT, *n);
    }
    for (i, (name, value)) in fields.iter().enumerate() {
        let at = fields_off + i * field::LEN;
        put_span(&mut out, at + field::NAME, s_base, *name);
        put_span(&mut out, at + field::VALUE, s_base, *value);
    }
    out[strings_off..data_off].copy_from_slice(&strings.bytes);
    out.extend_from_slice(&data);
    let checksum = crc32fast::hash(&out[fmt::CHECKSUM_FROM..]);
    put_u32(&mut out, hdr::CHECKSUM, checksum);
    Ok(out)
}
