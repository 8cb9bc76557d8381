//! Run `scripts/symbolize` and read its answer back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One address as the script printed it: `rip 0x...` or `#N 0x...`, then
/// its frames, each `function at file:line`: first the function the address
/// is in, then the calls inlined there, outermost to innermost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbolized {
    pub label: String,
    pub addr: u64,
    pub frames: Vec<String>,
}

impl Symbolized {
    /// Whether the address is in the function `path` (e.g.
    /// `fault_inject::page_fault`), ignoring hashes and generics; inlined
    /// frames do not count.
    pub fn is_in(&self, path: &str) -> bool {
        self.frames.first().is_some_and(|f| names_function(f, path))
    }

    /// Whether any frame, inlined or not, is the function `path`.
    pub fn mentions(&self, path: &str) -> bool {
        self.frames.iter().any(|f| names_function(f, path))
    }
}

/// Whether `frame` (`function at file:line`) is the function `path`:
/// `path` must end a path segment, so `fault_inject::panic` does not match
/// `fault_inject::panicky`, but does match `fault_inject::panic::h01ab` or
/// `fault_inject::panic<T>`.
pub fn names_function(frame: &str, path: &str) -> bool {
    let function = frame.split(" at ").next().unwrap_or(frame);
    function.match_indices(path).any(|(at, _)| {
        let before = function[..at].chars().next_back();
        let after = function[at + path.len()..].chars().next();
        let starts = before.is_none_or(|c| c == ':' || c == '<' || c == ' ' || c == '&');
        let ends = after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        starts && ends
    })
}

/// The script, found from this crate's location in the repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("symbolize")
}

/// Run the script on `input` (a dump or a serial log) against `elf`.
pub fn run(elf: &Path, input: &str) -> Result<Vec<Symbolized>, String> {
    let output = run_raw(&[OsArg::from("--elf"), OsArg::from(elf)], input)?;
    if !output.status.success() {
        return Err(format!(
            "scripts/symbolize failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

type OsArg = std::ffi::OsString;

/// Run the script with `args`, feeding `input` on stdin.
pub fn run_raw(args: &[OsArg], input: &str) -> Result<std::process::Output, String> {
    let script = script();
    let mut child = Command::new(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_string();
    // Write from a thread so a script that does not read cannot block us.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {}: {e}", script.display()))?;
    let _ = writer.join();
    Ok(output)
}

/// Parse the script's output.
pub fn parse(out: &str) -> Result<Vec<Symbolized>, String> {
    let mut result: Vec<Symbolized> = Vec::new();
    for line in out.lines() {
        if let Some(inlined) = line.trim_start().strip_prefix("inlined: ") {
            let last = result
                .last_mut()
                .ok_or_else(|| format!("inlined frame before any address: {line:?}"))?;
            last.frames.push(inlined.to_string());
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(label), Some(addr), Some(frame)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("unexpected symbolize output line {line:?}"));
        };
        let addr = addr
            .strip_prefix("0x")
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .ok_or_else(|| format!("bad address in {line:?}"))?;
        if label != "rip" && !label.starts_with('#') {
            return Err(format!("unexpected label in {line:?}"));
        }
        result.push(Symbolized {
            label: label.to_string(),
            addr,
            frames: vec![frame.to_string()],
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_path_segments() {
        let f = "kernel::fault_inject::panic at kernel/src/fault_inject.rs:12";
        assert!(names_function(f, "fault_inject::panic"));
        assert!(!names_function(
            "kernel::fault_inject::panicky at x.rs:1",
            "fault_inject::panic"
        ));
        assert!(names_function(
            "kernel::fault_inject::recurse::h0123456789abcdef at x.rs:1",
            "fault_inject::recurse"
        ));
        assert!(names_function(
            "kernel::fault_inject::divide<u64> at x.rs:1",
            "fault_inject::divide"
        ));
        assert!(!names_function(
            "kernel::my_fault_inject::divide at x.rs:1",
            "fault_inject::divide"
        ));
        assert!(!names_function(
            "kernel::main at src/fault_inject::divide.rs:1",
            "fault_inject::divide"
        ));
    }

    #[test]
    fn parses_script_output() {
        let out = "rip 0xffffffff80012345 kernel::fault_inject::page_fault at kernel/src/fault_inject.rs:9\n\
                   \x20   inlined: core::ptr::read_volatile at /rustc/x/ptr.rs:1\n\
                   #0 0xffffffff80012400 kernel::main at kernel/src/main.rs:3\n";
        let parsed = parse(out).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].label, "rip");
        assert_eq!(parsed[0].addr, 0xffff_ffff_8001_2345);
        assert_eq!(parsed[0].frames.len(), 2);
        assert!(parsed[0].is_in("fault_inject::page_fault"));
        assert!(!parsed[0].is_in("ptr::read_volatile"));
        assert!(parsed[0].mentions("ptr::read_volatile"));
        assert!(!parsed[1].mentions("fault_inject::page_fault"));
        assert_eq!(parsed[1].label, "#0");
    }
}
