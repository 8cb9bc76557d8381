//! A checked, read-only view of an ELF64 x86_64 executable.
//!
//! Every offset and size read from the file is bounds-checked before use, so a
//! corrupt kernel image gives an [`ElfError`] instead of a wild read.

use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    TooShort,
    BadMagic,
    NotElf64LittleEndian,
    NotX86_64,
    /// `ET_DYN` and others: the kernel must be linked at fixed addresses.
    NotExecutable(u16),
    BadProgramHeaders,
    BadSegment {
        index: usize,
    },
    BadSectionHeaders,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::TooShort => write!(f, "file shorter than an ELF header"),
            ElfError::BadMagic => write!(f, "no ELF magic"),
            ElfError::NotElf64LittleEndian => write!(f, "not a little-endian ELF64 file"),
            ElfError::NotX86_64 => write!(f, "not an x86_64 ELF"),
            ElfError::NotExecutable(t) => {
                write!(
                    f,
                    "ELF type {t} is not ET_EXEC (kernel must be linked static)"
                )
            }
            ElfError::BadProgramHeaders => write!(f, "program header table out of bounds"),
            ElfError::BadSegment { index } => write!(f, "segment {index} out of bounds"),
            ElfError::BadSectionHeaders => write!(f, "section header table out of bounds"),
        }
    }
}

const PT_LOAD: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PH_SIZE: usize = 56;
const SH_SIZE: usize = 64;

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_offset: usize,
    pub file_size: usize,
    pub flags: u32,
}

impl Segment {
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }
    pub fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    data: &'a [u8],
    pub entry: u64,
    phoff: usize,
    phnum: usize,
    shoff: usize,
    shnum: usize,
    shstrndx: usize,
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn table_fits(data: &[u8], off: usize, count: usize, size: usize) -> bool {
    count
        .checked_mul(size)
        .and_then(|len| off.checked_add(len))
        .is_some_and(|end| end <= data.len())
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.len() < 64 {
            return Err(ElfError::TooShort);
        }
        if data[0..4] != *b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        if data[4] != 2 || data[5] != 1 {
            return Err(ElfError::NotElf64LittleEndian);
        }
        let e_type = u16_at(data, 16).ok_or(ElfError::TooShort)?;
        if u16_at(data, 18) != Some(EM_X86_64) {
            return Err(ElfError::NotX86_64);
        }
        if e_type != ET_EXEC {
            return Err(ElfError::NotExecutable(e_type));
        }
        let field = |off| u64_at(data, off).ok_or(ElfError::TooShort);
        let half = |off| u16_at(data, off).map(usize::from).ok_or(ElfError::TooShort);
        let entry = field(24)?;
        let phoff = usize::try_from(field(32)?).map_err(|_| ElfError::BadProgramHeaders)?;
        let shoff = usize::try_from(field(40)?).map_err(|_| ElfError::BadSectionHeaders)?;
        let phentsize = half(54)?;
        let phnum = half(56)?;
        let shentsize = half(58)?;
        let shnum = half(60)?;
        let shstrndx = half(62)?;
        if phentsize != PH_SIZE || !table_fits(data, phoff, phnum, PH_SIZE) {
            return Err(ElfError::BadProgramHeaders);
        }
        if shnum != 0 && (shentsize != SH_SIZE || !table_fits(data, shoff, shnum, SH_SIZE)) {
            return Err(ElfError::BadSectionHeaders);
        }
        Ok(Elf {
            data,
            entry,
            phoff,
            phnum,
            shoff,
            shnum,
            shstrndx,
        })
    }

    /// The `PT_LOAD` segments, each checked to lie inside the file.
    pub fn load_segments(&self) -> impl Iterator<Item = Result<Segment, ElfError>> + '_ {
        (0..self.phnum).filter_map(move |index| {
            let base = self.phoff + index * PH_SIZE;
            let d = self.data;
            let p_type = u32_at(d, base)?;
            if p_type != PT_LOAD {
                return None;
            }
            Some(self.segment_at(index, base))
        })
    }

    fn segment_at(&self, index: usize, base: usize) -> Result<Segment, ElfError> {
        let d = self.data;
        let bad = ElfError::BadSegment { index };
        let flags = u32_at(d, base + 4).ok_or(bad)?;
        let offset = u64_at(d, base + 8).ok_or(bad)?;
        let vaddr = u64_at(d, base + 16).ok_or(bad)?;
        let file_size = u64_at(d, base + 32).ok_or(bad)?;
        let mem_size = u64_at(d, base + 40).ok_or(bad)?;
        let file_offset = usize::try_from(offset).map_err(|_| bad)?;
        let file_size = usize::try_from(file_size).map_err(|_| bad)?;
        let in_file = file_offset
            .checked_add(file_size)
            .is_some_and(|end| end <= d.len());
        let fits_memory = (file_size as u64) <= mem_size && vaddr.checked_add(mem_size).is_some();
        if !in_file || !fits_memory {
            return Err(bad);
        }
        Ok(Segment {
            vaddr,
            mem_size,
            file_offset,
            file_size,
            flags,
        })
    }

    /// The bytes a segment carries in the file.
    pub fn segment_data(&self, s: &Segment) -> &'a [u8] {
        // Bounds were checked when the segment was read.
        &self.data[s.file_offset..s.file_offset + s.file_size]
    }

    /// The contents of the section called `name`, if present and in bounds.
    pub fn section(&self, name: &str) -> Option<&'a [u8]> {
        let d = self.data;
        let sh = |i: usize| self.shoff + i * SH_SIZE;
        if self.shstrndx >= self.shnum {
            return None;
        }
        let strtab_off = usize::try_from(u64_at(d, sh(self.shstrndx) + 24)?).ok()?;
        let strtab_len = usize::try_from(u64_at(d, sh(self.shstrndx) + 32)?).ok()?;
        let strtab = d.get(strtab_off..strtab_off.checked_add(strtab_len)?)?;
        (0..self.shnum).find_map(|i| {
            let name_off = usize::try_from(u32_at(d, sh(i))?).ok()?;
            let rest = strtab.get(name_off..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            if &rest[..end] != name.as_bytes() {
                return None;
            }
            let off = usize::try_from(u64_at(d, sh(i) + 24)?).ok()?;
            let len = usize::try_from(u64_at(d, sh(i) + 32)?).ok()?;
            d.get(off..off.checked_add(len)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_LOAD segment and a `.cfg` section.
    fn sample() -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&0xffff_ffff_8000_1000u64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[54..56].copy_from_slice(&(PH_SIZE as u16).to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[58..60].copy_from_slice(&(SH_SIZE as u16).to_le_bytes());
        // program header
        let mut ph = vec![0u8; PH_SIZE];
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[4..8].copy_from_slice(&(PF_X | 4).to_le_bytes());
        ph[8..16].copy_from_slice(&200u64.to_le_bytes());
        ph[16..24].copy_from_slice(&0xffff_ffff_8000_0000u64.to_le_bytes());
        ph[32..40].copy_from_slice(&4u64.to_le_bytes());
        ph[40..48].copy_from_slice(&0x3000u64.to_le_bytes());
        f.extend_from_slice(&ph);
        f.resize(200, 0);
        f.extend_from_slice(&[1, 2, 3, 4]); // segment data at 200
        let strtab_off = f.len();
        f.extend_from_slice(b"\0.cfg\0.shstrtab\0");
        let cfg_off = f.len();
        f.extend_from_slice(b"CONFIG");
        let shoff = f.len();
        f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[62..64].copy_from_slice(&2u16.to_le_bytes());
        let section = |name: u32, off: usize, len: usize| {
            let mut s = vec![0u8; SH_SIZE];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            s[32..40].copy_from_slice(&(len as u64).to_le_bytes());
            s
        };
        f.extend_from_slice(&section(0, 0, 0));
        f.extend_from_slice(&section(1, cfg_off, 6));
        f.extend_from_slice(&section(6, strtab_off, 16));
        f
    }

    #[test]
    fn parses_segments_and_sections() {
        let data = sample();
        let elf = Elf::parse(&data).unwrap();
        assert_eq!(elf.entry, 0xffff_ffff_8000_1000);
        let segs: Vec<_> = elf.load_segments().collect::<Result<_, _>>().unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].vaddr, 0xffff_ffff_8000_0000);
        assert_eq!(segs[0].mem_size, 0x3000);
        assert!(segs[0].executable() && !segs[0].writable());
        assert_eq!(elf.segment_data(&segs[0]), &[1, 2, 3, 4]);
        assert_eq!(elf.section(".cfg"), Some(&b"CONFIG"[..]));
        assert_eq!(elf.section(".missing"), None);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(Elf::parse(&[0u8; 10]).unwrap_err(), ElfError::TooShort);
        let mut d = sample();
        d[0] = 0;
        assert_eq!(Elf::parse(&d).unwrap_err(), ElfError::BadMagic);
        let mut d = sample();
        d[16] = 3; // ET_DYN
        assert_eq!(Elf::parse(&d).unwrap_err(), ElfError::NotExecutable(3));
        let mut d = sample();
        d[56] = 200; // phnum past the end
        assert_eq!(Elf::parse(&d).unwrap_err(), ElfError::BadProgramHeaders);
    }

    #[test]
    fn rejects_segment_outside_file_or_larger_than_memory() {
        let mut d = sample();
        d[64 + 32..64 + 40].copy_from_slice(&100_000u64.to_le_bytes()); // filesz
        let elf = Elf::parse(&d).unwrap();
        let err = elf.load_segments().next().unwrap().unwrap_err();
        assert_eq!(err, ElfError::BadSegment { index: 0 });
        let mut d = sample();
        d[64 + 40..64 + 48].copy_from_slice(&2u64.to_le_bytes()); // memsz < filesz
        let elf = Elf::parse(&d).unwrap();
        assert!(elf.load_segments().next().unwrap().is_err());
    }

    #[test]
    fn hostile_section_table_is_not_followed() {
        let mut d = sample();
        let shoff = u64_at(&d, 40).unwrap() as usize;
        // name offset of section 1 far past the string table
        d[shoff + SH_SIZE..shoff + SH_SIZE + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let elf = Elf::parse(&d).unwrap();
        assert_eq!(elf.section(".cfg"), None);
    }
}
