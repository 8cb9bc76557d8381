//! What of the kernel ELF goes into the image: only what the PVH loader reads.
//!
//! The loader needs the ELF header, the program headers, the bytes of the
//! loadable segments and the `.bootloader-config` section. Debug info (kept in
//! `kernel.elf` beside the image for `scripts/symbolize`) and the symbol tables
//! would otherwise be copied into guest memory at every boot.

const PT_LOAD: u32 = 1;
const SHT_STRTAB: u32 = 3;
const PH_SIZE: usize = 56;
const SH_SIZE: usize = 64;
const CONFIG_SECTION: &str = ".bootloader-config";

fn field<const N: usize>(elf: &[u8], offset: usize) -> Result<[u8; N], String> {
    offset
        .checked_add(N)
        .and_then(|end| elf.get(offset..end))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("kernel ELF truncated at offset {offset}"))
}
fn u16_at(elf: &[u8], offset: usize) -> Result<usize, String> {
    Ok(u16::from_le_bytes(field(elf, offset)?).into())
}
fn u32_at(elf: &[u8], offset: usize) -> Result<u32, String> {
    Ok(u32::from_le_bytes(field(elf, offset)?))
}
fn u64_at(elf: &[u8], offset: usize) -> Result<usize, String> {
    usize::try_from(u64::from_le_bytes(field(elf, offset)?))
        .map_err(|_| format!("kernel ELF offset at {offset} does not fit"))
}

/// Index and header offset of the section called `name`.
fn find_section(elf: &[u8], name: &str) -> Result<usize, String> {
    let shoff = u64_at(elf, 40)?;
    let shnum = u16_at(elf, 60)?;
    let shstrndx = u16_at(elf, 62)?;
    let header = |i: usize| shoff + i * SH_SIZE;
    let strtab = u64_at(elf, header(shstrndx) + 24)?;
    for i in 0..shnum {
        let name_at = strtab + u32_at(elf, header(i))? as usize;
        let candidate = elf.get(name_at..).unwrap_or_default();
        let end = candidate
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(candidate.len());
        if &candidate[..end] == name.as_bytes() {
            return Ok(header(i));
        }
    }
    Err(format!(
        "kernel ELF has no {name} section (not a bootloader_api kernel?)"
    ))
}

/// The kernel ELF cut down to its loadable bytes plus a three-entry section table
/// (null, `.bootloader-config`, `.shstrtab`).
pub fn loadable_kernel(elf: &[u8]) -> Result<Vec<u8>, String> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("kernel is not a little-endian ELF64 file".into());
    }
    let phoff = u64_at(elf, 32)?;
    let phnum = u16_at(elf, 56)?;
    let mut end = phoff + phnum * PH_SIZE;
    for i in 0..phnum {
        let ph = phoff + i * PH_SIZE;
        if u32_at(elf, ph)? == PT_LOAD {
            end = end.max(u64_at(elf, ph + 8)? + u64_at(elf, ph + 32)?);
        }
    }
    let config_header = find_section(elf, CONFIG_SECTION)?;
    let config_end = u64_at(elf, config_header + 24)? + u64_at(elf, config_header + 32)?;
    if end > elf.len() || config_end > end {
        return Err("kernel ELF: segments or config section outside the loadable bytes".into());
    }

    let mut out = elf[..end].to_vec();
    let names = format!("\0{CONFIG_SECTION}\0.shstrtab\0");
    let strtab_offset = out.len();
    out.extend_from_slice(names.as_bytes());
    out.resize(out.len().next_multiple_of(8), 0);
    let shoff = out.len();
    out.extend_from_slice(&[0; SH_SIZE]);
    let mut config = elf[config_header..config_header + SH_SIZE].to_vec();
    config[0..4].copy_from_slice(&1u32.to_le_bytes());
    config[40..44].copy_from_slice(&0u32.to_le_bytes()); // sh_link: no other sections
    out.extend_from_slice(&config);
    let mut strtab = [0u8; SH_SIZE];
    strtab[0..4].copy_from_slice(&(2 + CONFIG_SECTION.len() as u32).to_le_bytes());
    strtab[4..8].copy_from_slice(&SHT_STRTAB.to_le_bytes());
    strtab[24..32].copy_from_slice(&(strtab_offset as u64).to_le_bytes());
    strtab[32..40].copy_from_slice(&(names.len() as u64).to_le_bytes());
    out.extend_from_slice(&strtab);
    out[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    out[58..60].copy_from_slice(&(SH_SIZE as u16).to_le_bytes());
    out[60..62].copy_from_slice(&3u16.to_le_bytes());
    out[62..64].copy_from_slice(&2u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ELF64 with one PT_LOAD (file bytes 0x100..0x140, holding the config at
    /// 0x120), then "debug info" and the section table after it.
    fn sample() -> Vec<u8> {
        let mut f = vec![0u8; 0x100];
        f[0..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&0x40u64.to_le_bytes());
        f.extend((0..0x40u8).map(|b| b ^ 0x5a));
        f[0x120..0x128].copy_from_slice(b"CONFIG!!");
        f.extend(vec![0xdd; 4096]); // debug sections
        let strtab_at = f.len();
        f.extend_from_slice(b"\0.debug_info\0.bootloader-config\0.shstrtab\0");
        let shoff = f.len();
        let section = |name: u32, off: usize, len: usize| {
            let mut s = vec![0u8; SH_SIZE];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            s[32..40].copy_from_slice(&(len as u64).to_le_bytes());
            s
        };
        f.extend(section(0, 0, 0));
        f.extend(section(1, 0x140, 4096));
        f.extend(section(13, 0x120, 8));
        f.extend(section(32, strtab_at, 42));
        f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[60..62].copy_from_slice(&4u16.to_le_bytes());
        f[62..64].copy_from_slice(&3u16.to_le_bytes());
        f
    }

    #[test]
    fn keeps_segments_and_config_drops_the_rest() {
        let elf = sample();
        let packed = loadable_kernel(&elf).unwrap();
        // 0x140 loadable bytes + 32 of names + three 64-byte section headers.
        assert_eq!(packed.len(), 0x140 + 32 + 3 * SH_SIZE);
        assert_eq!(packed[0x100..0x140], elf[0x100..0x140]);
        let config = find_section(&packed, CONFIG_SECTION).unwrap();
        assert_eq!(u64_at(&packed, config + 24).unwrap(), 0x120);
        assert_eq!(u64_at(&packed, config + 32).unwrap(), 8);
        assert_eq!(u16_at(&packed, 60).unwrap(), 3);
        // Packing twice changes nothing more.
        assert_eq!(loadable_kernel(&packed).unwrap(), packed);
    }

    #[test]
    fn refuses_what_the_loader_could_not_use() {
        assert!(loadable_kernel(b"not an elf").is_err());
        let mut no_config = sample();
        let len = no_config.len();
        no_config[len - 2 * SH_SIZE..len - 2 * SH_SIZE + 4].copy_from_slice(&1u32.to_le_bytes());
        assert!(
            loadable_kernel(&no_config)
                .unwrap_err()
                .contains("no .bootloader-config")
        );
        let mut truncated = sample();
        truncated.truncate(0x130);
        assert!(loadable_kernel(&truncated).is_err());
    }
}
