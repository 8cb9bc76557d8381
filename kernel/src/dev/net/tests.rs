//! The driver over the fake device (`dev/fake_device.rs`): it must not stall,
//! lose a buffer, or panic, whatever the device does.
//!
//! A "pass" is what the main loop does each iteration (`Stack::poll`): take
//! frames until `receive` says none, give every buffer back, `refill`. A "tick"
//! is [`Driver::tick`], what `Stack::tick_housekeeping` does every timer tick.

use super::*;
use crate::dev::fake_device::{
    self as fake, DeviceConfig, F_MAC, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC, F_STATUS,
    F_VERSION_1, FakeHal, FakeKick, FakeNet, FakeTransport, USED_F_NO_NOTIFY,
};
use crate::dev::masked::MaskedTransport;
use std::vec::Vec;
use virtio_drivers::transport::DeviceStatus;

/// A small queue: wraps come sooner and the ring runs dry often.
const N: usize = 16;
type TestDriver<const Q: usize> = Driver<FakeHal, MaskedTransport<FakeTransport>, FakeKick, Q>;

fn start(config: DeviceConfig) -> (TestDriver<N>, FakeNet) {
    let dev = FakeNet::new(config);
    let driver = TestDriver::<N>::start(MaskedTransport(dev.transport()), dev.kick())
        .expect("driver starts on the fake device");
    (driver, dev)
}

/// Frame `n`: 14..=1514 bytes, content unique to `n`.
fn frame(n: u64) -> Vec<u8> {
    let len = 14 + (n.wrapping_mul(2_654_435_761) % 1501) as usize;
    let mut f: Vec<u8> = (0..len)
        .map(|i| (n.wrapping_mul(31) ^ (i as u64).wrapping_mul(7)) as u8)
        .collect();
    f[..8].copy_from_slice(&n.to_le_bytes());
    f
}

/// A minimum-size frame `n`, for the long runs.
fn small_frame(n: u64) -> Vec<u8> {
    let mut f = std::vec![(n % 251) as u8; 60];
    f[..8].copy_from_slice(&n.to_le_bytes());
    f
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Takes frames until `receive` says none (or fails), checking the buffer
/// accounting while they are lent, then gives them all back. Does not refill.
fn drain<const Q: usize>(driver: &mut TestDriver<Q>) -> (Vec<Vec<u8>>, Option<DriverError>) {
    let mut lent = Vec::new();
    let mut error = None;
    // receive() returns at most one frame per posted buffer; the bound only
    // turns a driver bug into a failure instead of a hang.
    for _ in 0..4 * Q {
        match driver.receive() {
            Ok(Some(frame)) => lent.push(frame),
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let b = driver.buffers();
    assert_eq!(b.rx_lent, lent.len(), "driver's lent count");
    assert_eq!(
        b.rx_posted + b.rx_spare + lent.len(),
        Q,
        "RX buffer lost: {b:?}"
    );
    let frames = lent.iter().map(|f| f.frame().to_vec()).collect();
    for f in lent {
        driver.give_back(f);
    }
    driver.audit().expect("audit after giving back");
    (frames, error)
}

/// After a pass: every buffer posted, the indices agree.
fn assert_all_posted<const Q: usize>(driver: &TestDriver<Q>) {
    assert_eq!(driver.rx_posted_count(), Q);
    assert_eq!(usize::from(driver.stats.rx.in_flight()), Q);
    driver.audit().expect("audit after refill");
}

fn driver_kicks(dev: &FakeNet, queue: usize) -> u64 {
    dev.state().queues[queue].driver_kicks
}

// ---------------------------------------------------------------------------
// Negotiation and the known traps (STYLE.md).

#[test]
fn event_idx_is_offered_but_not_negotiated() {
    let (driver, dev) = start(DeviceConfig::modern());
    let s = dev.state();
    assert_ne!(
        s.config.offered & F_RING_EVENT_IDX,
        0,
        "the device offers it"
    );
    let negotiated = s.driver_features.expect("features written");
    assert_eq!(negotiated & F_RING_EVENT_IDX, 0, "EVENT_IDX negotiated");
    assert_eq!(
        negotiated,
        F_MAC | F_STATUS | F_RING_INDIRECT_DESC | F_VERSION_1
    );
    assert!(s.status.contains(DeviceStatus::DRIVER_OK));
    assert_eq!(driver.mac(), fake::MAC);
    assert_eq!(
        driver.rx_posted_count(),
        N,
        "every RX buffer posted at start"
    );
}

/// Control for the test above: the mask, not the fake, removes EVENT_IDX.
#[test]
fn without_the_mask_event_idx_would_be_negotiated() {
    let dev = FakeNet::new(DeviceConfig::modern());
    let raw = VirtIONetRaw::<FakeHal, FakeTransport, N>::new(dev.transport()).expect("init");
    let negotiated = dev.state().driver_features.expect("features written");
    assert_ne!(negotiated & F_RING_EVENT_IDX, 0);
    drop(raw);
}

/// The traps are calls, so look for them in the code (comments stripped):
/// no unbounded `VirtIONetRaw::send`, no `VirtIONet` (whose `receive` drops
/// buffers on error paths), no other waiting helper; the guest's driver type
/// goes through the mask.
#[test]
fn driver_source_avoids_the_known_traps() {
    let code: std::string::String = include_str!("../net.rs")
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    for trap in [
        ".send(",
        "VirtIONet::",
        "VirtIONet<",
        "receive_wait",
        "add_notify_wait_pop",
        "spin_loop",
    ] {
        assert!(!code.contains(trap), "net.rs uses {trap}");
    }
    for needed in [
        "transmit_begin",
        "poll_transmit",
        "transmit_complete",
        "MaskedTransport<MmioTransport<'static>>",
    ] {
        assert!(code.contains(needed), "net.rs no longer uses {needed}");
    }
}

// ---------------------------------------------------------------------------
// Throughput: many more frames than the queue holds.

fn run_bursts(config: DeviceConfig, total: u64, header: usize) {
    let (mut driver, dev) = start(config);
    assert_eq!(dev.header_len(), header);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut sent, mut received, mut bytes) = (0u64, 0u64, 0u64);
    let mut passes = 0u64;
    while received < total {
        passes += 1;
        assert!(passes < 4 * total, "no progress after {received} frames");
        // A burst from the wire of up to twice the ring: the device also runs
        // dry and then waits for a kick, as QEMU does.
        let burst = (1 + rng.below(2 * N as u64 + 3)).min(total - sent);
        let frames: Vec<Vec<u8>> = (sent..sent + burst).map(frame).collect();
        dev.send_to_guest(frames.iter().map(Vec::as_slice));
        sent += burst;

        let kicks = driver_kicks(&dev, 0);
        let (got, error) = drain(&mut driver);
        assert!(error.is_none(), "{error:?}");
        for f in &got {
            assert!(*f == frame(received), "frame {received} differs");
            bytes += f.len() as u64;
            received += 1;
        }
        let reposted = driver.refill();
        assert_eq!(reposted, got.len());
        assert_all_posted(&driver);
        if !got.is_empty() {
            assert_eq!(driver_kicks(&dev, 0), kicks + 1, "re-posted without a kick");
        }
    }
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert_eq!(driver.stats.frames_in, total);
    assert_eq!(driver.stats.bytes_in, bytes);
    assert_eq!(driver.stats.rx_errors, 0);
    assert!(dev.state().backlog.is_empty());
}

#[test]
fn ten_thousand_frames_in_bursts_arrive_in_order_byte_exact() {
    run_bursts(DeviceConfig::modern(), 10_000, 12);
}

#[test]
fn legacy_device_uses_ten_byte_headers() {
    run_bursts(DeviceConfig::legacy(), 2_000, 10);
}

/// 3 × 65,536 + 1,000 frames through a 16-entry queue: every 16-bit index
/// (the driver's avail and used, the device's) wraps three times, and no pass
/// with frames waiting comes back empty.
#[test]
fn ring_indices_wrap_without_stall() {
    const TOTAL: u64 = 3 * 65_536 + 1_000;
    let (mut driver, dev) = start(DeviceConfig::modern());
    let mut rng = Rng(12345);
    let (mut sent, mut received) = (0u64, 0u64);
    while received < TOTAL {
        let burst = (1 + rng.below(N as u64)).min(TOTAL - sent);
        let frames: Vec<Vec<u8>> = (sent..sent + burst).map(small_frame).collect();
        dev.send_to_guest(frames.iter().map(Vec::as_slice));
        sent += burst;
        let (got, error) = drain(&mut driver);
        assert!(error.is_none(), "{error:?}");
        assert!(!got.is_empty(), "stalled at frame {received}");
        for f in got {
            assert!(f == small_frame(received), "frame {received} differs");
            received += 1;
        }
        driver.refill();
        assert_all_posted(&driver);
    }
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    let rx = driver.stats.rx;
    assert_eq!(rx.used_wraps, 3);
    assert_eq!(rx.avail_wraps, 3);
    let s = dev.state();
    assert_eq!(s.queues[0].used_wraps, 3);
    assert_eq!(s.queues[0].avail_wraps, 3);
    // Driver and device agree on both indices.
    assert_eq!(rx.used, s.queues[0].used_idx);
    drop(s);
    assert_eq!(rx.avail, dev.avail_idx(0));
    assert_eq!(driver.stats.frames_in, TOTAL);
}

/// The same for TX: 70,000 frames through 16 descriptors, completed by the
/// device in random batches; every frame reaches the wire once, in order.
#[test]
fn tx_indices_wrap_and_every_frame_is_sent_in_order() {
    const TOTAL: u64 = 70_000;
    let (mut driver, dev) = start(DeviceConfig::modern());
    let mut rng = Rng(777);
    let (mut queued, mut on_wire) = (0u64, 0u64);
    while on_wire < TOTAL {
        while queued < TOTAL && driver.can_transmit() {
            let f = small_frame(queued);
            driver.transmit(f.len(), |buf| (buf.copy_from_slice(&f), None));
            queued += 1;
        }
        dev.complete_tx(1 + rng.below(N as u64) as usize);
        driver.reap_tx().expect("reap");
        for f in dev.take_sent() {
            assert!(f == small_frame(on_wire), "TX frame {on_wire} differs");
            on_wire += 1;
        }
        driver.audit().expect("audit");
        // Completions the device has not seen kicked for: the tick re-kicks.
        driver.kick_tx_if_pending();
    }
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert_eq!(driver.stats.tx.used_wraps, 1);
    assert_eq!(driver.stats.tx.avail_wraps, 1);
    assert_eq!(driver.stats.frames_out, TOTAL);
    assert_eq!(driver.stats.tx_errors, 0);
}

// ---------------------------------------------------------------------------
// Stalls: lost notifications, a ring the device used up.

/// The predecessor's permanent stall: the device used every RX buffer and
/// waits for a kick; its `used.flags` still says "no notify" (a stale
/// suppression flag, which virtio-drivers reads without a full fence). One pass
/// re-posts everything and the driver's own kick wakes the device.
#[test]
fn ring_used_up_is_reposted_and_kicked_in_one_pass() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    dev.set_used_flags(0, USED_F_NO_NOTIFY);
    let frames: Vec<Vec<u8>> = (0..3 * N as u64).map(frame).collect();
    assert_eq!(dev.send_to_guest(frames.iter().map(Vec::as_slice)), N);
    assert!(dev.state().queues[0].waiting_for_kick, "device ran dry");
    let transport_kicks = dev.state().queues[0].transport_kicks;
    let kicks = driver_kicks(&dev, 0);

    let (got, error) = drain(&mut driver);
    assert!(error.is_none());
    assert_eq!(got, frames[..N]);
    assert_eq!(driver.refill(), N);
    assert_all_posted(&driver);
    assert_eq!(driver_kicks(&dev, 0), kicks + 1);
    assert_eq!(
        dev.state().queues[0].transport_kicks,
        transport_kicks,
        "virtio-drivers kicked despite NO_NOTIFY: this test no longer shows the driver's kick"
    );
    assert!(!dev.state().queues[0].waiting_for_kick, "device not woken");
    assert_eq!(dev.flush_rx(), N, "device delivers again");
    let (got, _) = drain(&mut driver);
    assert_eq!(got, frames[N..2 * N]);
}

/// The device never interrupts (the fake has no interrupt at all) and loses
/// every notification until it "wakes"; the main loop only polls, and ticks
/// every `TICK` iterations. While deaf, RX stops after one ring's worth and TX
/// is not taken; after waking, service resumes within one tick for TX (frames
/// in flight are kicked every tick) and within the RX kick backstop for RX
/// (the tick's own RX kicks were lost too), with nothing lost or reordered.
#[test]
fn lost_notifications_cost_at_most_one_tick() {
    const TICK: u64 = 10;
    let (mut driver, dev) = start(DeviceConfig::modern());
    let total = 5 * N as u64;
    let frames: Vec<Vec<u8>> = (0..total).map(frame).collect();
    dev.state_mut().deaf = true;
    assert_eq!(dev.send_to_guest(frames.iter().map(Vec::as_slice)), N);
    let out: Vec<Vec<u8>> = (1000..1003).map(frame).collect();
    for f in &out {
        assert!(driver.can_transmit());
        driver.transmit(f.len(), |buf| (buf.copy_from_slice(f), None));
    }

    let mut received = Vec::new();
    let mut iteration = 0u64;
    let mut main_loop = |driver: &mut TestDriver<N>, received: &mut Vec<Vec<u8>>| {
        iteration += 1;
        dev.flush_rx();
        dev.complete_tx(N);
        driver.reap_tx().expect("reap");
        let (got, error) = drain(driver);
        assert!(error.is_none());
        received.extend(got);
        driver.refill();
        assert_all_posted(driver);
        if iteration.is_multiple_of(TICK) {
            driver.tick();
        }
    };
    for _ in 0..5 * TICK {
        main_loop(&mut driver, &mut received);
    }
    assert_eq!(
        received,
        frames[..N],
        "only the first ring's worth while deaf"
    );
    assert!(dev.take_sent().is_empty(), "TX taken without a kick");
    assert!(dev.state().queues[0].lost_kicks > 0);
    assert!(dev.state().queues[1].lost_kicks > 0);

    dev.state_mut().deaf = false;
    let mut sent = Vec::new();
    for _ in 0..TICK + 1 {
        main_loop(&mut driver, &mut received);
        sent.extend(dev.take_sent());
    }
    assert_eq!(sent, out, "TX did not resume within a tick");
    let backstop = u64::from(RX_KICK_BACKSTOP_TICKS) * TICK;
    for _ in 0..backstop + total / N as u64 + 1 {
        main_loop(&mut driver, &mut received);
    }
    assert_eq!(
        received, frames,
        "RX did not resume within the kick backstop"
    );
    assert_eq!(driver.buffers().tx_free, N);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

/// One lost RX kick (the refill's) costs exactly one tick: the tick sees
/// buffers posted since its last kick and kicks again.
#[test]
fn a_lost_rx_kick_costs_one_tick() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    let frames: Vec<Vec<u8>> = (0..2 * N as u64).map(frame).collect();
    driver.tick();
    // The ring runs dry; the next frames wait in the device for a kick.
    assert_eq!(dev.send_to_guest(frames[..N].iter().map(Vec::as_slice)), N);
    assert_eq!(dev.send_to_guest(frames[N..].iter().map(Vec::as_slice)), 0);
    dev.state_mut().deaf = true;
    let (got, error) = drain(&mut driver);
    assert!(error.is_none());
    assert_eq!(got, frames[..N]);
    driver.refill();
    assert_all_posted(&driver);
    dev.state_mut().deaf = false;
    assert_eq!(dev.flush_rx(), 0, "the device saw a kick that was lost");
    driver.tick();
    assert_eq!(dev.flush_rx(), N, "the tick did not kick RX");
    let (got, _) = drain(&mut driver);
    assert_eq!(got, frames[N..]);
}

/// TX never spins: with every descriptor busy `can_transmit` says no (and
/// counts it), a transmit anyway is dropped and counted, and completions free
/// the buffers again.
#[test]
fn full_tx_queue_refuses_without_spinning_and_recovers() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    let frames: Vec<Vec<u8>> = (0..N as u64 + 5).map(frame).collect();
    for f in &frames[..N] {
        assert!(driver.can_transmit());
        driver.transmit(f.len(), |buf| (buf.copy_from_slice(f), None));
    }
    assert!(!driver.can_transmit());
    assert!(!driver.can_transmit());
    assert!(driver.tx_blocked());
    // One event for the ring filling up, however often it is asked.
    assert_eq!(driver.stats.tx_full_events, 1);
    assert_eq!(driver.reap_tx().expect("reap"), 0, "nothing completed yet");
    // Called anyway: dropped and counted; `fill` still gets the bytes it asked for.
    assert_eq!(driver.transmit(100, |buf| (buf.len(), None)), 100);
    assert_eq!(driver.stats.tx_errors, 1);
    assert_eq!(driver.stats.frames_out, N as u64);
    let b = driver.buffers();
    assert_eq!((b.tx_posted, b.tx_free), (N, 0));
    driver.audit().expect("audit while full");

    assert_eq!(dev.complete_tx(5), 5);
    assert_eq!(driver.reap_tx().expect("reap"), 5);
    for f in &frames[N..] {
        assert!(driver.can_transmit());
        driver.transmit(f.len(), |buf| (buf.copy_from_slice(f), None));
    }
    assert!(!driver.can_transmit());
    assert_eq!(dev.complete_tx(2 * N), N);
    assert_eq!(driver.reap_tx().expect("reap"), N);
    assert_eq!(dev.take_sent(), frames);
    let b = driver.buffers();
    assert_eq!((b.tx_posted, b.tx_free), (0, N));
    driver.audit().expect("audit");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

// ---------------------------------------------------------------------------
// Hostile used entries (TESTING.md B13).

/// Used lengths 0, 1 and one short of the header: each buffer is recycled and
/// counted, nothing is handed to the stack, and the next frame arrives.
#[test]
fn used_length_shorter_than_header_is_counted_and_recycled() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    let header = dev.header_len() as u32;
    for len in [0, 1, header - 1] {
        let head = dev.take_rx();
        dev.complete(0, head, len);
    }
    dev.send_to_guest([frame(1).as_slice()]);
    let (got, error) = drain(&mut driver);
    assert!(error.is_none());
    assert_eq!(got, [frame(1)]);
    assert_eq!(driver.stats.rx_errors, 3);
    assert_eq!(driver.stats.frames_in, 1);
    assert_eq!(driver.stats.bytes_in, frame(1).len() as u64);
    assert_eq!(driver.refill(), 4);
    assert_all_posted(&driver);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

/// Used lengths past the end of the buffer (by one byte, and `u32::MAX`):
/// recycled and counted, not handed out, not counted as received bytes.
#[test]
fn used_length_beyond_buffer_is_counted_and_recycled() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    for len in [RX_BUFFER_LEN as u32 + 1, u32::MAX] {
        let head = dev.take_rx();
        dev.complete(0, head, len);
    }
    dev.send_to_guest([frame(2).as_slice()]);
    let (got, error) = drain(&mut driver);
    assert!(error.is_none());
    assert_eq!(got, [frame(2)]);
    assert_eq!(driver.stats.rx_errors, 2);
    assert_eq!(driver.stats.frames_in, 1);
    assert_eq!(driver.stats.bytes_in, frame(2).len() as u64);
    assert_eq!(driver.refill(), 3);
    assert_all_posted(&driver);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

/// A used entry naming a buffer that is not posted — an id beyond the queue
/// size, or the token of a buffer lent to the stack — is reported as
/// `UnknownToken` and not consumed: virtio-drivers has no way to skip it
/// (popping it would recycle a free descriptor or index past its table), so
/// every later pass reports it again until the device is reset. No panic, no
/// buffer lost, nothing handed out meanwhile.
#[test]
fn used_id_not_posted_is_surfaced_and_nothing_is_lost() {
    for id in [N as u32, N as u32 + 3, 0xffff, u32::MAX] {
        let (mut driver, dev) = start(DeviceConfig::modern());
        dev.push_used_raw(0, id, 100);
        for _ in 0..3 {
            let (got, error) = drain(&mut driver);
            assert!(got.is_empty());
            match error {
                Some(DriverError::UnknownToken { queue: 0, token }) => {
                    assert_eq!(token, id as u16)
                }
                other => panic!("id {id:#x}: {other:?}"),
            }
            driver.refill();
            assert_all_posted(&driver);
        }
        assert_eq!(driver.stats.frames_in, 0);
    }

    // The token of a buffer the stack still holds (never made available again).
    let (mut driver, dev) = start(DeviceConfig::modern());
    dev.send_to_guest([frame(0).as_slice()]);
    let held = driver.receive().expect("receive").expect("a frame");
    let token = (0..N as u16)
        .find(|&t| {
            driver
                .rx_posted
                .get(usize::from(t))
                .is_some_and(Option::is_none)
        })
        .expect("the lent buffer's slot is empty");
    dev.push_used_raw(0, u32::from(token), 100);
    for _ in 0..3 {
        assert!(matches!(
            driver.receive(),
            Err(DriverError::UnknownToken { queue: 0, token: t }) if t == token
        ));
        let b = driver.buffers();
        assert_eq!(b.rx_posted + b.rx_spare + b.rx_lent, N);
        assert_eq!(b.rx_lent, 1);
        driver.audit().expect("audit");
    }
    assert_eq!(held.frame(), frame(0).as_slice());
    driver.give_back(held);
    driver.audit().expect("audit");
}

/// virtio-drivers keeps only the low 16 bits of a used id, so `0x1_0000 + t`
/// completes posted buffer `t`: consumed like an out-of-order completion, its
/// length still checked. Nothing lost, no panic.
#[test]
fn used_id_above_16_bits_aliases_a_posted_token() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    let header = dev.header_len() as u32;
    dev.push_used_raw(0, 0x1_0000 + 3, header + 60);
    let (got, error) = drain(&mut driver);
    assert!(error.is_none());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), 60);
    assert_eq!(driver.refill(), 1);
    assert_all_posted(&driver);
}

/// `used.idx` moved N + 5 past what the device wrote: the stale entries that
/// name posted buffers look like completions and are consumed (lengths
/// checked); the first naming a buffer already taken surfaces `UnknownToken`.
/// The rings are then out of step with the device, which flags the extra
/// buffers it is offered (QEMU marks itself broken the same way): recovery
/// needs a device reset. Meanwhile no panic and no buffer lost.
#[test]
fn used_idx_jump_past_queue_size_is_surfaced_and_nothing_is_lost() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    // Fill the used ring with real (soon stale) entries first.
    for n in 0..2 * N as u64 + 7 {
        dev.send_to_guest([frame(n).as_slice()]);
        let (got, _) = drain(&mut driver);
        assert_eq!(got, [frame(n)]);
        driver.refill();
    }
    let used = dev.state().queues[0].used_idx;
    dev.set_used_idx(0, used.wrapping_add(N as u16 + 5));
    let mut surfaced = 0;
    let mut consumed = 0;
    for _ in 0..4 {
        let (got, error) = drain(&mut driver);
        consumed += got.len();
        if let Some(e) = error {
            assert!(
                matches!(e, DriverError::UnknownToken { queue: 0, .. }),
                "{e:?}"
            );
            surfaced += 1;
        }
        driver.refill();
        assert_all_posted(&driver);
    }
    assert!(surfaced >= 1, "the jump was never reported");
    assert_eq!(consumed, N + 5, "stale entries consumed exactly once");
    assert_eq!(driver.stats.rx.used, used.wrapping_add(N as u16 + 5));
    // The device sees more buffers offered than its queue holds: it needs a reset.
    dev.send_to_guest([frame(99).as_slice()]);
    assert!(!dev.violations().is_empty());
    assert!(
        dev.state()
            .status
            .contains(virtio_drivers::transport::DeviceStatus::DEVICE_NEEDS_RESET)
    );
}

/// TX: a completion for a token that is not in flight is reported, nothing
/// reclaimed twice, no buffer lost.
#[test]
fn tx_used_id_not_posted_is_surfaced() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    for n in 0..2 {
        let f = frame(n);
        driver.transmit(f.len(), |buf| (buf.copy_from_slice(&f), None));
    }
    dev.push_used_raw(1, 7, 0);
    for _ in 0..2 {
        assert!(matches!(
            driver.reap_tx(),
            Err(DriverError::UnknownToken { queue: 1, token: 7 })
        ));
        let b = driver.buffers();
        assert_eq!((b.tx_posted, b.tx_free), (2, N - 2));
        driver.audit().expect("audit");
    }
}
