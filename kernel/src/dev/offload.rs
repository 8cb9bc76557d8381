//! virtio-net offloads: which ones the driver negotiates, the transport
//! wrapper that asks for them, and the virtio-net header fields that carry them.
//!
//! virtio-drivers 0.13 asks for a fixed feature set (no offloads). A device
//! with a host-side vnet header (QEMU's tap backend) offers checksum and
//! segmentation offloads; QEMU's user networking offers none. [`wanted`] picks
//! from what is offered, [`OffloadTransport`] adds those bits to the features
//! virtio-drivers writes, and the driver then fills and reads the header
//! fields itself ([`TxOffload::write_header`], [`rx_checksum_vouched`]).
//! Pure: no MMIO of its own, so the host tests run the same code.

use virtio_drivers::PhysAddr;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `VIRTIO_NET_F_CSUM`: the device completes partial TCP/UDP checksums we send.
pub const F_CSUM: u64 = 1 << 0;
/// `VIRTIO_NET_F_GUEST_CSUM`: the device may tell us a received checksum is
/// already verified (`DATA_VALID`) or only partial (`NEEDS_CSUM`).
pub const F_GUEST_CSUM: u64 = 1 << 1;
/// `VIRTIO_NET_F_HOST_TSO4`: the device segments TCP/IPv4 frames we send
/// (requires `CSUM`).
pub const F_HOST_TSO4: u64 = 1 << 11;

/// Header `flags`: checksum from `csum_start` on, stored at `csum_start + csum_offset`.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// Header `flags` (receive): the device has checked the checksums.
pub const HDR_F_DATA_VALID: u8 = 2;
/// Header `gso_type` for TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// The fields below sit at the same offsets in the 10-byte legacy header and
/// the 12-byte one (which only adds `num_buffers`).
pub const HDR_LEGACY_LEN: usize = 10;
const OFF_FLAGS: usize = 0;
const OFF_GSO_TYPE: usize = 1;
const OFF_HDR_LEN: usize = 2;
const OFF_GSO_SIZE: usize = 4;
const OFF_CSUM_START: usize = 6;
const OFF_CSUM_OFFSET: usize = 8;

/// The offloads in use on one device, from the features it offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// The device completes TCP checksums (`CSUM`).
    pub tx_checksum: bool,
    /// The device vouches for received checksums (`GUEST_CSUM`).
    pub rx_checksum: bool,
    /// The device segments large TCP/IPv4 frames (`HOST_TSO4`).
    pub tso4: bool,
}

impl Offloads {
    pub fn from_features(features: u64) -> Offloads {
        Offloads {
            tx_checksum: features & F_CSUM != 0,
            rx_checksum: features & F_GUEST_CSUM != 0,
            tso4: features & F_CSUM != 0 && features & F_HOST_TSO4 != 0,
        }
    }

    pub fn features(self) -> u64 {
        let bit = |on: bool, f: u64| if on { f } else { 0 };
        bit(self.tx_checksum, F_CSUM)
            | bit(self.rx_checksum, F_GUEST_CSUM)
            | bit(self.tso4, F_HOST_TSO4)
    }
}

/// The offload feature bits the driver accepts out of `offered`: checksums
/// both ways, and TSO4 only together with `CSUM` (the spec makes it depend on
/// it). Not `GUEST_TSO*`/`MRG_RXBUF`: receive buffers stay one frame each.
pub fn wanted(offered: u64) -> Offloads {
    Offloads::from_features(offered)
}

/// A transport that adds `extra` to the features the driver writes. `extra`
/// must be a subset of what the device offered (see [`OffloadTransport::new`]).
pub struct OffloadTransport<T> {
    inner: T,
    extra: u64,
}

impl<T: Transport> OffloadTransport<T> {
    /// Reads the offered features and wraps `inner` so that the offloads in
    /// [`wanted`] are accepted too.
    pub fn new(mut inner: T) -> (OffloadTransport<T>, Offloads) {
        let offloads = wanted(inner.read_device_features());
        let extra = offloads.features();
        (OffloadTransport { inner, extra }, offloads)
    }
}

/// What the driver asks of the device for one outgoing frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOffload {
    /// Where the checksummed span starts (the TCP header), from the frame's start.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
    /// Segmentation, for a frame carrying more than one MSS.
    pub gso: Option<Gso>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Ethernet + IP + TCP header bytes, repeated in every segment.
    pub header_len: u16,
    /// TCP payload bytes per segment (the MSS).
    pub segment_size: u16,
}

impl TxOffload {
    /// Fills the offload fields of a virtio-net header (`header` is the
    /// header's bytes, at least [`HDR_LEGACY_LEN`]); false if it is shorter.
    pub fn write_header(&self, header: &mut [u8]) -> bool {
        if header.len() < HDR_LEGACY_LEN {
            return false;
        }
        let mut put = |at: usize, v: u16| header[at..at + 2].copy_from_slice(&v.to_le_bytes());
        put(OFF_CSUM_START, self.csum_start);
        put(OFF_CSUM_OFFSET, self.csum_offset);
        if let Some(gso) = self.gso {
            put(OFF_HDR_LEN, gso.header_len);
            put(OFF_GSO_SIZE, gso.segment_size);
            header[OFF_GSO_TYPE] = GSO_TCPV4;
        }
        header[OFF_FLAGS] = HDR_F_NEEDS_CSUM;
        true
    }

    /// Decodes the offload fields of a header (the fake device's view).
    pub fn read_header(header: &[u8]) -> Option<TxOffload> {
        let get = |at: usize| {
            header
                .get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        if header.get(OFF_FLAGS)? & HDR_F_NEEDS_CSUM == 0 {
            return None;
        }
        let gso = match *header.get(OFF_GSO_TYPE)? {
            0 => None,
            _ => Some(Gso {
                header_len: get(OFF_HDR_LEN)?,
                segment_size: get(OFF_GSO_SIZE)?,
            }),
        };
        Some(TxOffload {
            csum_start: get(OFF_CSUM_START)?,
            csum_offset: get(OFF_CSUM_OFFSET)?,
            gso,
        })
    }
}

/// Whether a received header says the frame's checksums need no checking:
/// verified by the device (`DATA_VALID`) or only partial because it never
/// left the host (`NEEDS_CSUM`). Only meaningful with `GUEST_CSUM` negotiated.
pub fn rx_checksum_vouched(header: &[u8]) -> bool {
    header
        .get(OFF_FLAGS)
        .is_some_and(|f| f & (HDR_F_DATA_VALID | HDR_F_NEEDS_CSUM) != 0)
}

impl<T: Transport> Transport for OffloadTransport<T> {
    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner
            .write_driver_features(driver_features | self.extra)
    }
    super::masked::forward_transport!(inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tso_needs_csum() {
        assert_eq!(wanted(F_HOST_TSO4), Offloads::default());
        let all = wanted(F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | (1 << 7) | (1 << 15));
        assert_eq!(all.features(), F_CSUM | F_GUEST_CSUM | F_HOST_TSO4);
        assert_eq!(wanted(0).features(), 0);
    }

    #[test]
    fn header_round_trips_at_spec_offsets() {
        let offload = TxOffload {
            csum_start: 34,
            csum_offset: 16,
            gso: Some(Gso {
                header_len: 66,
                segment_size: 1448,
            }),
        };
        let mut header = [0u8; 12];
        assert!(offload.write_header(&mut header));
        // virtio 1.1 §5.1.6: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (le16).
        assert_eq!(header, [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
        assert_eq!(TxOffload::read_header(&header), Some(offload));
        assert!(!offload.write_header(&mut [0u8; 9]));
        let plain = TxOffload {
            gso: None,
            ..offload
        };
        let mut header = [0u8; 10];
        assert!(plain.write_header(&mut header));
        assert_eq!(header, [1, 0, 0, 0, 0, 0, 34, 0, 16, 0]);
        assert_eq!(TxOffload::read_header(&[0u8; 10]), None);
    }

    #[test]
    fn rx_vouched_by_either_flag() {
        assert!(rx_checksum_vouched(&[HDR_F_DATA_VALID, 0]));
        assert!(rx_checksum_vouched(&[HDR_F_NEEDS_CSUM]));
        assert!(!rx_checksum_vouched(&[0, 0xff]));
        assert!(!rx_checksum_vouched(&[]));
    }
}
