//! Just enough ELF64 reading to know where the kernel's code is: the virtual
//! address ranges of its executable `PT_LOAD` segments.

use std::ops::Range;
use std::path::Path;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PHDR_MIN_SIZE: usize = 56;

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Executable segment ranges of a little-endian ELF64 image.
pub fn executable_ranges(bytes: &[u8]) -> Result<Vec<Range<u64>>, String> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".to_string());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 file".to_string());
    }
    let truncated = || "truncated ELF header".to_string();
    let phoff =
        usize::try_from(read_u64(bytes, 0x20).ok_or_else(truncated)?).map_err(|_| truncated())?;
    let phentsize = usize::from(read_u16(bytes, 0x36).ok_or_else(truncated)?);
    let phnum = usize::from(read_u16(bytes, 0x38).ok_or_else(truncated)?);
    if phentsize < PHDR_MIN_SIZE {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    let mut ranges = Vec::new();
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .ok_or_else(|| "program header offset overflows".to_string())?;
        let bad = || format!("program header {i} lies past the end of the file");
        let p_type = read_u32(bytes, at).ok_or_else(bad)?;
        let p_flags = read_u32(bytes, at + 4).ok_or_else(bad)?;
        let vaddr = read_u64(bytes, at + 16).ok_or_else(bad)?;
        let memsz = read_u64(bytes, at + 40).ok_or_else(bad)?;
        if p_type == PT_LOAD && p_flags & PF_X != 0 && memsz > 0 {
            let end = vaddr
                .checked_add(memsz)
                .ok_or_else(|| format!("segment {i} wraps the address space"))?;
            ranges.push(vaddr..end);
        }
    }
    if ranges.is_empty() {
        return Err("no executable PT_LOAD segment".to_string());
    }
    Ok(ranges)
}

/// [`executable_ranges`] of the file at `path`.
pub fn executable_ranges_of(path: &Path) -> Result<Vec<Range<u64>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    executable_ranges(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_code_segment_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let ranges = executable_ranges_of(&exe).unwrap();
        assert!(!ranges.is_empty());
        assert!(ranges.iter().all(|r| r.start < r.end), "{ranges:x?}");
    }

    #[test]
    fn rejects_non_elf_input() {
        assert!(executable_ranges(b"MZ\x90\x00").is_err());
        assert!(executable_ranges(b"\x7fELF\x02\x01").is_err());
        assert!(executable_ranges(&[]).is_err());
    }
}
