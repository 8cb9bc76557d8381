//! The driver's offload paths over the fake device: what is negotiated, the
//! headers it writes for partial checksums and segmentation, the large TX
//! buffers, and received checksums the device vouches for.

use super::*;
use crate::dev::fake_device::{
    DeviceConfig, F_CSUM, F_GUEST_CSUM, F_HOST_TSO4, FakeHal, FakeKick, FakeNet, FakeTransport,
    HDR_F_DATA_VALID_FOR_TESTS, OFFERED_OFFLOADS,
};
use crate::dev::masked::MaskedTransport;
use crate::dev::offload::Gso;
use std::vec::Vec;

const N: usize = 16;
type TestDriver = Driver<FakeHal, MaskedTransport<FakeTransport>, FakeKick, N>;

fn start(config: DeviceConfig) -> (TestDriver, FakeNet) {
    let dev = FakeNet::new(config);
    let driver = TestDriver::start(MaskedTransport(dev.transport()), dev.kick())
        .expect("driver starts on the fake device");
    (driver, dev)
}

fn with_offloads(mut config: DeviceConfig) -> DeviceConfig {
    config.offered |= OFFERED_OFFLOADS;
    config
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

const CSUM_ONLY: TxOffload = TxOffload {
    csum_start: 34,
    csum_offset: 16,
    gso: None,
};

fn tso(segment_size: u16) -> TxOffload {
    TxOffload {
        gso: Some(Gso {
            header_len: 54,
            segment_size,
        }),
        ..CSUM_ONLY
    }
}

fn negotiated(dev: &FakeNet) -> u64 {
    dev.state().driver_features.expect("features written")
}

#[test]
fn offloads_are_negotiated_only_when_offered() {
    for config in [DeviceConfig::modern(), DeviceConfig::legacy()] {
        let (driver, dev) = start(config);
        assert_eq!(driver.offloads(), Offloads::default());
        assert_eq!(negotiated(&dev) & OFFERED_OFFLOADS, 0);

        let (driver, dev) = start(with_offloads(config));
        let o = driver.offloads();
        assert!(o.tx_checksum && o.rx_checksum && o.tso4, "{o:?}");
        assert_eq!(negotiated(&dev) & OFFERED_OFFLOADS, OFFERED_OFFLOADS);
        // The fake device records features accepted that it did not offer.
        assert!(dev.violations().is_empty(), "{:?}", dev.violations());

        // TSO without CSUM is not taken.
        let mut config = config;
        config.offered |= F_HOST_TSO4 | F_GUEST_CSUM;
        let (driver, dev) = start(config);
        assert!(!driver.offloads().tso4 && !driver.offloads().tx_checksum);
        assert_eq!(negotiated(&dev) & (F_CSUM | F_HOST_TSO4), 0);
    }
}

/// A partial-checksum frame and TSO frames of every size class reach the
/// device whole, each behind a header that says what to do with it; large
/// buffers return to the pool and the accounting holds throughout.
#[test]
fn offload_headers_and_large_frames_reach_the_device() {
    for config in [DeviceConfig::modern(), DeviceConfig::legacy()] {
        let (mut driver, dev) = start(with_offloads(config));
        let small = bytes(1514, 1);
        driver.transmit(small.len(), |buf| {
            buf.copy_from_slice(&small);
            ((), Some(CSUM_ONLY))
        });
        let sizes = [2048, 3000, 20_000, TSO_FRAME_MAX];
        for (i, &len) in sizes.iter().enumerate() {
            let f = bytes(len, i as u8);
            assert!(driver.can_transmit());
            driver.transmit(len, |buf| {
                buf.copy_from_slice(&f);
                ((), Some(tso(1448)))
            });
            driver
                .audit()
                .expect("audit while large buffers are posted");
        }
        let b = driver.buffers();
        assert_eq!((b.tx_posted, b.tx_large_posted), (1, sizes.len()), "{b:?}");
        assert_eq!(driver.stats.tx_errors, 0);
        assert_eq!(driver.stats.tx_segmentation_offloaded, sizes.len() as u64);
        assert_eq!(driver.stats.tx_checksum_offloaded, 1 + sizes.len() as u64);

        dev.complete_tx(usize::MAX);
        driver.reap_tx().expect("reap");
        let sent = dev.take_sent();
        let headers = core::mem::take(&mut dev.state_mut().sent_headers);
        assert_eq!(sent.len(), 1 + sizes.len());
        assert_eq!(sent[0], small);
        assert_eq!(TxOffload::read_header(&headers[0]), Some(CSUM_ONLY));
        for (i, &len) in sizes.iter().enumerate() {
            assert_eq!(sent[i + 1], bytes(len, i as u8), "TSO frame {len} bytes");
            assert_eq!(TxOffload::read_header(&headers[i + 1]), Some(tso(1448)));
        }
        let b = driver.buffers();
        assert_eq!((b.tx_posted, b.tx_free), (0, N));
        assert_eq!((b.tx_large_posted, b.tx_large_free), (0, sizes.len()));
        driver.audit().expect("audit after reaping");
        assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    }
}

/// Large buffers are capped: with all of them in flight `can_transmit` says
/// no (counted as TX-full) until the device returns one; a lowered cap frees
/// the surplus as buffers come back.
#[test]
fn large_buffers_are_capped_with_backpressure() {
    const Q: usize = 64;
    const CAP: usize = 8;
    let dev = FakeNet::new(with_offloads(DeviceConfig::modern()));
    let mut driver =
        Driver::<FakeHal, _, _, Q>::start(MaskedTransport(dev.transport()), dev.kick())
            .expect("driver starts");
    driver.limit_large_buffers(CAP);
    for round in 0..3u8 {
        let full_before = driver.stats.tx_full_events;
        let mut queued = 0;
        while driver.can_transmit() && queued < Q {
            driver.transmit(4000, |buf| {
                buf.fill(round);
                ((), Some(tso(1460)))
            });
            queued += 1;
        }
        assert_eq!(queued, CAP, "one large frame per large buffer");
        assert_eq!(driver.stats.tx_full_events, full_before + 1);
        driver.audit().expect("audit");
        dev.complete_tx(usize::MAX);
        driver.reap_tx().expect("reap");
        driver.audit().expect("audit");
        assert_eq!(driver.buffers().tx_large_free, CAP);
        assert_eq!(dev.take_sent().len(), CAP);
    }
    driver.transmit(4000, |_| ((), Some(tso(1460))));
    driver.limit_large_buffers(2);
    driver.audit().expect("audit after lowering the cap");
    dev.complete_tx(usize::MAX);
    driver.reap_tx().expect("reap");
    let b = driver.buffers();
    assert_eq!((b.tx_large_posted, b.tx_large_free), (0, 2));
    driver.audit().expect("audit");
    assert_eq!(driver.stats.tx_errors, 0);
}

/// Offloads that were not negotiated, or a frame too large for one segment
/// without segmentation, are refused and counted; every buffer comes back.
#[test]
fn offloads_not_negotiated_are_refused() {
    let (mut driver, dev) = start(DeviceConfig::modern());
    let cases: [(usize, Option<TxOffload>); 4] = [
        (1514, Some(CSUM_ONLY)),
        (3000, Some(tso(1460))),
        (3000, None),
        (TX_LARGE_LEN, None),
    ];
    for (i, (len, offload)) in cases.into_iter().enumerate() {
        let out = driver.transmit(len, |buf| (buf.len(), offload));
        assert_eq!(out, len, "fill still gets the bytes it asked for");
        assert_eq!(driver.stats.tx_errors, i as u64 + 1);
        driver.audit().expect("audit");
    }
    dev.complete_tx(usize::MAX);
    assert!(dev.take_sent().is_empty());

    let (mut driver, dev) = start(with_offloads(DeviceConfig::modern()));
    // With offloads: a frame beyond one buffer must ask for segmentation...
    driver.transmit(3000, |_| ((), Some(CSUM_ONLY)));
    driver.transmit(TX_LARGE_LEN, |_| ((), Some(tso(1460))));
    assert_eq!(driver.stats.tx_errors, 2);
    driver.audit().expect("audit");
    assert_eq!(driver.buffers().tx_large_posted, 0);
    // ...and a small one may: a little over one MSS is still two segments.
    driver.transmit(1600, |_| ((), Some(tso(1448))));
    assert_eq!(driver.stats.tx_errors, 2);
    dev.complete_tx(usize::MAX);
    let headers = core::mem::take(&mut dev.state_mut().sent_headers);
    assert_eq!(dev.take_sent().len(), 1);
    assert_eq!(TxOffload::read_header(&headers[0]), Some(tso(1448)));
}

/// DATA_VALID marks a frame as vouched for only with GUEST_CSUM negotiated.
#[test]
fn received_checksums_vouched_only_with_guest_csum() {
    for (config, expect) in [
        (with_offloads(DeviceConfig::modern()), true),
        (with_offloads(DeviceConfig::legacy()), true),
        (DeviceConfig::modern(), false),
    ] {
        for flags in [0, HDR_F_DATA_VALID_FOR_TESTS] {
            let (mut driver, dev) = start(config);
            dev.state_mut().rx_header_flags = flags;
            dev.send_to_guest([bytes(100, 7).as_slice()]);
            let frame = driver.receive().expect("receive").expect("a frame");
            assert_eq!(frame.frame(), bytes(100, 7).as_slice());
            assert_eq!(frame.checksum_vouched, expect && flags != 0, "{flags}");
            assert_eq!(
                driver.stats.rx_checksum_vouched,
                u64::from(frame.checksum_vouched)
            );
            driver.give_back(frame);
            driver.audit().expect("audit");
        }
    }
}
