//! What `build.rs` and the kernel agree on about a baked file: its URL path rules,
//! content type, whether it is worth compressing, and the hash behind its ETag.
//!
//! `build.rs` includes this file with `#[path]`, so it must stay plain `core` code
//! with no reference to the rest of the crate; the kernel's tests exercise it.

/// Content type for a file name, by extension (case-insensitive). Text types carry
/// `charset=utf-8`; anything unknown is `application/octet-stream`.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext,
        _ => "",
    };
    const TYPES: &[(&str, &str)] = &[
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("xml", "text/xml; charset=utf-8"),
        ("json", "application/json"),
        ("svg", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("ico", "image/x-icon"),
        ("wasm", "application/wasm"),
        ("woff2", "font/woff2"),
        ("bin", "application/octet-stream"),
    ];
    TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or("application/octet-stream", |(_, t)| t)
}

/// Whether a gzip variant is worth trying: text-like types only. Images, fonts and
/// opaque binaries are already compressed or are served byte-for-byte as stored.
pub fn is_compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("image/svg+xml")
        || content_type.starts_with("image/x-icon")
        || content_type.starts_with("application/wasm")
}

/// 64-bit FNV-1a: the strong ETag of a body is `"` + 16 hex digits of this + `"`.
pub fn etag_hash(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Bytes allowed in a baked path segment without percent-encoding: RFC 3986 `pchar`
/// minus `%` (a baked name is served under exactly its own name).
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// A path the site can be baked under: starts with `/`, non-empty segments of
/// RFC 3986 `pchar` characters other than `%`, none of them `.` or `..`.
pub fn is_valid_url_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(is_path_byte)
        })
}
