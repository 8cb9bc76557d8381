//! The guest the simulator runs: the production [`Service`] (stack, server,
//! app) over a [`Nic`] whose ports are the real driver on the fake device,
//! or, for the mutation tests, the real driver or the app inside a wrapper
//! that puts back one of the bugs the simulator must catch.

use super::world::Target;
use crate::app::{Site, Stats};
use crate::config::Config;
use crate::dev::fake_device::FakeNet;
use crate::dev::fake_nic::{FakeNic, Opener};
use crate::dev::port::{Nic, Port};
use crate::http::Stamp;
use crate::net::Stack;
use crate::service::{AppParts, KeepLines, Readings, Serves, Service, Web};

pub struct Guest<O: Opener, A: Serves = Web> {
    service: Service<FakeNic<O>, KeepLines, A>,
    queue_size: usize,
}

impl<O: Opener> Guest<O> {
    /// The guest as `boot.rs` composes it, with a static address (the
    /// clients' host is its gateway) and `queue_size`-entry rings.
    pub fn new(dev: FakeNet, opener: O, queue_size: usize, seed: u64) -> Guest<O> {
        Guest::with_app(dev, opener, queue_size, seed, |web| web)
    }
}

impl<O: Opener, A: Serves> Guest<O, A> {
    /// [`Guest::new`], serving `wrap` of the app.
    pub fn with_app(
        dev: FakeNet,
        opener: O,
        queue_size: usize,
        seed: u64,
        wrap: impl FnOnce(Web) -> A,
    ) -> Guest<O, A> {
        let text = std::format!("ip=10.0.2.15/24\nqueue_size={queue_size}");
        let config = Config::parse(&text, &mut |w| panic!("config warning: {w}"));
        let mut nic = FakeNic::with_opener(dev, opener);
        let port = nic.open(None).expect("the fake device opens");
        let stack = Stack::new(nic, port, &config, 0, seed, seed.rotate_left(17));
        let parts = AppParts {
            site: Site::baked(),
            stamp: Stamp {
                epoch_ms: None,
                boot: seed as u32,
            },
            profile: crate::app::routes::no_profile,
            access_log: None,
            heap_free: 32 << 20,
            version: "sim",
        };
        Guest {
            service: Service::with_app(stack, &config, parts, KeepLines, 0, wrap),
            queue_size,
        }
    }
}

impl<O: Opener, A: Serves> Target for Guest<O, A> {
    fn pass(&mut self, now: u64, tick: u64, irq: bool) -> bool {
        self.service
            .pass(now, tick, irq, Readings::default)
            .may_sleep
    }

    fn rx_posted(&mut self) -> Option<usize> {
        self.service
            .stack()
            .port()
            .map(|p| usize::from(p.stats().rx.in_flight()))
    }

    fn queue_size(&self) -> usize {
        self.queue_size
    }

    fn is_idle(&mut self) -> bool {
        self.service.server().is_idle()
    }

    fn next_deadline(&mut self, now: u64) -> Option<u64> {
        self.service.next_deadline(now)
    }

    fn stats(&mut self, _now: u64) -> Stats {
        self.service.stats().clone()
    }

    fn describe(&mut self) -> std::string::String {
        use smoltcp::socket::tcp;
        let mut out = std::string::String::from("server sockets not listening:");
        for (_, socket) in self.service.stack().sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(t) = socket
                && !matches!(t.state(), tcp::State::Listen)
            {
                out.push_str(&std::format!(
                    " [{} {:?} recv {} send {}]",
                    t.remote_endpoint().map_or(0, |e| e.port),
                    t.state(),
                    t.recv_queue(),
                    t.send_queue()
                ));
            }
        }
        out
    }
}
