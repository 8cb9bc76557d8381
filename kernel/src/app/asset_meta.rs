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
    // nginx's `mime.types` for the web, plus what it lacks that browsers
    // need (avif, webmanifest, mjs, wasm, map, md, ics, opus).
    const TYPES: &[(&str, &str)] = &[
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
        ("md", "text/markdown; charset=utf-8"),
        ("csv", "text/csv; charset=utf-8"),
        ("ics", "text/calendar; charset=utf-8"),
        ("xml", "text/xml; charset=utf-8"),
        ("rss", "application/rss+xml"),
        ("atom", "application/atom+xml"),
        ("json", "application/json"),
        ("map", "application/json"),
        ("webmanifest", "application/manifest+json"),
        ("svg", "image/svg+xml"),
        ("svgz", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("avif", "image/avif"),
        ("ico", "image/x-icon"),
        ("bmp", "image/bmp"),
        ("tif", "image/tiff"),
        ("tiff", "image/tiff"),
        ("wasm", "application/wasm"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("ttf", "font/ttf"),
        ("otf", "font/otf"),
        ("eot", "application/vnd.ms-fontobject"),
        ("pdf", "application/pdf"),
        ("zip", "application/zip"),
        ("gz", "application/gzip"),
        ("tar", "application/x-tar"),
        ("mp4", "video/mp4"),
        ("m4v", "video/mp4"),
        ("webm", "video/webm"),
        ("ogv", "video/ogg"),
        ("mov", "video/quicktime"),
        ("ogg", "audio/ogg"),
        ("oga", "audio/ogg"),
        ("opus", "audio/ogg"),
        ("mp3", "audio/mpeg"),
        ("m4a", "audio/mp4"),
        ("wav", "audio/wav"),
        ("flac", "audio/flac"),
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
        || content_type.starts_with("application/manifest+json")
        || content_type.starts_with("application/rss+xml")
        || content_type.starts_with("application/atom+xml")
        || content_type.starts_with("application/vnd.ms-fontobject")
        || content_type.starts_with("font/ttf")
        || content_type.starts_with("font/otf")
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

/// `Cache-Control` of a file whose name carries a content hash: it can never
/// change under that name, so caches keep it for a year without asking.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of every other file: caches may store it but revalidate it
/// each time, which the strong ETag makes a cheap 304.
pub const REVALIDATE: &str = "no-cache";

/// Whether a file name carries a content hash, as bundlers write them: the
/// part of the name before its extension ends in `.HASH` or `-HASH`, where
/// HASH is 8 to 64 characters with at least one digit and one letter, either
/// all lowercase hex (webpack, Parcel, `app.3f2a9c1b.js`) or all uppercase
/// letters and digits (esbuild, `chunk-5XJ2K7QH.css`). Mixed-case hashes
/// (Vite's base64) are not recognized: words like `MainPage` look the same.
pub fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if stem.is_empty() || ext.is_empty() {
        return false;
    }
    let Some(sep) = stem.rfind(['.', '-']) else {
        return false;
    };
    if sep == 0 {
        return false;
    }
    let hash = stem.get(sep + 1..).unwrap_or_default();
    let digits = hash.bytes().any(|b| b.is_ascii_digit());
    let letters = hash.bytes().any(|b| b.is_ascii_alphabetic());
    let hex = hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let upper = hash
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    (8..=64).contains(&hash.len()) && digits && letters && (hex || upper)
}

/// Where a site keeps what is not a page: the rules files at its root are
/// read by the builder and never served; `.well-known/` (RFC 8615: ACME
/// http-01, `security.txt`) is served; every other name starting with `.` is
/// left out (`.git`, `.env`, editor files).
pub fn is_rules_file(url: &str) -> bool {
    url == "/_headers" || url == "/_redirects"
}

/// Whether a dot-named entry at `url` is baked: only `/.well-known`.
pub fn is_served_dot_dir(url: &str) -> bool {
    url == "/.well-known"
}

/// Bytes (`Name: value\r\n` each) that a site's `_headers` rules may add to one
/// path; the builder refuses more. Fits the connection's response head
/// (checked in `app::assets`).
pub const MAX_RULE_HEADER_BYTES: usize = 1000;
