//! Building the image: the kernel, then the PVH loader with the kernel embedded, then
//! copying both into `target/image/<profile>/`.
//!
//! Each step runs a separate `cargo build` for `x86_64-unknown-none` in the crate's own
//! directory (so its `.cargo/config.toml` applies) with its own target directory.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The bare-metal target both the kernel and the loader are built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Environment variables that a parent `cargo run` / `cargo test` (or a coverage or
/// caching tool) may set and that would redirect or alter the inner builds.
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// Which cargo profile the kernel is built with. The loader is always built `--release`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The directory name cargo uses for this profile (`debug` or `release`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// What [`build_image`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifacts {
    /// The bootable image: `target/image/<profile>/unikernel.elf`.
    pub image: PathBuf,
    /// The kernel ELF embedded in the image, kept for symbolizing fault dumps:
    /// `target/image/<profile>/kernel.elf`.
    pub kernel_elf: PathBuf,
    pub profile: Profile,
}

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// Where every step reads and writes, relative to the repository root.
#[derive(Clone, Debug)]
struct Layout {
    root: PathBuf,
    profile: Profile,
}

impl Layout {
    fn kernel_dir(&self) -> PathBuf {
        self.root.join("kernel")
    }

    fn kernel_target_dir(&self) -> PathBuf {
        self.root.join("target").join("kernel")
    }

    fn kernel_elf(&self) -> PathBuf {
        self.kernel_target_dir()
            .join(KERNEL_TARGET)
            .join(self.profile.dir_name())
            .join("kernel")
    }

    fn loader_dir(&self) -> PathBuf {
        self.root.join("boot-image").join("loader")
    }

    /// Separate per kernel profile, and for images with a packed site: the loader
    /// embeds the kernel (and the bundle).
    fn loader_target_dir(&self, packed_site: bool) -> PathBuf {
        let site = if packed_site { "-site" } else { "" };
        self.root
            .join("target")
            .join(format!("loader-{}{site}", self.profile.dir_name()))
    }

    fn loader_elf(&self, packed_site: bool) -> PathBuf {
        self.loader_target_dir(packed_site)
            .join(KERNEL_TARGET)
            .join("release")
            .join("pvh-loader")
    }

    fn image_dir(&self) -> PathBuf {
        self.root
            .join("target")
            .join("image")
            .join(self.profile.dir_name())
    }
}

/// Arguments of an inner `cargo build`.
fn cargo_build_args(target_dir: &Path, release: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["build".into(), "--target".into(), KERNEL_TARGET.into()];
    if release {
        args.push("--release".into());
    }
    args.push("--target-dir".into());
    args.push(target_dir.into());
    args
}

/// An inner `cargo` with the parent's confusing environment removed. Its stdout goes to
/// our stderr so that stdout stays reserved for results (`boot-image image`).
fn inner_cargo(dir: &Path, args: &[OsString]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir).args(args);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(io::stderr()))
        .stderr(Stdio::inherit());
    cmd
}

fn run_cargo(what: &str, mut cmd: Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!("{what}: cargo not found in PATH")
        } else {
            format!("{what}: could not run cargo: {e}")
        }
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed (cargo {status}); see cargo's output above"
        ))
    }
}

/// `Err` with a one-line fix if rustup says the bare-metal target is not installed.
/// Without rustup (or if it fails) nothing is checked: the build will say what is wrong.
fn check_target_installed(root: &Path) -> Result<(), String> {
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "list", "--installed"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    match cmd.output() {
        Ok(out) if out.status.success() => {
            let listed = String::from_utf8_lossy(&out.stdout);
            if target_listed(&listed) {
                Ok(())
            } else {
                Err(format!(
                    "the Rust target {KERNEL_TARGET} is not installed: run 'rustup target add {KERNEL_TARGET}'"
                ))
            }
        }
        _ => Ok(()),
    }
}

fn target_listed(rustup_output: &str) -> bool {
    rustup_output.lines().any(|l| l.trim() == KERNEL_TARGET)
}

fn require_file(path: &Path, what: &str) -> Result<(), String> {
    if path.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{what} finished but {} does not exist",
            path.display()
        ))
    }
}

/// Copies `from` to `to` through a temporary file and a rename, so that a QEMU reading
/// the previous image (another test, another terminal) never sees a half-written file.
fn copy_atomically(from: &Path, to: &Path) -> Result<(), String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = to.with_file_name(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fs::copy(from, &tmp)
        .and_then(|_| fs::rename(&tmp, to))
        .map_err(|e| format!("could not copy {} to {}: {e}", from.display(), to.display()));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Builds the kernel (`profile`), then the PVH loader with that kernel embedded, and
/// copies the results to `target/image/<profile>/{unikernel.elf,kernel.elf}`.
///
/// Prints one progress line per step to stderr; cargo's own output also goes to stderr.
/// Errors are one line.
pub fn build_image(profile: Profile) -> Result<Artifacts, String> {
    build(profile, None)
}

/// [`build_image`] with the site directory `site` packed into the image as a
/// bundle (the same kernel; only the loader, which carries the bundle, is
/// rebuilt): `target/image/<profile>/unikernel-site.elf`, the bundle beside it
/// as `site.bundle`. The guest serves it when QEMU gives no `-initrd`.
pub fn build_image_with_site(profile: Profile, site: &Path) -> Result<Artifacts, String> {
    build(profile, Some(site))
}

fn build(profile: Profile, site: Option<&Path>) -> Result<Artifacts, String> {
    let layout = Layout {
        root: repo_root(),
        profile,
    };
    check_target_installed(&layout.root)?;

    eprintln!("boot-image: building the kernel ({profile})");
    let kernel_args = cargo_build_args(&layout.kernel_target_dir(), profile == Profile::Release);
    run_cargo(
        "kernel build",
        inner_cargo(&layout.kernel_dir(), &kernel_args),
    )?;
    let kernel_elf = layout.kernel_elf();
    require_file(&kernel_elf, "kernel build")?;

    let image_dir = layout.image_dir();
    fs::create_dir_all(&image_dir)
        .map_err(|e| format!("could not create {}: {e}", image_dir.display()))?;
    let packed = image_dir.join("kernel.packed.elf");
    let elf = fs::read(&kernel_elf)
        .map_err(|e| format!("could not read {}: {e}", kernel_elf.display()))?;
    fs::write(&packed, crate::pack::loadable_kernel(&elf)?)
        .map_err(|e| format!("could not write {}: {e}", packed.display()))?;

    let bundle = match site {
        Some(dir) => {
            let bundle = image_dir.join("site.bundle");
            let summary = crate::bundle::build(dir, &bundle)?;
            eprintln!(
                "boot-image: bundle {} ({} paths, {} bytes) from {}",
                bundle.display(),
                summary.paths,
                summary.bytes,
                dir.display()
            );
            Some(bundle)
        }
        None => None,
    };

    eprintln!("boot-image: building the PVH loader with the {profile} kernel embedded");
    let loader_args = cargo_build_args(&layout.loader_target_dir(site.is_some()), true);
    let mut loader = inner_cargo(&layout.loader_dir(), &loader_args);
    loader.env("KERNEL_ELF", &packed);
    match &bundle {
        Some(path) => loader.env("SITE_BUNDLE", path),
        None => loader.env_remove("SITE_BUNDLE"),
    };
    run_cargo("loader build", loader)?;
    let loader_elf = layout.loader_elf(site.is_some());
    require_file(&loader_elf, "loader build")?;

    let image_name = if site.is_some() {
        "unikernel-site.elf"
    } else {
        "unikernel.elf"
    };
    let artifacts = Artifacts {
        image: image_dir.join(image_name),
        kernel_elf: image_dir.join("kernel.elf"),
        profile,
    };
    copy_atomically(&loader_elf, &artifacts.image)?;
    copy_atomically(&kernel_elf, &artifacts.kernel_elf)?;
    eprintln!("boot-image: image {}", artifacts.image.display());
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(profile: Profile) -> Layout {
        Layout {
            root: PathBuf::from("/repo"),
            profile,
        }
    }

    #[test]
    fn repo_root_holds_the_workspace_manifest() {
        let root = repo_root();
        assert!(root.is_absolute());
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("boot-image").is_dir());
    }

    #[test]
    fn kernel_paths_follow_the_profile() {
        assert_eq!(
            layout(Profile::Release).kernel_elf(),
            Path::new("/repo/target/kernel/x86_64-unknown-none/release/kernel")
        );
        assert_eq!(
            layout(Profile::Debug).kernel_elf(),
            Path::new("/repo/target/kernel/x86_64-unknown-none/debug/kernel")
        );
        assert_eq!(
            layout(Profile::Debug).kernel_dir(),
            Path::new("/repo/kernel")
        );
    }

    #[test]
    fn loader_is_always_release_but_has_a_target_dir_per_kernel_profile() {
        assert_eq!(
            layout(Profile::Debug).loader_elf(false),
            Path::new("/repo/target/loader-debug/x86_64-unknown-none/release/pvh-loader")
        );
        assert_eq!(
            layout(Profile::Release).loader_elf(false),
            Path::new("/repo/target/loader-release/x86_64-unknown-none/release/pvh-loader")
        );
        assert_eq!(
            layout(Profile::Release).loader_dir(),
            Path::new("/repo/boot-image/loader")
        );
        assert_eq!(
            layout(Profile::Debug).image_dir(),
            Path::new("/repo/target/image/debug")
        );
    }

    #[test]
    fn cargo_args_name_target_profile_and_target_dir() {
        let args = cargo_build_args(Path::new("/t"), true);
        assert_eq!(
            args,
            [
                "build",
                "--target",
                "x86_64-unknown-none",
                "--release",
                "--target-dir",
                "/t"
            ]
            .map(OsString::from)
        );
        let args = cargo_build_args(Path::new("/t"), false);
        assert!(!args.contains(&OsString::from("--release")));
    }

    #[test]
    fn inner_cargo_scrubs_the_parent_environment() {
        let cmd = inner_cargo(Path::new("/repo/kernel"), &[]);
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for var in [
            "CARGO_TARGET_DIR",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
        ] {
            assert!(removed.iter().any(|r| r == var), "{var} not removed");
        }
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/repo/kernel")));
    }

    #[test]
    fn target_detection_reads_rustup_output() {
        assert!(target_listed(
            "x86_64-unknown-linux-gnu\nx86_64-unknown-none\n"
        ));
        assert!(!target_listed("x86_64-unknown-linux-gnu\n"));
        assert!(!target_listed(""));
    }

    #[test]
    fn atomic_copy_replaces_the_destination() {
        let dir = std::env::temp_dir().join(format!("boot-image-copy-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (src, dst) = (dir.join("src"), dir.join("dst"));
        fs::write(&src, b"new").unwrap();
        fs::write(&dst, b"old contents").unwrap();
        copy_atomically(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            2,
            "temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
