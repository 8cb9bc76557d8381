//! Frames and addresses that the tests of more than one module send to the
//! guest at 10.0.2.15 from a peer at 10.0.2.2.

use std::vec::Vec;

pub(crate) const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
pub(crate) const PEER_IP: [u8; 4] = [10, 0, 2, 2];
pub(crate) const PEER_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

/// An ARP who-has for `target` from the peer at `PEER_IP`, padded to 60 bytes.
pub(crate) fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0xff; 6]);
    f.extend(PEER_MAC);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend(PEER_MAC);
    f.extend(PEER_IP);
    f.extend([0; 6]);
    f.extend(target);
    f.resize(60, 0);
    f
}
