//! The stack's TX watch over the real driver on the fake device, whose TX
//! completions come only when a test asks for them.

use super::*;
use crate::dev::fake_device::DeviceConfig;
use crate::dev::fake_nic::{FakeNic, Real};
use crate::net::test_frames::{GUEST_IP, arp_request};

const N: usize = 16;
const TICK_MS: u64 = 10;

fn stack() -> Stack<FakeNic<Real<N>>> {
    let config = Config::parse("ip=10.0.2.15/24\nqueue_size=16", &mut |w| {
        panic!("config warning: {w}")
    });
    let mut nic = FakeNic::<Real<N>>::new(DeviceConfig::modern());
    let port = nic.open(None).expect("the fake device opens");
    Stack::new(nic, port, &config, 0, 1, 2)
}

/// A frame arrives at `now` and the pass answers it: one TX frame in flight.
fn answer_one(s: &mut Stack<FakeNic<Real<N>>>, now: u64) {
    let request = arp_request(GUEST_IP);
    assert_eq!(s.nic().dev.send_to_guest([&request[..]]), 1);
    s.poll(now);
    assert_eq!(s.port().unwrap().stats().tx.in_flight(), 1);
}

/// Ticks every 10 ms from `from` up to `to`; the resets they caused.
fn ticks(s: &mut Stack<FakeNic<Real<N>>>, from: u64, to: u64) -> u64 {
    let before = s.device_resets;
    let mut t = from;
    while t <= to {
        s.tick_housekeeping(t);
        t += TICK_MS;
    }
    s.device_resets - before
}

#[test]
fn frames_without_completions_for_3_s_reset_the_nic() {
    let mut s = stack();
    assert_eq!(ticks(&mut s, TICK_MS, 1_000), 0);
    answer_one(&mut s, 1_005);
    // The watch started at the last tick with nothing in flight (1 s).
    assert_eq!(ticks(&mut s, 1_010, 1_000 + TX_WEDGE_MS - TICK_MS), 0);
    assert_eq!(ticks(&mut s, 1_000 + TX_WEDGE_MS, 1_000 + TX_WEDGE_MS), 1);
    assert_eq!(s.nic().opened, 2);
}

#[test]
fn a_vm_pause_is_not_time_without_completions() {
    let mut s = stack();
    assert_eq!(ticks(&mut s, TICK_MS, 1_000), 0);
    // An hour's pause; the first pass after it transmits before the tick.
    let resumed = 1_000 + 3_600_000;
    answer_one(&mut s, resumed);
    assert_eq!(
        ticks(&mut s, resumed, resumed + 2_000),
        0,
        "the pause reset the NIC"
    );
    // Frames in flight across a pause: the device was paused with them.
    s.nic().dev.complete_tx(N);
    answer_one(&mut s, resumed + 2_005);
    let resumed = resumed + 2_010 + 600_000;
    assert_eq!(
        ticks(&mut s, resumed, resumed + 2_000),
        0,
        "the pause reset the NIC"
    );
    assert_eq!(s.nic().opened, 1);
    // The watch still runs after the jump: 3 s of ticks from the first one
    // after it, with the frame still in flight, is a wedge.
    assert_eq!(
        ticks(&mut s, resumed + 2_010, resumed + TX_WEDGE_MS - TICK_MS),
        0
    );
    assert_eq!(
        ticks(&mut s, resumed + TX_WEDGE_MS, resumed + TX_WEDGE_MS),
        1
    );
    assert_eq!(s.nic().opened, 2);
}
