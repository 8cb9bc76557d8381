use super::*;

fn scratch(name: &str) -> std::path::PathBuf {
    let root =
        std::env::temp_dir().join(format!("boot-image-bundle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("site")).unwrap();
    root
}

#[test]
fn builds_the_default_site() {
    let root = scratch("default");
    let out = root.join("site.bundle");
    let dir = crate::repo_root().join("kernel/site");
    let summary = build(&dir, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(summary.bytes, bytes.len());
    assert_eq!(&bytes[..8], &bundle_format::MAGIC);
    assert!(summary.files > 3 && summary.paths > summary.files && summary.redirects > 0);
    assert!(!root.join("site.bundle.tmp").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_bad_site_is_an_error_and_keeps_the_old_bundle() {
    let root = scratch("bad");
    let out = root.join("site.bundle");
    std::fs::write(&out, b"old").unwrap();
    std::fs::write(root.join("site/_redirects"), b"/a /b 999\n").unwrap();
    let err = build(&root.join("site"), &out).unwrap_err();
    assert!(err.contains("_redirects:1:"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    let err = build(&root.join("missing"), &out).unwrap_err();
    assert!(err.contains("is not a directory"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
