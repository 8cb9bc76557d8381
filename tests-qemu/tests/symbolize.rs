//! `scripts/symbolize` on the host, no QEMU: against a small ELF built here
//! with known functions, and against the real kernel ELF by its default path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tests_qemu::symbolize;

const PROBE_SOURCE: &str = r#"
#[inline(never)]
pub fn crash_site(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3)
}

#[inline(always)]
fn inlined_helper(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_add(1)
}

#[inline(never)]
pub fn caller(x: u64) -> u64 {
    inlined_helper(x).wrapping_mul(crash_site(x))
}

fn main() {
    let n = std::env::args().count() as u64;
    println!("{}", caller(n));
}
"#;

/// The probe program built with `-C debuginfo=<debuginfo>` into `dir`.
fn build_probe(dir: &str, debuginfo: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("symbolize_probe.rs");
    std::fs::write(&source, PROBE_SOURCE).unwrap();
    let elf = dir.join("symbolize_probe");
    let status = Command::new("rustc")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--edition", "2021", "-C", "opt-level=1", "-C"])
        .arg(format!("debuginfo={debuginfo}"))
        .arg("-o")
        .arg(&elf)
        .arg(&source)
        .status()
        .expect("running rustc");
    assert!(status.success(), "rustc failed on the probe program");
    elf
}

/// A small Rust program with full debug info, built once.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| build_probe("symbolize-probe-full", "full"))
}

/// The same with line tables only, as the kernel may be built.
fn probe_line_tables() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| build_probe("symbolize-probe-lines", "line-tables-only"))
}

/// Address of the symbol whose demangled name ends with `name`, from `nm`.
fn symbol_address(elf: &Path, name: &str) -> u64 {
    let out = Command::new("nm")
        .args(["-C", "--defined-only"])
        .arg(elf)
        .output()
        .expect("running nm (binutils)");
    assert!(out.status.success(), "nm failed on {}", elf.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let addr = parts.next()?;
            let kind = parts.next()?;
            let symbol = parts.next()?;
            let symbol = symbol.split("::h").next().unwrap_or(symbol);
            (kind.eq_ignore_ascii_case("t") && symbol.ends_with(name))
                .then(|| u64::from_str_radix(addr, 16).ok())
                .flatten()
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one text symbol ending in {name:?} in {}",
        elf.display()
    );
    found[0]
}

#[test]
fn symbolizes_rip_and_backtrace_frames() {
    let elf = probe();
    let crash = symbol_address(elf, "symbolize_probe::crash_site");
    let caller = symbol_address(elf, "symbolize_probe::caller");
    // Backtrace entries are return addresses: the script looks up addr - 1.
    let dump = format!(
        "noise before\n\
         FATAL exception=page-fault vector=14 error=0x0000000000000000\n\
         FATAL rip=0x{crash:016x} cs=0x0000000000000008 rflags=0x0000000000010046\n\
         FATAL backtrace 0 0x{:016x}\n\
         FATAL backtrace 1 0x{:016x}\n\
         FATAL end status=3\n",
        crash + 1,
        caller + 1
    );
    let symbols = symbolize::run(elf, &dump).unwrap();
    let labels: Vec<&str> = symbols.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["rip", "#0", "#1"], "{symbols:#?}");
    assert_eq!(symbols[0].addr, crash);
    assert_eq!(symbols[1].addr, crash + 1, "prints the address as given");
    assert!(
        symbols[0].is_in("symbolize_probe::crash_site"),
        "{symbols:#?}"
    );
    assert!(
        symbols[1].is_in("symbolize_probe::crash_site"),
        "{symbols:#?}"
    );
    assert!(symbols[2].is_in("symbolize_probe::caller"), "{symbols:#?}");
    for s in &symbols {
        let outer = &s.frames[0];
        assert!(
            outer.contains("symbolize_probe.rs:"),
            "no file:line in {outer:?}"
        );
        let line = outer.rsplit(':').next().unwrap();
        let line = line.split(' ').next().unwrap();
        assert!(line.parse::<u32>().is_ok_and(|l| l > 0), "{outer:?}");
    }
}

/// Symbolize the first 48 bytes of `caller` and return an address whose
/// frames show `inlined_helper` inlined into it.
fn inlined_address(elf: &Path) -> symbolize::Symbolized {
    let caller = symbol_address(elf, "symbolize_probe::caller");
    let dump: String = (0..48)
        .map(|i| format!("FATAL rip=0x{:016x}\n", caller + i))
        .collect();
    let symbols = symbolize::run(elf, &dump).unwrap();
    assert_eq!(symbols.len(), 48);
    symbols
        .iter()
        .find(|s| {
            s.frames.len() >= 2
                && s.frames[1..]
                    .iter()
                    .any(|f| symbolize::names_function(f, "inlined_helper"))
        })
        .unwrap_or_else(|| panic!("no address of caller shows inlined_helper: {symbols:#?}"))
        .clone()
}

#[test]
fn shows_inlined_frames_outermost_first() {
    let s = inlined_address(probe());
    assert!(s.is_in("symbolize_probe::caller"), "{s:#?}");
    assert!(
        s.frames[1].contains("symbolize_probe::inlined_helper at ")
            && s.frames[1].contains("symbolize_probe.rs:"),
        "{s:#?}"
    );
}

/// With line tables only, binutils names the innermost inlined frame after
/// the ELF symbol; the script moves that name back to the outermost frame.
#[test]
fn repairs_names_from_line_tables_only() {
    let s = inlined_address(probe_line_tables());
    assert!(s.is_in("symbolize_probe::caller"), "{s:#?}");
    assert!(s.frames[0].contains("symbolize_probe.rs:"), "{s:#?}");
    assert!(
        !s.frames[1..]
            .iter()
            .any(|f| symbolize::names_function(f, "symbolize_probe::caller")),
        "the outer function's name is left on an inlined frame: {s:#?}"
    );
}

#[test]
fn reads_a_dump_file_argument() {
    let elf = probe();
    let crash = symbol_address(elf, "symbolize_probe::crash_site");
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("symbolize-dump.txt");
    std::fs::write(&file, format!("FATAL rip=0x{crash:016x}\n")).unwrap();
    let out = symbolize::run_raw(
        &[OsString::from("--elf"), elf.into(), file.into()],
        "ignored stdin",
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let parsed = symbolize::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(parsed.len(), 1);
    assert!(parsed[0].is_in("symbolize_probe::crash_site"));
}

#[test]
fn missing_elf_is_a_clear_error() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-kernel.elf");
    let out = symbolize::run_raw(
        &[OsString::from("--elf"), missing.clone().into()],
        "FATAL rip=0xffffffff80001000\n",
    )
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kernel ELF not found") && stderr.contains(&*missing.to_string_lossy()),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn input_without_addresses_is_an_error() {
    let out = symbolize::run_raw(&[OsString::from("--elf"), probe().into()], "hello\n").unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `rip=0x...`"));
}

/// The default ELF is the release kernel: symbolize an injected-fault
/// function's address without `--elf`.
#[test]
fn default_elf_is_the_release_kernel() {
    let image = tests_qemu::image();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/image/release/kernel.elf");
    assert_eq!(
        std::fs::canonicalize(&image.kernel_elf).unwrap(),
        std::fs::canonicalize(&default).unwrap(),
        "build_image(Release) and scripts/symbolize disagree on the kernel ELF path"
    );
    let addr = symbol_address(&image.kernel_elf, "fault_inject::page_fault");
    let out = symbolize::run_raw(&[], &format!("FATAL rip=0x{addr:016x}\n")).unwrap();
    assert!(out.status.success(), "{out:?}");
    let parsed = symbolize::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(parsed[0].is_in("fault_inject::page_fault"), "{parsed:#?}");
}
