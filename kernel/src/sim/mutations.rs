//! Bugs the simulator must catch, put back in test code only: each is a
//! wrapper around a production type (a NIC [`Port`] under [`Hooked`], the
//! driver's kick and transport, the clock the main loop reads, the app's
//! handler), never a switch inside one. The tests at the end run the simulator with each and
//! require a failure within the CI budget of one seed, printing the seed and
//! virtual time.
//!
//! The handler is reached through the service's app ([`Service::with_app`]):
//! a [`MutantApp`] holds the real [`Web`] and hands each connection its real
//! routes inside a [`MutantHandler`]. What the connection does with a
//! response (head, body by offset, resumed after partial sends) stays
//! `http::Conn`'s own; the offsets a mutation can get wrong are the ones the
//! app computes, those of a range.
//!
//! [`Service::with_app`]: crate::service::Service::with_app

use super::world::Target;
use crate::app::routes::Scope;
use crate::app::{Body, Handler, Request, Response, Stats};
use crate::dev::fake_device::{FakeHal, FakeNet, FakeTransport};
use crate::dev::fake_nic::{FakeDriver, Opener, Real};
use crate::dev::hooked::{Hooked, PortHooks};
use crate::dev::masked::MaskedTransport;
use crate::dev::net::{Driver, DriverError, Kick, RxFrame};
use crate::dev::port::Port;
use crate::http::range::{ByteRange, ContentRange};
use crate::http::response::status;
use crate::http::{ConnEvent, Exchange};
use crate::net::server::{App, ConnHandler, ServerCounters};
use crate::service::{Serves, Web};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Opens the real driver inside mutation `M` (a fresh one on every reset).
pub struct Mutated<const N: usize, M>(pub fn() -> M);

impl<const N: usize, M: PortHooks> Opener for Mutated<N, M> {
    type Port = Hooked<FakeDriver<N>, M>;
    fn open(&mut self, dev: &FakeNet) -> Result<Self::Port, DriverError> {
        let port = Real::<N>.open(dev)?;
        Ok(Hooked::new(port, (self.0)()))
    }
}

/// Only the newest used entry is read: when several frames are waiting, the
/// older ones are handed straight back, their frames lost.
#[derive(Default)]
pub struct NewestOnly;

impl PortHooks for NewestOnly {
    fn receive<P: Port>(&mut self, port: &mut P) -> Result<Option<RxFrame>, DriverError> {
        let mut newest = None;
        for _ in 0..port.queue_size() {
            match port.receive()? {
                Some(frame) => {
                    if let Some(older) = newest.replace(frame) {
                        port.give_back(older);
                    }
                }
                None => break,
            }
        }
        Ok(newest)
    }
}

/// RX buffers are never re-posted once the device returned them.
#[derive(Default)]
pub struct NoRepost {
    started: bool,
}

impl PortHooks for NoRepost {
    fn refill<P: Port>(&mut self, port: &mut P) -> usize {
        // The driver posts its buffers once when it starts.
        if self.started {
            return 0;
        }
        self.started = true;
        port.refill()
    }
}

/// The used index compared without wrapping: once the 16-bit RX used index
/// wraps past 65535 it looks older than the last one seen, and the driver
/// sees no more work.
#[derive(Default)]
pub struct NonWrappingIndex {
    highest: u16,
}

impl PortHooks for NonWrappingIndex {
    fn receive<P: Port>(&mut self, port: &mut P) -> Result<Option<RxFrame>, DriverError> {
        let used = port.stats().rx.used;
        if used < self.highest {
            return Ok(None);
        }
        self.highest = used;
        port.receive()
    }
}

/// TX is retried only when the device notifies a completion, which this
/// device (TX notifications suppressed, as after ENOBUFS) never does: once
/// the ring is full nothing is reaped again.
#[derive(Default)]
pub struct TxWaitsForNotification {
    waiting: bool,
}

impl PortHooks for TxWaitsForNotification {
    fn reap_tx<P: Port>(&mut self, port: &mut P) -> Result<usize, DriverError> {
        if self.waiting {
            return Ok(0);
        }
        port.reap_tx()
    }
    fn can_transmit<P: Port>(&mut self, port: &mut P) -> bool {
        if self.waiting {
            return false;
        }
        let ok = port.can_transmit();
        self.waiting = !ok;
        ok
    }
}

/// The RX kick dropped whenever the device is waiting for one (it found the
/// ring empty): the refill after the ring ran dry never reaches it. A
/// wrapper around both ways the driver notifies: its own kick and
/// virtio-drivers' notify through the transport.
pub struct DryKick(pub FakeNet);

fn device_waits(dev: &FakeNet, queue: u16) -> bool {
    queue == 0 && dev.state().queues[0].waiting_for_kick
}

impl Kick for DryKick {
    fn notify(&self, queue: u16) {
        if !device_waits(&self.0, queue) {
            self.0.kick().notify(queue);
        }
    }
}

pub struct DryTransport(pub FakeTransport, pub FakeNet);

impl Transport for DryTransport {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features()
    }
    fn write_driver_features(&mut self, f: u64) {
        self.0.write_driver_features(f)
    }
    fn max_queue_size(&mut self, q: u16) -> u32 {
        self.0.max_queue_size(q)
    }
    fn notify(&mut self, queue: u16) {
        if !device_waits(&self.1, queue) {
            self.0.notify(queue)
        }
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, s: DeviceStatus) {
        self.0.set_status(s)
    }
    fn set_guest_page_size(&mut self, s: u32) {
        self.0.set_guest_page_size(s)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(&mut self, q: u16, size: u32, d: PhysAddr, a: PhysAddr, u: PhysAddr) {
        self.0.queue_set(q, size, d, a, u)
    }
    fn queue_unset(&mut self, q: u16) {
        self.0.queue_unset(q)
    }
    fn queue_used(&mut self, q: u16) -> bool {
        self.0.queue_used(q)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V, Error> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<(), Error> {
        self.0.write_config_space(offset, value)
    }
}

pub struct DryKickOpener<const N: usize>;

impl<const N: usize> Opener for DryKickOpener<N> {
    type Port = Driver<FakeHal, MaskedTransport<DryTransport>, DryKick, N>;
    fn open(&mut self, dev: &FakeNet) -> Result<Self::Port, DriverError> {
        Driver::start(
            MaskedTransport(DryTransport(dev.transport(), dev.clone())),
            DryKick(dev.clone()),
        )
    }
}

/// The main loop reads the clock only when the NIC interrupts: a deadline
/// of a connection that receives nothing (a slowloris, an idle one) never
/// sees its time come.
pub struct ClockOnInterrupt<T> {
    pub guest: T,
    now: u64,
}

impl<T> ClockOnInterrupt<T> {
    pub fn new(guest: T) -> Self {
        ClockOnInterrupt { guest, now: 0 }
    }
}

impl<T: Target> Target for ClockOnInterrupt<T> {
    fn pass(&mut self, now: u64, tick: u64, irq: bool) -> bool {
        if irq {
            self.now = now;
        }
        self.guest.pass(self.now, tick, irq)
    }
    fn rx_posted(&mut self) -> Option<usize> {
        self.guest.rx_posted()
    }
    fn queue_size(&self) -> usize {
        self.guest.queue_size()
    }
    fn is_idle(&mut self) -> bool {
        self.guest.is_idle()
    }
    fn next_deadline(&mut self, now: u64) -> Option<u64> {
        self.guest.next_deadline(now)
    }
    fn stats(&mut self, now: u64) -> Stats {
        self.guest.stats(now)
    }
}

/// What a mutation changes in the app's answers; the real handler answers
/// unless it says otherwise.
pub trait ResponseMutation {
    fn handle<H: Handler>(&mut self, handler: &mut H, req: &Request) -> Response {
        handler.handle(req)
    }
}

/// The real app with a mutation on its handlers.
pub struct MutantApp<M> {
    web: Web,
    mutation: M,
}

impl<M: ResponseMutation> MutantApp<M> {
    pub fn new(web: Web, mutation: M) -> Self {
        MutantApp { web, mutation }
    }
}

impl<M: ResponseMutation> App for MutantApp<M> {
    type Scope = Scope;
    type Handler<'a>
        = MutantHandler<'a, M>
    where
        M: 'a;

    fn handler(&mut self, scope: Scope, counters: &ServerCounters) -> MutantHandler<'_, M> {
        MutantHandler {
            real: self.web.handler(scope, counters),
            mutation: &mut self.mutation,
        }
    }
}

impl<M: ResponseMutation> Serves for MutantApp<M> {
    fn web(&self) -> &Web {
        &self.web
    }
    fn web_mut(&mut self) -> &mut Web {
        &mut self.web
    }
}

/// A connection's real handler, its answers passed through a mutation.
pub struct MutantHandler<'a, M> {
    real: <Web as App>::Handler<'a>,
    mutation: &'a mut M,
}

impl<M: ResponseMutation> Handler for MutantHandler<'_, M> {
    fn handle(&mut self, req: &Request) -> Response {
        self.mutation.handle(&mut self.real, req)
    }
    fn on_response(&mut self, exchange: &Exchange<'_>) {
        self.real.on_response(exchange)
    }
    fn on_sent(&mut self, exchange: &Exchange<'_>) {
        self.real.on_sent(exchange)
    }
}

impl<M: ResponseMutation> ConnHandler for MutantHandler<'_, M> {
    fn on_event(&mut self, event: ConnEvent, current: Option<&Exchange<'_>>) {
        self.real.on_event(event, current)
    }
    fn on_unfinished(&mut self, exchange: &Exchange<'_>) {
        self.real.on_unfinished(exchange)
    }
}

/// A range resolved without checking that it starts inside the
/// representation (`http::range::evaluate` without its `first < len`): a
/// `bytes=3000-3999` of a 1,000-byte file is cut to end at byte 999, and the
/// part, taken by offset and length, has length `last - first + 1`
/// ([`ByteRange::len`]), which underflows. With overflow checks that is a
/// panic; without, a 206 with an empty part where a 416 was due. The rest is
/// the site's path: the representation it selected (a request without the
/// `Range`), the part of it, the 206's fields. Ranges the site did not act
/// on (no 206 or 416: `If-Range` failed, a 304) and forms other than one
/// `bytes=first-last` are answered by the real handler.
#[derive(Default)]
pub struct RangeStartUnchecked;

impl ResponseMutation for RangeStartUnchecked {
    fn handle<H: Handler>(&mut self, handler: &mut H, req: &Request) -> Response {
        let answer = handler.handle(req);
        if !matches!(
            answer.status,
            status::PARTIAL_CONTENT | status::RANGE_NOT_SATISFIABLE
        ) {
            return answer;
        }
        let Some((first, last)) = req.range.and_then(one_range) else {
            return answer;
        };
        let whole = handler.handle(&Request {
            range: None,
            ..*req
        });
        let Body::Static(body) = whole.body else {
            return answer;
        };
        let complete = body.len() as u64;
        let range = ByteRange {
            first,
            last: last.min(complete - 1),
        };
        let start = usize::try_from(range.first).unwrap_or(usize::MAX);
        let count = usize::try_from(range.len()).unwrap_or(usize::MAX);
        let part = body
            .get(start..)
            .unwrap_or_default()
            .get(..count)
            .unwrap_or_default();
        Response {
            status: status::PARTIAL_CONTENT,
            content_range: Some(ContentRange::Bytes { range, complete }),
            body: Body::Static(part),
            ..whole
        }
    }
}

/// `bytes=first-last`, the one form the simulator's clients send.
fn one_range(value: &str) -> Option<(u64, u64)> {
    let (first, last) = value.strip_prefix("bytes=")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::guest::Guest;
    use super::super::world::{self, Options, Target};
    use super::*;
    use crate::dev::fake_device::FakeNet;

    const N: usize = 16;

    /// The CI budget of one seed: the simulator must fail within it.
    fn budget(seed: u64) -> Options {
        Options {
            seed,
            duration_ms: 4 * world::DAY_MS,
            requests: 4 * 320_000,
            faults: true,
        }
    }

    fn caught<T: Target>(name: &str, make: impl Fn(FakeNet, u64) -> T) {
        let seed = 1;
        let start = std::time::Instant::now();
        match world::run(budget(seed), make) {
            Ok(r) => panic!(
                "mutation {name} not caught: {} requests over {} ms",
                r.counts.responses, r.virtual_ms
            ),
            Err(f) => std::eprintln!(
                "mutation {name}: caught with seed {} at virtual time {} ({} ms), {:?} real: {}",
                f.seed,
                world::human(f.virtual_ms),
                f.virtual_ms,
                start.elapsed(),
                f.what
            ),
        }
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn only_the_newest_used_entry_read() {
        caught("newest-only", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(|| NewestOnly), N, s)
        });
    }

    #[test]
    fn rx_buffers_not_reposted() {
        caught("no-repost", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(NoRepost::default), N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn non_wrapping_ring_index() {
        caught("non-wrapping-index", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(NonWrappingIndex::default), N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn refill_kick_skipped_after_the_ring_ran_dry() {
        caught("dry-kick", |dev, s| {
            Guest::new(dev, DryKickOpener::<N>, N, s)
        });
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn tx_retried_only_on_a_notification() {
        caught("tx-waits-for-notification", |dev, s| {
            Guest::new(dev, Mutated::<N, _>(TxWaitsForNotification::default), N, s)
        });
    }

    #[test]
    fn a_response_offset_that_underflows() {
        caught("range-start-unchecked", |dev, s| {
            Guest::with_app(dev, Real::<N>, N, s, |web| {
                MutantApp::new(web, RangeStartUnchecked)
            })
        });
    }

    /// The mutation changes only ranges that start past the end: every
    /// other range of every representation is answered as the site does.
    #[test]
    fn the_range_mutation_is_the_site_path_but_for_its_guard() {
        use crate::app::Site;
        use crate::app::assets::ASSETS;
        use crate::http::AcceptEncoding;
        let mut site = Site::baked();
        let mut checked = 0;
        for asset in ASSETS.iter().filter(|a| !a.body.is_empty()) {
            for coding in [None, Some(&b"gzip"[..]), Some(&b"br"[..])] {
                let mut accept = AcceptEncoding::default();
                if let Some(c) = coding {
                    accept.add(c);
                }
                let len = site.handle(&Request {
                    accept_encoding: accept,
                    ..Request::get(asset.path)
                });
                let len = len.body.len() as u64;
                for (first, last) in [
                    (0, 0),
                    (1, 3),
                    (0, len - 1),
                    (len - 1, len + 5),
                    (0, 99_999),
                ] {
                    let value = std::format!("bytes={first}-{last}");
                    let req = Request {
                        accept_encoding: accept,
                        range: Some(&value),
                        ..Request::get(asset.path)
                    };
                    let real = site.handle(&req);
                    let mutant = RangeStartUnchecked.handle(&mut site, &req);
                    assert_eq!(mutant, real, "{} {value}", asset.path);
                    checked += usize::from(real.status == 206);
                }
            }
        }
        assert!(checked > 100, "{checked} ranges compared");
        // Past the end: the real 416, the mutant's underflow (once: each
        // panic prints its backtrace).
        let asset = ASSETS.iter().find(|a| !a.body.is_empty()).expect("a file");
        let len = asset.body.len();
        let value = std::format!("bytes={len}-{}", len + 10);
        let req = Request {
            range: Some(&value),
            ..Request::get(asset.path)
        };
        assert_eq!(site.handle(&req).status, 416);
        let mutant = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            RangeStartUnchecked.handle(&mut site, &req)
        }));
        let message = mutant.expect_err("the range's length underflows");
        let message = message.downcast_ref::<&str>().copied().unwrap_or("");
        assert!(message.contains("subtract with overflow"), "{message}");
    }

    #[test]
    #[ignore = "minutes in a debug build: scripts/sim --mutations"]
    fn a_deadline_that_never_fires() {
        caught("clock-on-interrupt", |dev, s| {
            ClockOnInterrupt::new(Guest::new(dev, Real::<N>, N, s))
        });
    }
}
