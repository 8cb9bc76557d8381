//! Bakes a site directory into `$OUT_DIR/site.rs`, which `app::assets` includes,
//! and the server's built-in pages (`kernel/builtin/`) the same way into
//! `$OUT_DIR/builtin.rs`.
//!
//! The site directory is `$UNIKERNEL_SITE_DIR` (relative to `kernel/`) or
//! `kernel/site/`; the built-in pages do not depend on it.
//! - Every regular file becomes one asset served under its relative path; a file
//!   `X/index.html` is also served as `X/` (so `/` is `/index.html`).
//! - Names starting with `.` are left out with a warning, except `.well-known/`
//!   at the root; `_headers` and `_redirects` at the root are read as rules
//!   (`app::site_rules`) and not served. A malformed rule fails the build with
//!   `file:line: reason`.
//! - Text-like files get gzip and brotli variants where they come out smaller; a
//!   file `X.gz` or `X.br` beside `X` is used as that variant instead (after
//!   checking that it decompresses to `X`), as nginx's `gzip_static` does.
//! - Each body is copied into `$OUT_DIR/<name>/` and pulled in with
//!   `include_bytes!`. The table is sorted by path, so the kernel looks paths up
//!   with a binary search.

// Siblings in `build.rs`, and in `app` where the kernel's host tests include
// this file (`app::site_build_tests`).
use super::asset_meta;
use super::pattern;
use super::site_rules::{self, RedirectRule};
use flate2::{Compression, GzBuilder};
use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

const SITE_ENV: &str = "UNIKERNEL_SITE_DIR";
/// The server's own pages, served on fixed routes whatever the site.
const BUILTIN_DIR: &str = "builtin";
/// Directory nesting below which we stop (a symlink loop would recurse forever).
const MAX_DEPTH: usize = 16;
/// brotli settings for precompression: the best the format offers (it runs once
/// per build, not per request).
const BROTLI_QUALITY: u32 = 11;
const BROTLI_WINDOW: u32 = 22;

struct SiteFile {
    url: String,
    source: PathBuf,
}

/// What one baked file turned into (the table rows refer to it by index).
struct Baked {
    etag: String,
    gzip_etag: Option<String>,
    br_etag: Option<String>,
}

pub fn bake() {
    println!("cargo:rerun-if-env-changed={SITE_ENV}");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dir = match env::var_os(SITE_ENV) {
        Some(d) => manifest.join(d),
        None => manifest.join("site"),
    };
    if !dir.is_dir() {
        panic!(
            "site directory {} does not exist or is not a directory (set {SITE_ENV})",
            dir.display()
        );
    }
    bake_dir(&dir, &out, "site", true);
    bake_dir(&manifest.join(BUILTIN_DIR), &out, "builtin", false);
}

/// Reads a rules file at the site root, if there is one; a bad line panics
/// with `path:line: reason`.
fn read_rules<T>(
    dir: &Path,
    name: &str,
    parse: fn(&str) -> Result<Vec<T>, site_rules::RuleError>,
) -> Vec<T> {
    let path = dir.join(name);
    println!("cargo:rerun-if-changed={}", path.display());
    let Ok(text) = fs::read(&path) else {
        return Vec::new();
    };
    let text = String::from_utf8(text).unwrap_or_else(|_| panic!("{}: not UTF-8", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("{}:{}: {}", path.display(), e.line, e.reason))
}

/// Bakes `dir` into `$OUT_DIR/<name>.rs` (bodies under `$OUT_DIR/<name>/`);
/// `with_rules`: read `_headers` / `_redirects` and emit `REDIRECTS`.
pub fn bake_dir(dir: &Path, out: &Path, name: &str, with_rules: bool) {
    let mut files = Vec::new();
    collect(dir, "", 0, &mut files);
    files.sort_by(|a, b| a.url.cmp(&b.url));
    if files.is_empty() {
        println!(
            "cargo:warning=site directory {} has no files: every path will be 404",
            dir.display()
        );
    }
    let (header_rules, redirect_rules) = if with_rules {
        (
            read_rules(dir, "_headers", site_rules::parse_headers),
            read_rules(dir, "_redirects", site_rules::parse_redirects),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let sources: BTreeMap<&str, &Path> = files
        .iter()
        .map(|f| (f.url.as_str(), f.source.as_path()))
        .collect();

    let store = out.join(name);
    // Start from an empty directory so files of a previous site cannot linger.
    let _ = fs::remove_dir_all(&store);
    fs::create_dir_all(&store).unwrap_or_else(|e| panic!("create {}: {e}", store.display()));

    let mut statics = String::new();
    // (path served, index into `files`), sorted by path at the end.
    let mut rows: Vec<(String, usize)> = Vec::new();
    let mut baked: Vec<Baked> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let body = fs::read(&file.source)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.source.display()));
        let body_path = store.join(format!("{i}.body"));
        write(&body_path, &body);
        writeln!(
            statics,
            "static BODY_{i}: &[u8] = include_bytes!({:?});",
            path_str(&body_path)
        )
        .expect("format");
        let compressible = asset_meta::is_compressible(asset_meta::content_type(&file.url));
        let sidecar = |ext: &str, decode: fn(&[u8]) -> Option<Vec<u8>>| {
            let source = sources.get(format!("{}.{ext}", file.url).as_str())?;
            let packed =
                fs::read(source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
            if decode(&packed).as_deref() != Some(&body[..]) {
                panic!(
                    "site: {} does not decompress to {} (rebuild it or remove it)",
                    source.display(),
                    file.source.display()
                );
            }
            Some(packed)
        };
        let gzip = sidecar("gz", gunzip)
            .or_else(|| compressible.then(|| gzip(&body)))
            .filter(|v| v.len() < body.len());
        let br = sidecar("br", unbrotli)
            .or_else(|| compressible.then(|| brotli(&body)))
            .filter(|v| v.len() < body.len());
        let mut variant = |tag: &str, bytes: Option<Vec<u8>>| {
            bytes.map(|bytes| {
                let path = store.join(format!("{i}.{tag}"));
                write(&path, &bytes);
                writeln!(
                    statics,
                    "static {}_{i}: &[u8] = include_bytes!({:?});",
                    tag.to_uppercase(),
                    path_str(&path)
                )
                .expect("format");
                etag(&bytes)
            })
        };
        let gzip_etag = variant("gzip", gzip);
        let br_etag = variant("br", br);
        baked.push(Baked {
            etag: etag(&body),
            gzip_etag,
            br_etag,
        });
        rows.push((file.url.clone(), i));
        if let Some(dir_url) = file.url.strip_suffix("index.html") {
            rows.push((dir_url.to_string(), i));
        }
    }
    rows.sort();
    if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
        panic!("site: two assets are served at {}", w[0].0);
    }
    check_rewrite_targets(dir, &redirect_rules, &rows);

    let mut code = String::new();
    writeln!(
        code,
        "// @generated by build.rs from {}; do not edit.\n",
        dir.display()
    )
    .expect("format");
    writeln!(
        code,
        "/// The directory the table was baked from (absolute).\npub const BAKED_FROM: &str = {:?};\n",
        path_str(dir)
    )
    .expect("format");
    code.push_str(&statics);
    // Header lists shared between rows that resolve to the same fields.
    let mut header_sets: BTreeMap<Vec<(String, String)>, usize> = BTreeMap::new();
    let mut assets = String::new();
    for (url, i) in &rows {
        let b = &baked[*i];
        let content_type = asset_meta::content_type(&files[*i].url);
        let cache = if asset_meta::is_fingerprinted(url) {
            asset_meta::IMMUTABLE
        } else {
            asset_meta::REVALIDATE
        };
        let resolved = site_rules::resolve_headers(&header_rules, url, content_type, cache);
        let Some(content_type) = resolved.content_type else {
            panic!("site: _headers detaches Content-Type of {url}; set another type instead");
        };
        let rule_bytes: usize = resolved
            .fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        if rule_bytes > asset_meta::MAX_RULE_HEADER_BYTES {
            panic!(
                "site: _headers gives {url} {rule_bytes} bytes of header fields; at most {} fit a response",
                asset_meta::MAX_RULE_HEADER_BYTES
            );
        }
        let next = header_sets.len();
        let set = *header_sets.entry(resolved.fields).or_insert(next);
        let variant = |tag: &str, etag: &Option<String>| match etag {
            Some(e) => format!("Some(Variant {{ body: {tag}_{i}, etag: {e:?} }})"),
            None => "None".to_string(),
        };
        writeln!(
            assets,
            "    Asset {{ path: {url:?}, body: BODY_{i}, etag: {:?}, gzip: {}, br: {}, content_type: {content_type:?}, cache_control: {:?}, headers: HEADERS_{set} }},",
            b.etag,
            variant("GZIP", &b.gzip_etag),
            variant("BR", &b.br_etag),
            resolved.cache_control,
        )
        .expect("format");
    }
    let mut sets: Vec<(usize, Vec<(String, String)>)> = header_sets
        .into_iter()
        .map(|(fields, n)| (n, fields))
        .collect();
    sets.sort();
    for (n, fields) in sets {
        writeln!(code, "static HEADERS_{n}: &[(&str, &str)] = &{fields:?};").expect("format");
    }
    code.push_str("\n/// Every baked asset, sorted by `path`.\npub static ASSETS: &[Asset] = &[\n");
    code.push_str(&assets);
    code.push_str("];\n");
    if with_rules {
        code.push_str("\n/// The site's `_redirects` rules, in file order.\npub static REDIRECTS: &[Redirect] = &[\n");
        for r in &redirect_rules {
            writeln!(
                code,
                "    Redirect {{ from: {:?}, to: {:?}, status: {}, force: {} }},",
                r.from, r.to, r.status, r.force
            )
            .expect("format");
        }
        code.push_str("];\n");
    }
    write(&out.join(format!("{name}.rs")), code.as_bytes());
}

/// A rewrite (200 / 404) whose target has no placeholder must name a file of
/// the site: otherwise every request it matches would be a 404.
fn check_rewrite_targets(dir: &Path, rules: &[RedirectRule], rows: &[(String, usize)]) {
    for rule in rules.iter().filter(|r| r.is_rewrite()) {
        if pattern::placeholders_used(&rule.to).next().is_some() {
            continue;
        }
        if rows
            .binary_search_by(|(url, _)| url.as_str().cmp(&rule.to))
            .is_err()
        {
            panic!(
                "{}:{}: rewrite target {} is not a file of the site",
                dir.join("_redirects").display(),
                rule.line,
                rule.to
            );
        }
    }
}

/// Appends every regular file under `dir` to `files`, with its URL path.
fn collect(dir: &Path, url_prefix: &str, depth: usize, files: &mut Vec<SiteFile>) {
    if depth > MAX_DEPTH {
        panic!(
            "site: {} is nested more than {MAX_DEPTH} directories deep (symlink loop?)",
            dir.display()
        );
    }
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            panic!("site: file name {} is not UTF-8", path.display());
        };
        let url = format!("{url_prefix}/{name}");
        if name.starts_with('.') && !asset_meta::is_served_dot_dir(&url) {
            println!("cargo:warning=site: skipping dot-file {}", path.display());
            continue;
        }
        if asset_meta::is_rules_file(&url) {
            continue;
        }
        if !asset_meta::is_valid_url_path(&url) {
            panic!(
                "site: {} would be served as {url:?}, which is not a valid URL path \
                 (use only letters, digits and -._~!$&'()*+,;=:@ in file names)",
                path.display()
            );
        }
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if meta.is_dir() {
            collect(&path, &url, depth + 1, files);
        } else if meta.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(SiteFile { url, source: path });
        } else {
            println!(
                "cargo:warning=site: skipping {} (not a regular file)",
                path.display()
            );
        }
    }
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", asset_meta::etag_hash(bytes))
}

/// Deterministic gzip: no file name, mtime 0, best compression.
fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(body).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn gunzip(packed: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(packed)
        .read_to_end(&mut plain)
        .ok()?;
    Some(plain)
}

fn brotli(body: &[u8]) -> Vec<u8> {
    let mut packed = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY as i32,
        lgwin: BROTLI_WINDOW as i32,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &body[..], &mut packed, &params).expect("brotli in memory");
    packed
}

fn unbrotli(packed: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    brotli::BrotliDecompress(&mut &packed[..], &mut plain).ok()?;
    Some(plain)
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("path {} is not UTF-8", path.display()))
}
