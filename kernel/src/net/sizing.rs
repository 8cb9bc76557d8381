//! How big the per-socket buffers are: pure arithmetic, unit tested on the host.

/// Per-socket buffers. RX holds a full request head plus pipelined requests;
/// TX is the window of response bytes in flight.
pub const SOCKET_RX_BUFFER: usize = 16 * 1024;
/// TX buffer bounds; see [`tx_buffer_for`].
pub const SOCKET_TX_BUFFER_MIN: usize = 8 * 1024;
pub const SOCKET_TX_BUFFER_MAX: usize = 256 * 1024;

/// TX buffer per socket for `sockets` sockets in a heap of `heap` bytes: the
/// largest power of two that lets all socket buffers take at most half the
/// heap, within the bounds above. The TX buffer caps the bytes in flight per
/// connection; measured under TCG through QEMU user networking, one 1.5 MiB
/// download ran at 26 responses/s with 32 KiB, 33 with 64 KiB and no faster
/// with 128 KiB. On a tap with TSO a 64 KiB window is one segmentation frame,
/// sent and then waited for (one ACK per frame): the 1.5 MiB rows against
/// nginx went from 1.1-1.9x with 64 KiB to 1.4-2.9x with 256 KiB (two runs
/// each, `scripts/bench --net tap --routes 1.5m`). A 12 MiB guest gets 16 KiB
/// and still serves 64 connections.
pub fn tx_buffer_for(heap: usize, sockets: usize) -> usize {
    let budget = heap / 2 / sockets.max(1);
    let tx = budget.saturating_sub(SOCKET_RX_BUFFER);
    if tx < SOCKET_TX_BUFFER_MIN {
        return SOCKET_TX_BUFFER_MIN;
    }
    (1usize << tx.ilog2()).min(SOCKET_TX_BUFFER_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_buffer_fits_half_the_heap() {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * KIB;
        // 128 MiB guest (64 MiB heap) and 16 MiB guest (~10 MiB heap free).
        assert_eq!(tx_buffer_for(64 * MIB, 64), SOCKET_TX_BUFFER_MAX);
        assert_eq!(tx_buffer_for(10 * MIB, 64), 64 * KIB);
        // 12 MiB guest: under 6 MiB free once the rings are allocated.
        assert_eq!(tx_buffer_for(6 * MIB, 64), 32 * KIB);
        assert_eq!(tx_buffer_for(5 * MIB, 64), 16 * KIB);
        assert_eq!(tx_buffer_for(0, 64), SOCKET_TX_BUFFER_MIN);
        assert_eq!(tx_buffer_for(64 * MIB, 0), SOCKET_TX_BUFFER_MAX);
        for heap in (0..200).map(|i| i * 512 * KIB) {
            for sockets in [1, 8, 64, 1024] {
                let tx = tx_buffer_for(heap, sockets);
                assert!(tx.is_power_of_two());
                assert!((SOCKET_TX_BUFFER_MIN..=SOCKET_TX_BUFFER_MAX).contains(&tx));
                if tx > SOCKET_TX_BUFFER_MIN {
                    assert!(
                        sockets * (tx + SOCKET_RX_BUFFER) <= heap / 2,
                        "{heap} {sockets}"
                    );
                }
            }
        }
    }
}
