//! Converts the PVH memory map (E820 types) into `bootloader_api` memory regions.

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};

/// E820 type of ordinary RAM.
pub const E820_RAM: u32 = 1;
pub const PAGE: u64 = 4096;

/// One entry of `hvm_memmap_table_entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl MapEntry {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// More regions than the output table holds.
    TooManyRegions,
}

fn align_up(x: u64) -> u64 {
    x.checked_add(PAGE - 1)
        .map_or(!(PAGE - 1), |v| v & !(PAGE - 1))
}
fn align_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

struct Out<'a> {
    regions: &'a mut [MemoryRegion],
    len: usize,
}

impl Out<'_> {
    fn push(&mut self, start: u64, end: u64, kind: MemoryRegionKind) -> Result<(), MapError> {
        if start >= end {
            return Ok(());
        }
        let slot = self
            .regions
            .get_mut(self.len)
            .ok_or(MapError::TooManyRegions)?;
        *slot = MemoryRegion { start, end, kind };
        self.len += 1;
        Ok(())
    }
}

/// Writes the regions for `entries` into `out`, sorted by address, and returns
/// how many were written. RAM inside a `reserved` range (the loader, the kernel,
/// page tables and boot info; the `-initrd` module; the command-line page) gets
/// that range's kind, widened to whole pages; the rest of the RAM is `Usable`,
/// shrunk to whole pages; other E820 types are passed on as `UnknownBios(type)`.
/// `reserved` is sorted by start and its ranges do not overlap.
pub fn convert(
    entries: &[MapEntry],
    reserved: &[(core::ops::Range<u64>, MemoryRegionKind)],
    out: &mut [MemoryRegion],
) -> Result<usize, MapError> {
    let mut out = Out {
        regions: out,
        len: 0,
    };
    // At most a few dozen entries: pick the next lowest each time instead of sorting in place.
    let mut last: Option<(u64, usize)> = None;
    for _ in 0..entries.len() {
        let next = entries
            .iter()
            .enumerate()
            .filter(|&(i, e)| last.is_none_or(|(a, j)| (e.addr, i) > (a, j)))
            .min_by_key(|&(i, e)| (e.addr, i));
        let Some((i, e)) = next else { break };
        last = Some((e.addr, i));
        if e.kind != E820_RAM {
            out.push(e.addr, e.end(), MemoryRegionKind::UnknownBios(e.kind))?;
            continue;
        }
        let (start, end) = (align_up(e.addr), align_down(e.end()));
        let mut cursor = start;
        for (range, kind) in reserved {
            let lo = align_down(range.start).max(cursor);
            let hi = align_up(range.end).min(end);
            if lo >= hi {
                continue;
            }
            out.push(cursor, lo, MemoryRegionKind::Usable)?;
            out.push(lo, hi, *kind)?;
            cursor = hi;
        }
        out.push(cursor, end, MemoryRegionKind::Usable)?;
    }
    Ok(out.len)
}

/// The RAM entry that contains `addr`, if any.
pub fn ram_containing(entries: &[MapEntry], addr: u64) -> Option<MapEntry> {
    entries
        .iter()
        .copied()
        .find(|e| e.kind == E820_RAM && e.addr <= addr && addr < e.end())
}

/// One past the highest RAM address.
pub fn ram_end(entries: &[MapEntry]) -> u64 {
    entries
        .iter()
        .filter(|e| e.kind == E820_RAM)
        .map(MapEntry::end)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemoryRegionKind::*;

    fn ram(addr: u64, size: u64) -> MapEntry {
        MapEntry {
            addr,
            size,
            kind: E820_RAM,
        }
    }

    fn run(entries: &[MapEntry], used: core::ops::Range<u64>) -> Vec<(u64, u64, MemoryRegionKind)> {
        run_reserved(entries, &[(used, Bootloader)])
    }

    fn run_reserved(
        entries: &[MapEntry],
        reserved: &[(core::ops::Range<u64>, MemoryRegionKind)],
    ) -> Vec<(u64, u64, MemoryRegionKind)> {
        let mut out = [MemoryRegion::empty(); 16];
        let n = convert(entries, reserved, &mut out).unwrap();
        out[..n].iter().map(|r| (r.start, r.end, r.kind)).collect()
    }

    #[test]
    fn microvm_map_with_loader_marked_used() {
        // What qboot reports for -m 128M: low RAM, a reserved hole, RAM from 1 MiB.
        let entries = [
            ram(0x10_0000, 0x7f0_0000),
            ram(0, 0x9fc00),
            MapEntry {
                addr: 0x9fc00,
                size: 0x400,
                kind: 2,
            },
        ];
        let got = run(&entries, 0x10_0000..0x35_1234);
        assert_eq!(
            got,
            vec![
                (0, 0x9f000, Usable),
                (0x9fc00, 0xa0000, UnknownBios(2)),
                (0x10_0000, 0x35_2000, Bootloader),
                (0x35_2000, 0x800_0000, Usable),
            ]
        );
    }

    #[test]
    fn used_range_in_the_middle_splits_ram() {
        let got = run(&[ram(0, 0x100_0000)], 0x20_0000..0x30_0000);
        assert_eq!(
            got,
            vec![
                (0, 0x20_0000, Usable),
                (0x20_0000, 0x30_0000, Bootloader),
                (0x30_0000, 0x100_0000, Usable)
            ]
        );
    }

    #[test]
    fn loader_command_line_and_module_are_kept_out_of_usable_ram() {
        let cmdline = UnknownBios(0x554b_434c);
        let got = run_reserved(
            &[ram(0x10_0000, 0x7f0_0000)],
            &[
                (0x10_0000..0x35_0000, Bootloader),
                (0x35_0000..0x35_1000, cmdline),
                (0x700_0123..0x7f0_0000, Bootloader),
            ],
        );
        assert_eq!(
            got,
            vec![
                (0x10_0000, 0x35_0000, Bootloader),
                (0x35_0000, 0x35_1000, cmdline),
                (0x35_1000, 0x700_0000, Usable),
                (0x700_0000, 0x7f0_0000, Bootloader),
                (0x7f0_0000, 0x800_0000, Usable),
            ]
        );
    }

    #[test]
    fn too_many_regions_is_an_error() {
        let entries: Vec<_> = (0..20).map(|i| ram(i * 0x10_0000, 0x1000)).collect();
        let mut out = [MemoryRegion::empty(); 4];
        assert_eq!(
            convert(&entries, &[], &mut out),
            Err(MapError::TooManyRegions)
        );
    }

    #[test]
    fn duplicate_addresses_are_all_kept_and_tiny_ram_dropped() {
        let entries = [
            ram(0x1000, 0x1000),
            MapEntry {
                addr: 0x1000,
                size: 0x10,
                kind: 4,
            },
            ram(0x5000, 0x10),
        ];
        let got = run(&entries, 0..0);
        assert_eq!(
            got,
            vec![(0x1000, 0x2000, Usable), (0x1000, 0x1010, UnknownBios(4))]
        );
    }

    #[test]
    fn helpers() {
        let entries = [ram(0, 0x9fc00), ram(0x10_0000, 0x100_0000)];
        assert_eq!(ram_containing(&entries, 0x20_0000), Some(entries[1]));
        assert_eq!(ram_containing(&entries, 0xa0000), None);
        assert_eq!(ram_end(&entries), 0x110_0000);
        assert_eq!(ram_end(&[]), 0);
    }
}
