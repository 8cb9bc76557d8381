//! `/status` in headless Chromium, under load and across a restart.

use super::*;

/// What the test reads off the page: the attributes it keeps for tests.
const PAGE_STATE: &str = "JSON.stringify({...document.body.dataset, \
     points: [...document.querySelectorAll('canvas')].map(c => Number(c.dataset.points))})";

/// Pixels of each canvas in a saturated colour: the series lines (the grid and
/// the labels are grey).
const COLOURED_PIXELS: &str = "[...document.querySelectorAll('canvas')].map(c => { \
     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
     for (let i = 0; i < d.length; i += 4) { \
       const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]); \
       if (d[i + 3] > 128 && hi - lo > 60) n++; } \
     return n; })";

fn page_state(b: &mut Browser) -> Value {
    let text = b.eval(PAGE_STATE);
    serde_json::from_str(text.as_str().unwrap_or("{}")).expect("page state JSON")
}

/// Every chart drew a series (its own count and its pixels agree).
fn check_charts_drawn(b: &mut Browser, when: &str) {
    let state = page_state(b);
    let points: Vec<u64> = state["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p.as_u64().unwrap_or(0))
        .collect();
    assert_eq!(points.len(), 6, "{when}: six charts: {state}");
    assert!(
        points.iter().all(|&p| p >= 3),
        "{when}: a chart has no points: {state}"
    );
    let pixels = b.eval(COLOURED_PIXELS);
    let pixels: Vec<u64> = pixels
        .as_array()
        .expect("pixel counts")
        .iter()
        .map(|p| p.as_u64().unwrap_or(0))
        .collect();
    assert!(
        pixels.iter().all(|&n| n >= 20),
        "{when}: a canvas is blank: coloured pixels {pixels:?}, {state}"
    );
    let rows: u64 = state["requestRows"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(rows > 0, "{when}: no recent requests shown: {state}");
}

/// A client that keeps loading the guest (new connection per request) until
/// stopped; counts answers and failures. Bounded in time and count.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mix = [
                ("GET", "/"),
                ("GET", "/bench/64k.bin"),
                ("GET", "/no-such-page"),
                ("GET", "/bench/4k.html"),
                ("HEAD", "/style.css"),
                ("POST", "/"),
            ];
            let deadline = Instant::now() + Duration::from_secs(300);
            for i in 0..100_000usize {
                if s.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let (method, path) = mix[i % mix.len()];
                match request(addr, method, path) {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(200));
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        Load {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Result<u16, String> {
    let mut c = Client::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let extra = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    c.read_response(method == "HEAD").map(|r| r.status)
}

/// A guest on given host ports (the restart keeps the page's origin, the
/// admin port).
fn boot_on_port(test: &str, port: u16, admin_port: u16) -> HttpGuest {
    let access_log = std::env::temp_dir().join(format!(
        "unikernel-access-{test}-{}-{port}-again.log",
        std::process::id()
    ));
    let cfg = QemuConfig {
        host_port: Some(port),
        admin_host_port: Some(admin_port),
        access_log: Some(boot_image::AccessLogChannel::File(access_log.clone())),
        ..config(&[])
    };
    let mut last = String::new();
    for _ in 0..10 {
        match Guest::start(
            &tests_qemu::image().image,
            &cfg,
            tests_qemu::echo_from_env(),
        ) {
            Ok(guest) => {
                if let Err(e) = guest.wait_for("net: ready", INIT_TIMEOUT) {
                    panic!("[{test}] second guest: {e}\n{}", guest.serial());
                }
                let g = HttpGuest {
                    guest,
                    port,
                    admin_port,
                    access_log,
                    test: test.to_string(),
                    transport: Transport::Legacy,
                };
                g.wait_healthy(Duration::from_secs(20));
                return g;
            }
            // The port may take a moment to be free after the first QEMU.
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("[{test}] no guest on port {port}: {last}")
}

#[test]
fn status_page_in_headless_chromium_under_load_and_across_a_restart() {
    const TEST: &str = "status-page";
    let g = boot_http(TEST, Transport::Legacy, &[]);
    let (port, admin_port) = (g.port, g.admin_port);
    let load = Load::start(g.addr());
    let mut b = Browser::start(TEST, &artifacts());
    b.cmd(
        json!({"cmd": "open", "url": g.admin_url("/status"), "width": VIEWPORT.0, "height": VIEWPORT.1}),
    );
    b.wait_until(
        &format!(
            "Number(document.body.dataset.okPolls) >= {POLLS_BEFORE_SCREENSHOT} && \
             [...document.querySelectorAll('canvas')].every(c => Number(c.dataset.points) >= 3)"
        ),
        PAGE_TIMEOUT + Duration::from_secs(POLLS_BEFORE_SCREENSHOT),
        "charts drawn",
        PAGE_STATE,
    );
    let state = page_state(&mut b);
    assert_eq!(state["state"], "online", "{state}");
    assert_eq!(state["errors"], "0", "errors the page caught: {state}");
    assert_eq!(state["restarts"], "0", "{state}");
    check_charts_drawn(&mut b, "under load");
    let errors = b.errors();
    assert!(errors.is_empty(), "console errors under load: {errors:#?}");
    let shot = artifacts().join("status.png");
    let bytes = b.cmd(json!({"cmd": "screenshot", "path": shot}))["bytes"].clone();
    g.note(format_args!(
        "screenshot {} ({bytes} bytes), page {state}, load {:?} (ok, failed)",
        shot.display(),
        load.counts()
    ));

    // The guest goes away: the page says offline and keeps polling.
    let served_before = g.stats().get("requests_total");
    drop(g);
    b.wait_until(
        "document.body.dataset.state === 'offline'",
        Duration::from_secs(20),
        "offline after the guest stopped",
        PAGE_STATE,
    );
    // A new guest on the same port: counters start again from 0.
    let g = boot_on_port(TEST, port, admin_port);
    let polls_back = page_state(&mut b)["okPolls"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    b.wait_until(
        &format!(
            "document.body.dataset.state === 'online' && document.body.dataset.restarts === '1' && \
             Number(document.body.dataset.okPolls) >= {}",
            polls_back + 8
        ),
        PAGE_TIMEOUT,
        "back online with the restart counted",
        PAGE_STATE,
    );
    let after = g.stats();
    assert!(
        after.get("requests_total") < served_before,
        "the new guest's counters started again"
    );
    let state = page_state(&mut b);
    assert_eq!(state["errors"], "0", "errors the page caught: {state}");
    check_charts_drawn(&mut b, "after the restart");
    // Failed fetches while the guest was down are network errors; nothing else.
    let errors = b.errors();
    let unexpected: Vec<&Value> = errors
        .iter()
        .filter(|e| !(e["kind"] == "log" && e["source"] == "network"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "console errors across the restart: {unexpected:#?}"
    );
    let shot = artifacts().join("status-after-restart.png");
    b.cmd(json!({"cmd": "screenshot", "path": shot}));
    let (ok, failed) = load.counts();
    g.note(format_args!(
        "after restart: page {state}; {} network errors while down; load {ok} answered, {failed} failed; {}",
        errors.len(),
        shot.display()
    ));
    assert!(ok > 50, "the load client got few answers: {ok}");
    drop(load);
    drop(b);
    g.finish();
}
