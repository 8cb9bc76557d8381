//! The site bundle's layout: the one definition the writer (`boot-image`,
//! which includes this file with `#[path]`) and the kernel's reader
//! ([`bundle`](super::bundle)) share. `docs/bundle-format.md` describes it in
//! prose. Every integer is little-endian; every offset counts from the start
//! of the file.

/// First bytes of every bundle. The `\r\n` catches a copy that rewrote line
/// endings (PNG's trick).
pub const MAGIC: [u8; 8] = *b"UKSITE\r\n";
/// The format this reader and writer speak. A reader refuses a larger one
/// ("from a newer builder") and a smaller one.
pub const VERSION: u32 = 1;

/// Bytes of the header; the tables follow it.
pub const HEADER_LEN: usize = 128;
/// The CRC-32 (IEEE) at [`hdr::CHECKSUM`] covers bytes `[CHECKSUM_FROM, file_len)`:
/// everything after the magic, version, header length, file length and itself.
pub const CHECKSUM_FROM: usize = 32;

/// Offsets of the header's fields.
pub mod hdr {
    /// [`MAGIC`](super::MAGIC), 8 bytes.
    pub const MAGIC: usize = 0;
    /// `u32`: [`VERSION`](super::VERSION).
    pub const VERSION: usize = 8;
    /// `u32`: [`HEADER_LEN`](super::HEADER_LEN).
    pub const HEADER_LEN: usize = 12;
    /// `u64`: the whole file's length.
    pub const FILE_LEN: usize = 16;
    /// `u32`: CRC-32 from [`CHECKSUM_FROM`](super::CHECKSUM_FROM) to the end.
    pub const CHECKSUM: usize = 24;
    /// `u32`: entries in the entry table.
    pub const ENTRY_COUNT: usize = 32;
    /// `u32`: rules in the redirect table.
    pub const REDIRECT_COUNT: usize = 36;
    /// `u32`: records in the header-set table.
    pub const HEADER_SET_COUNT: usize = 40;
    /// `u32`: records in the field table.
    pub const FIELD_COUNT: usize = 44;
    /// `u64`: offset of the entry table.
    pub const ENTRIES_OFF: usize = 48;
    /// `u64`: offset of the redirect table.
    pub const REDIRECTS_OFF: usize = 56;
    /// `u64`: offset of the header-set table.
    pub const HEADER_SETS_OFF: usize = 64;
    /// `u64`: offset of the field table.
    pub const FIELDS_OFF: usize = 72;
    /// `u64`: offset of the string section (paths, types, ETags, rules).
    pub const STRINGS_OFF: usize = 80;
    /// `u64`: length of the string section.
    pub const STRINGS_LEN: usize = 88;
    /// `u64`: offset of the data section (bodies).
    pub const DATA_OFF: usize = 96;
    /// `u64`: length of the data section.
    pub const DATA_LEN: usize = 104;
    /// `[RESERVED, HEADER_LEN)` is zero.
    pub const RESERVED: usize = 112;
}

/// A byte range of the file: `offset: u64, len: u64`.
pub const SPAN_LEN: usize = 16;

/// One served path, in the entry table sorted by path (byte order, each path
/// once). Fields are spans unless noted.
pub mod entry {
    /// The URL path, in the string section.
    pub const PATH: usize = 0;
    /// The `Content-Type` value.
    pub const CONTENT_TYPE: usize = 16;
    /// Meaningful with [`super::HAS_CACHE_CONTROL`]; otherwise zero.
    pub const CACHE_CONTROL: usize = 32;
    /// In the data section.
    pub const BODY: usize = 48;
    /// Strong ETag of the body.
    pub const ETAG: usize = 64;
    /// With [`super::HAS_GZIP`]; otherwise both zero.
    pub const GZIP: usize = 80;
    /// Strong ETag of the gzip variant.
    pub const GZIP_ETAG: usize = 96;
    /// With [`super::HAS_BR`]; otherwise both zero.
    pub const BR: usize = 112;
    /// Strong ETag of the brotli variant.
    pub const BR_ETAG: usize = 128;
    /// `u32`: index into the header-set table.
    pub const HEADER_SET: usize = 144;
    /// `u32`: `HAS_*` bits.
    pub const FLAGS: usize = 148;
    /// Bytes of one entry.
    pub const LEN: usize = 152;
}

/// Entry flag: [`entry::CACHE_CONTROL`] is set.
pub const HAS_CACHE_CONTROL: u32 = 1;
/// Entry flag: [`entry::GZIP`] and [`entry::GZIP_ETAG`] are set.
pub const HAS_GZIP: u32 = 2;
/// Entry flag: [`entry::BR`] and [`entry::BR_ETAG`] are set.
pub const HAS_BR: u32 = 4;
/// Every flag this format defines; a reader refuses others.
pub const KNOWN_FLAGS: u32 = HAS_CACHE_CONTROL | HAS_GZIP | HAS_BR;

/// One `_redirects` rule, in file order.
pub mod redirect {
    /// The pattern, in the string section.
    pub const FROM: usize = 0;
    /// The target, in the string section.
    pub const TO: usize = 16;
    /// `u16`.
    pub const STATUS: usize = 32;
    /// `u8`: 1 if the rule applies where a file exists (`!`), else 0.
    pub const FORCE: usize = 34;
    /// `[35, 40)` is zero.
    pub const LEN: usize = 40;
}

/// The `_headers` fields of some paths: a run of the field table.
pub mod header_set {
    /// `u32`: index of the first field.
    pub const FIRST: usize = 0;
    /// `u32`.
    pub const COUNT: usize = 4;
    /// Bytes of one header set.
    pub const LEN: usize = 8;
}

/// One header field: name span, value span.
pub mod field {
    /// The field name, in the string section.
    pub const NAME: usize = 0;
    /// The field value, in the string section.
    pub const VALUE: usize = 16;
    /// Bytes of one field.
    pub const LEN: usize = 32;
}

/// Bounds a reader enforces before it trusts a count.
pub const MAX_ENTRIES: u32 = 1 << 20;
/// Most `_redirects` rules a reader accepts.
pub const MAX_REDIRECTS: u32 = 1000;
/// Most header sets a reader accepts.
pub const MAX_HEADER_SETS: u32 = 1 << 20;
/// Most header fields a reader accepts.
pub const MAX_FIELDS: u32 = 1 << 20;
