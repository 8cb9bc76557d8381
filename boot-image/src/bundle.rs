//! Site bundles: a site directory compiled by the same code the kernel's
//! `build.rs` bakes with (`kernel/build/site.rs` and the rule, pattern and
//! MIME modules it shares with the kernel), written in the format
//! `kernel/src/app/bundle_format.rs` defines. Needs no kernel build.

#[allow(dead_code)] // shared with the kernel, which uses all of it
#[path = "../../kernel/src/app/asset_meta.rs"]
mod asset_meta;
#[allow(dead_code)]
#[path = "../../kernel/src/app/bundle_format.rs"]
mod bundle_format;
#[allow(dead_code)]
#[path = "../../kernel/src/app/pattern.rs"]
mod pattern;
#[allow(dead_code)] // the kernel build's entry points are not used here
#[path = "../../kernel/build/site.rs"]
mod site;
#[allow(dead_code)]
#[path = "../../kernel/src/app/site_rules.rs"]
mod site_rules;
#[path = "bundle_write.rs"]
mod write;

use std::path::Path;

/// What [`build`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    /// Files read from the directory.
    pub files: usize,
    /// Paths served (a directory index counts twice: `X/` and `X/index.html`).
    pub paths: usize,
    pub redirects: usize,
    pub bytes: usize,
    /// Files left out (dot-files, special files), one line each.
    pub warnings: Vec<String>,
}

/// The bundle bytes of site directory `dir`, or why it cannot be served as
/// written (`file:line: reason` for a bad rule).
pub fn bundle_bytes(dir: &Path) -> Result<(Vec<u8>, BundleSummary), String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let site = site::compile(dir, true)?;
    let bytes = write::write(&site)?;
    let summary = BundleSummary {
        files: site.files.len(),
        paths: site.rows.len(),
        redirects: site.redirects.len(),
        bytes: bytes.len(),
        warnings: site.warnings,
    };
    Ok((bytes, summary))
}

/// Writes the bundle of `dir` to `out` (through a temporary file beside it,
/// renamed into place, so a failed build leaves an existing `out` intact).
pub fn build(dir: &Path, out: &Path) -> Result<BundleSummary, String> {
    let (bytes, summary) = bundle_bytes(dir)?;
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("rename {} to {}: {e}", tmp.display(), out.display())
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
