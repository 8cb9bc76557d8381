//! What the guest should serve and count: `/api/stats.json` and the site's files and encodings.

use super::*;

/// `/api/stats.json`, parsed.
#[derive(Clone, Debug)]
pub struct Stats {
    pub version: String,
    pub map: serde_json::Map<String, serde_json::Value>,
    /// The JSON as received, for failure messages.
    pub text: String,
}

impl Stats {
    /// Parses the JSON and checks that it is one object with a non-empty string
    /// `version` and every counter of [`STATS_COUNTERS`] as a `u64`.
    pub fn parse(body: &[u8]) -> Result<Stats, String> {
        let text = String::from_utf8_lossy(body).into_owned();
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("/api/stats.json is not JSON ({e}): {text}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err(format!("/api/stats.json is not one object: {text}"));
        };
        let version = match map.get("version") {
            Some(serde_json::Value::String(v)) if !v.is_empty() => v.clone(),
            other => return Err(format!("stats `version` is {other:?}: {text}")),
        };
        for name in STATS_COUNTERS {
            match map.get(*name) {
                Some(v) if v.is_u64() => {}
                other => return Err(format!("stats counter {name} is {other:?}: {text}")),
            }
        }
        Ok(Stats { version, map, text })
    }

    /// A counter; panics for a name not in [`STATS_COUNTERS`] (parse checked them).
    pub fn get(&self, name: &str) -> u64 {
        match self.map.get(name).and_then(serde_json::Value::as_u64) {
            Some(v) => v,
            None => panic!("stats have no u64 counter {name:?}: {}", self.text),
        }
    }

    /// `self.name - before.name`, failing if the counter went backwards.
    pub fn delta(&self, before: &Stats, name: &str) -> u64 {
        let (a, b) = (before.get(name), self.get(name));
        match b.checked_sub(a) {
            Some(d) => d,
            None => panic!(
                "stats counter {name} went backwards: {a} -> {b}\nbefore: {}\nafter: {}",
                before.text, self.text
            ),
        }
    }
}

/// A file of the baked site, read from `kernel/site/` (`rel` without the leading `/`).
pub fn site_file(rel: &str) -> Vec<u8> {
    let path = site_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn site_path(rel: &str) -> PathBuf {
    boot_image::repo_root().join("kernel/site").join(rel)
}

/// The strong ETag the kernel gives a body: `"` + 16 hex digits of FNV-1a 64 + `"`.
pub fn etag_of(bytes: &[u8]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("\"{hash:016x}\"")
}

/// The `Content-Type` the kernel gives a file of the default site, by
/// extension (its table in `kernel/src/app/asset_meta.rs`, for the extensions
/// the default site uses); panics for any other, so a new kind of file gets
/// an expectation written down.
pub fn site_content_type(rel: &str) -> &'static str {
    match std::path::Path::new(rel)
        .extension()
        .and_then(|e| e.to_str())
    {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("bin") => "application/octet-stream",
        Some("gz") => "application/gzip",
        Some("webm") => "video/webm",
        other => panic!("site file {rel}: extension {other:?} not covered by the tests"),
    }
}

/// Decompresses a gzip body.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("not valid gzip ({} bytes): {e}", bytes.len()))?;
    Ok(out)
}

/// gzip at the best level, as the kernel's build script makes the variants.
pub fn gzip_best(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Decompresses a brotli body.
pub fn unbrotli(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &bytes[..], &mut out)
        .map_err(|e| format!("not valid brotli ({} bytes): {e}", bytes.len()))?;
    Ok(out)
}

/// brotli at quality 11, window 22, as the kernel's build script makes the
/// variants (the encoder is deterministic, so these are the baked bytes).
pub fn brotli_best(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("brotli into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn brotli_round_trip() {
        let data = b"a brotli round trip, a brotli round trip".repeat(20);
        let packed = brotli_best(&data);
        assert!(packed.len() < data.len());
        assert_eq!(unbrotli(&packed).unwrap(), data);
        assert!(unbrotli(b"not brotli").is_err());
    }

    #[test]
    fn etag_matches_the_kernels_fnv1a() {
        // FNV-1a 64 of the empty input is the offset basis; of "a", a known value.
        assert_eq!(etag_of(b""), "\"cbf29ce484222325\"");
        assert_eq!(etag_of(b"a"), "\"af63dc4c8601ec8c\"");
    }

    #[test]
    fn gzip_round_trip() {
        let data = b"hello hello hello hello".repeat(10);
        assert_eq!(gunzip(&gzip_best(&data)).unwrap(), data);
        assert!(gunzip(b"not gzip").is_err());
    }

    #[test]
    fn stats_parse_requires_every_counter() {
        let mut obj = serde_json::Map::new();
        obj.insert("version".into(), "0.1.0".into());
        for name in STATS_COUNTERS {
            obj.insert((*name).into(), 7u64.into());
        }
        let text = serde_json::Value::Object(obj.clone()).to_string();
        let s = Stats::parse(text.as_bytes()).unwrap();
        assert_eq!(s.get("heap_used"), 7);
        obj.insert("frames_in".into(), (-1i64).into());
        let text = serde_json::Value::Object(obj.clone()).to_string();
        assert!(
            Stats::parse(text.as_bytes())
                .unwrap_err()
                .contains("frames_in")
        );
        obj.remove("frames_in");
        let text = serde_json::Value::Object(obj).to_string();
        assert!(Stats::parse(text.as_bytes()).is_err());
    }
}
