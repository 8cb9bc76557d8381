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
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// One file of a compiled site: its body and the variants kept.
pub struct CompiledFile {
    pub body: Vec<u8>,
    pub etag: String,
    /// `(bytes, etag)` of the gzip variant, kept only where smaller.
    pub gzip: Option<(Vec<u8>, String)>,
    /// `(bytes, etag)` of the brotli variant, kept only where smaller.
    pub br: Option<(Vec<u8>, String)>,
}

/// One path served, pointing at a [`CompiledFile`].
pub struct CompiledRow {
    pub url: String,
    /// Index into [`CompiledSite::files`].
    pub file: usize,
    pub content_type: String,
    pub cache_control: Option<String>,
    /// The other `_headers` fields for this path, in order.
    pub headers: Vec<(String, String)>,
}

/// A site directory turned into what the kernel serves: the same data whether
/// it is baked into the kernel (`bake_dir`) or written into a bundle by the
/// image builder.
pub struct CompiledSite {
    pub files: Vec<CompiledFile>,
    /// Sorted by `url`, each `url` once.
    pub rows: Vec<CompiledRow>,
    pub redirects: Vec<RedirectRule>,
    /// Files and directories read (for `cargo:rerun-if-changed`).
    pub inputs: Vec<PathBuf>,
    /// What was left out, and why.
    pub warnings: Vec<String>,
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

/// Reads a rules file at the site root, if there is one; a bad line is an
/// error `path:line: reason`.
fn read_rules<T>(
    dir: &Path,
    name: &str,
    parse: fn(&str) -> Result<Vec<T>, site_rules::RuleError>,
    inputs: &mut Vec<PathBuf>,
) -> Result<Vec<T>, String> {
    let path = dir.join(name);
    inputs.push(path.clone());
    let Ok(text) = fs::read(&path) else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8(text).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    parse(&text).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.reason))
}

/// Compiles `dir`: every file with its variants and ETags, every path it is
/// served at with its content type and `_headers` fields, and (`with_rules`)
/// the `_redirects` rules. Any file or rule the server could not serve as
/// written is an error naming it.
pub fn compile(dir: &Path, with_rules: bool) -> Result<CompiledSite, String> {
    let mut inputs = Vec::new();
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    collect(dir, "", 0, &mut files, &mut inputs, &mut warnings)?;
    files.sort_by(|a, b| a.url.cmp(&b.url));
    if files.is_empty() {
        warnings.push(format!(
            "site directory {} has no files: every path will be 404",
            dir.display()
        ));
    }
    let (header_rules, redirect_rules) = if with_rules {
        (
            read_rules(dir, "_headers", site_rules::parse_headers, &mut inputs)?,
            read_rules(dir, "_redirects", site_rules::parse_redirects, &mut inputs)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let sources: BTreeMap<&str, &Path> = files
        .iter()
        .map(|f| (f.url.as_str(), f.source.as_path()))
        .collect();

    // (path served, index into `files`), sorted by path at the end.
    let mut served: Vec<(String, usize)> = Vec::new();
    let mut compiled: Vec<CompiledFile> = Vec::new();
    // Compression (brotli at quality 11) is most of the time: files are
    // compiled on every core, each result kept in its file's slot.
    let slots: Vec<Mutex<Option<Result<CompiledFile, String>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(i) else { break };
                    let result = compile_file(file, &sources);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    for (i, (file, slot)) in files.iter().zip(slots).enumerate() {
        let compiled_file = slot
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| Err(format!("site: {} was not compiled", file.url)))?;
        compiled.push(compiled_file);
        served.push((file.url.clone(), i));
        if let Some(dir_url) = file.url.strip_suffix("index.html") {
            served.push((dir_url.to_string(), i));
        }
    }
    served.sort();
    if let Some(w) = served.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("site: two assets are served at {}", w[0].0));
    }
    check_rewrite_targets(dir, &redirect_rules, &served)?;

    let mut rows = Vec::with_capacity(served.len());
    for (url, i) in served {
        let content_type = asset_meta::content_type(&files[i].url);
        let cache = if asset_meta::is_fingerprinted(&url) {
            asset_meta::IMMUTABLE
        } else {
            asset_meta::REVALIDATE
        };
        let resolved = site_rules::resolve_headers(&header_rules, &url, content_type, cache);
        let Some(content_type) = resolved.content_type else {
            return Err(format!(
                "site: _headers detaches Content-Type of {url}; set another type instead"
            ));
        };
        let rule_bytes: usize = resolved
            .fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        if rule_bytes > asset_meta::MAX_RULE_HEADER_BYTES {
            return Err(format!(
                "site: _headers gives {url} {rule_bytes} bytes of header fields; at most {} fit a response",
                asset_meta::MAX_RULE_HEADER_BYTES
            ));
        }
        rows.push(CompiledRow {
            url,
            file: i,
            content_type: content_type.to_string(),
            cache_control: resolved.cache_control.map(|c| c.to_string()),
            headers: resolved.fields,
        });
    }
    Ok(CompiledSite {
        files: compiled,
        rows,
        redirects: redirect_rules,
        inputs,
        warnings,
    })
}

/// Bakes `dir` into `$OUT_DIR/<name>.rs` (bodies under `$OUT_DIR/<name>/`);
/// `with_rules`: read `_headers` / `_redirects` and emit `REDIRECTS`. Panics
/// with the reason if the site cannot be served as written.
pub fn bake_dir(dir: &Path, out: &Path, name: &str, with_rules: bool) {
    let site = compile(dir, with_rules).unwrap_or_else(|e| panic!("{e}"));
    for input in &site.inputs {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    for warning in &site.warnings {
        println!("cargo:warning={warning}");
    }

    let store = out.join(name);
    // Start from an empty directory so files of a previous site cannot linger.
    let _ = fs::remove_dir_all(&store);
    fs::create_dir_all(&store).unwrap_or_else(|e| panic!("create {}: {e}", store.display()));

    let mut statics = String::new();
    for (i, file) in site.files.iter().enumerate() {
        let mut body = |tag: &str, bytes: &[u8]| {
            let path = store.join(format!("{i}.{tag}"));
            write(&path, bytes);
            writeln!(
                statics,
                "static {}_{i}: &[u8] = include_bytes!({:?});",
                tag.to_uppercase(),
                path_str(&path)
            )
            .expect("format");
        };
        body("body", &file.body);
        if let Some((bytes, _)) = &file.gzip {
            body("gzip", bytes);
        }
        if let Some((bytes, _)) = &file.br {
            body("br", bytes);
        }
    }

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
    let mut header_sets: BTreeMap<&[(String, String)], usize> = BTreeMap::new();
    let mut assets = String::new();
    for row in &site.rows {
        let i = row.file;
        let b = &site.files[i];
        let next = header_sets.len();
        let set = *header_sets.entry(&row.headers).or_insert(next);
        let variant = |tag: &str, v: &Option<(Vec<u8>, String)>| match v {
            Some((_, e)) => format!("Some(Variant {{ body: {tag}_{i}, etag: {e:?} }})"),
            None => "None".to_string(),
        };
        writeln!(
            assets,
            "    Asset {{ path: {:?}, body: BODY_{i}, etag: {:?}, gzip: {}, br: {}, content_type: {:?}, cache_control: {:?}, headers: HEADERS_{set} }},",
            row.url,
            b.etag,
            variant("GZIP", &b.gzip),
            variant("BR", &b.br),
            row.content_type,
            row.cache_control,
        )
        .expect("format");
    }
    let mut sets: Vec<(usize, &[(String, String)])> = header_sets
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
        for r in &site.redirects {
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

/// One file: its body, the sidecar or generated variants kept where smaller,
/// and their ETags.
fn compile_file(file: &SiteFile, sources: &BTreeMap<&str, &Path>) -> Result<CompiledFile, String> {
    let body =
        fs::read(&file.source).map_err(|e| format!("read {}: {e}", file.source.display()))?;
    let compressible = asset_meta::is_compressible(asset_meta::content_type(&file.url));
    let sidecar =
        |ext: &str, decode: fn(&[u8]) -> Option<Vec<u8>>| -> Result<Option<Vec<u8>>, String> {
            let Some(source) = sources.get(format!("{}.{ext}", file.url).as_str()) else {
                return Ok(None);
            };
            let packed = fs::read(source).map_err(|e| format!("read {}: {e}", source.display()))?;
            if decode(&packed).as_deref() != Some(&body[..]) {
                return Err(format!(
                    "site: {} does not decompress to {} (rebuild it or remove it)",
                    source.display(),
                    file.source.display()
                ));
            }
            Ok(Some(packed))
        };
    let gzip = sidecar("gz", gunzip)?
        .or_else(|| compressible.then(|| gzip(&body)))
        .filter(|v| v.len() < body.len());
    let br = sidecar("br", unbrotli)?
        .or_else(|| compressible.then(|| brotli(&body)))
        .filter(|v| v.len() < body.len());
    let with_etag = |bytes: Vec<u8>| {
        let tag = etag(&bytes);
        (bytes, tag)
    };
    Ok(CompiledFile {
        etag: etag(&body),
        body,
        gzip: gzip.map(with_etag),
        br: br.map(with_etag),
    })
}

/// A rewrite (200 / 404) whose target has no placeholder must name a file of
/// the site: otherwise every request it matches would be a 404.
fn check_rewrite_targets(
    dir: &Path,
    rules: &[RedirectRule],
    rows: &[(String, usize)],
) -> Result<(), String> {
    for rule in rules.iter().filter(|r| r.is_rewrite()) {
        if pattern::placeholders_used(&rule.to).next().is_some() {
            continue;
        }
        if rows
            .binary_search_by(|(url, _)| url.as_str().cmp(&rule.to))
            .is_err()
        {
            return Err(format!(
                "{}:{}: rewrite target {} is not a file of the site",
                dir.join("_redirects").display(),
                rule.line,
                rule.to
            ));
        }
    }
    Ok(())
}

/// Appends every regular file under `dir` to `files`, with its URL path.
fn collect(
    dir: &Path,
    url_prefix: &str,
    depth: usize,
    files: &mut Vec<SiteFile>,
    inputs: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "site: {} is nested more than {MAX_DEPTH} directories deep (symlink loop?)",
            dir.display()
        ));
    }
    inputs.push(dir.to_path_buf());
    let entries = fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(format!("site: file name {} is not UTF-8", path.display()));
        };
        let url = format!("{url_prefix}/{name}");
        if name.starts_with('.') && !asset_meta::is_served_dot_dir(&url) {
            warnings.push(format!("site: skipping dot-file {}", path.display()));
            continue;
        }
        if asset_meta::is_rules_file(&url) {
            continue;
        }
        if !asset_meta::is_valid_url_path(&url) {
            return Err(format!(
                "site: {} would be served as {url:?}, which is not a valid URL path \
                 (use only letters, digits and -._~!$&'()*+,;=:@ in file names)",
                path.display()
            ));
        }
        let meta = fs::metadata(&path).map_err(|e| format!("stat {}: {e}", path.display()))?;
        if meta.is_dir() {
            collect(&path, &url, depth + 1, files, inputs, warnings)?;
        } else if meta.is_file() {
            inputs.push(path.clone());
            files.push(SiteFile { url, source: path });
        } else {
            warnings.push(format!(
                "site: skipping {} (not a regular file)",
                path.display()
            ));
        }
    }
    Ok(())
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
