//! The site builder (`build/site.rs`, which `build.rs` runs) on sites made in
//! a temporary directory: what it bakes, and how it refuses what it cannot.

#[allow(dead_code)] // `bake` reads the build environment: only `bake_dir` here
#[path = "../../build/site.rs"]
pub(super) mod builder;

// The builder names its shared modules as `super::...`.
use super::{asset_meta, pattern, site_rules};
use std::path::PathBuf;

/// A temporary site directory and output directory, removed on drop.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("site-build-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("site")).unwrap();
        Scratch { root }
    }

    fn file(&self, rel: &str, bytes: &[u8]) -> &Scratch {
        let path = self.root.join("site").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    fn site(&self) -> PathBuf {
        self.root.join("site")
    }

    /// Bakes; the generated table's text, or the panic message.
    fn bake(&self) -> Result<String, String> {
        let out = self.root.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let site = self.site();
        let run = std::panic::catch_unwind(|| builder::bake_dir(&site, &out, "site", true));
        match run {
            Ok(()) => Ok(std::fs::read_to_string(out.join("site.rs")).unwrap()),
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn page() -> Vec<u8> {
    b"<p>a page that compresses well, well, well, well, well, well.</p>\n".repeat(8)
}

fn row<'t>(table: &'t str, path: &str) -> &'t str {
    let key = format!("path: {path:?},");
    table
        .lines()
        .find(|l| l.contains(&key))
        .unwrap_or_else(|| panic!("no row for {path} in\n{table}"))
}

#[test]
fn bakes_rules_variants_and_dot_files() {
    let s = Scratch::new("ok");
    let text = page();
    s.file("index.html", &text)
        .file("docs/index.html", &text)
        .file("notes.txt", &text)
        .file("notes.txt.gz", &gzip(&text))
        .file("app.0a1b2c3d.js", b"console.log(1)")
        .file(".well-known/security.txt", b"Contact: x")
        .file(".git/config", b"secret")
        .file(".env", b"secret")
        .file("_headers", b"/*\n  X-A: 1\n/docs/*\n  ! X-A\n  X-B: 2\n")
        .file("_redirects", b"/old /docs/ 301\n/app/* /index.html 200\n");
    let table = s.bake().unwrap();
    assert!(row(&table, "/").contains("HEADERS_"));
    assert!(row(&table, "/docs/").contains("cache_control: Some(\"no-cache\")"));
    assert!(
        row(&table, "/app.0a1b2c3d.js").contains(&format!("{:?}", asset_meta::IMMUTABLE)),
        "fingerprinted"
    );
    assert!(table.contains("path: \"/.well-known/security.txt\""));
    for hidden in ["/.git/config", "/.env", "/_headers", "/_redirects"] {
        assert!(
            !table.contains(&format!("path: {hidden:?}")),
            "{hidden} baked"
        );
    }
    assert!(table.contains("(\"X-B\", \"2\")"));
    assert!(
        table.contains("Redirect { from: \"/old\", to: \"/docs/\", status: 301, force: false }")
    );
    assert!(
        table.contains(
            "Redirect { from: \"/app/*\", to: \"/index.html\", status: 200, force: false }"
        )
    );
    // The shipped .gz is the gzip variant, byte for byte; brotli is made.
    let notes = row(&table, "/notes.txt");
    assert!(notes.contains("gzip: Some(Variant") && notes.contains("br: Some(Variant"));
    let sidecar_etag = format!("\"{:016x}\"", asset_meta::etag_hash(&gzip(&text)));
    assert!(
        notes.contains(&format!("etag: {sidecar_etag:?}")),
        "{notes}"
    );
}

#[test]
fn refuses_bad_rules_with_file_and_line() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "_redirects",
            b"/a /b\n\n/c /d 299\n",
            "_redirects:3: status \"299\"",
        ),
        (
            "_redirects",
            b"/x /missing.html 200\n",
            "_redirects:1: rewrite target /missing.html is not a file",
        ),
        (
            "_redirects",
            b"/a /b/:id\n",
            "_redirects:1: target uses :id",
        ),
        (
            "_headers",
            b"/*\n  ETag: x\n",
            "_headers:2: ETag is set by the server",
        ),
        (
            "_headers",
            b"  X: 1\n",
            "_headers:1: header line before any path",
        ),
        (
            "_headers",
            b"/*\n  ! Content-Type\n",
            "detaches Content-Type",
        ),
    ];
    for (name, text, want) in cases {
        let s = Scratch::new("bad");
        s.file("index.html", b"hi").file(name, text);
        let err = s.bake().unwrap_err();
        assert!(
            err.contains(want),
            "{name} {:?}: {err}",
            String::from_utf8_lossy(text)
        );
        assert!(
            err.contains(&s.site().join(name).display().to_string()) || !want.contains(':'),
            "{err}"
        );
    }
}

#[test]
fn refuses_a_sidecar_that_is_not_its_file() {
    let s = Scratch::new("sidecar");
    s.file("a.txt", &page())
        .file("a.txt.gz", &gzip(b"something else"));
    let err = s.bake().unwrap_err();
    assert!(err.contains("a.txt.gz does not decompress to"), "{err}");
    let s = Scratch::new("sidecar-br");
    s.file("a.txt", &page()).file("a.txt.br", b"not brotli");
    assert!(
        s.bake()
            .unwrap_err()
            .contains("a.txt.br does not decompress to")
    );
}

#[test]
fn too_many_rule_header_bytes() {
    let s = Scratch::new("big-headers");
    let long = format!(
        "/*\n  X-Long: {}\n",
        "v".repeat(asset_meta::MAX_RULE_HEADER_BYTES)
    );
    s.file("index.html", b"hi")
        .file("_headers", long.as_bytes());
    assert!(s.bake().unwrap_err().contains("bytes of header fields"));
}
