//! QEMU fw_cfg over I/O ports: reads a named file (our runtime configuration
//! comes from `-fw_cfg name=opt/unikernel/config,string=...`).

use crate::arch::cpu;

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;
const NAME_LEN: usize = 56;
/// fw_cfg holds a few dozen files on microvm; more means the directory is garbage.
const MAX_FILES: u32 = 1024;

fn select(key: u16) {
    cpu::outw(SELECTOR_PORT, key);
}

fn read_into(buf: &mut [u8]) {
    for b in buf {
        *b = cpu::inb(DATA_PORT);
    }
}

fn read_be32() -> u32 {
    let mut b = [0; 4];
    read_into(&mut b);
    u32::from_be_bytes(b)
}

pub fn present() -> bool {
    select(SIGNATURE);
    let mut sig = [0; 4];
    read_into(&mut sig);
    &sig == b"QEMU"
}

/// Reads file `name` into `buf`. Returns the file's full size (which may exceed
/// what fit in `buf`), or None if fw_cfg or the file is absent.
pub fn read_file(name: &str, buf: &mut [u8]) -> Option<usize> {
    if !present() {
        return None;
    }
    select(FILE_DIR);
    let count = read_be32().min(MAX_FILES);
    for _ in 0..count {
        let size = read_be32();
        let mut select_be = [0; 2];
        read_into(&mut select_be);
        let mut reserved = [0; 2];
        read_into(&mut reserved);
        let mut file_name = [0; NAME_LEN];
        read_into(&mut file_name);
        let len = file_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if &file_name[..len] == name.as_bytes() {
            let size = size as usize;
            select(u16::from_be_bytes(select_be));
            let n = size.min(buf.len());
            read_into(&mut buf[..n]);
            return Some(size);
        }
    }
    None
}
