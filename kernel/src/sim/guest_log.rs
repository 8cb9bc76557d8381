//! The guest's `log` lines, kept per thread for a failure report (the
//! simulator's runs share the test binary's one logger).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::format;
use std::string::String;
use std::vec::Vec;

const KEPT: usize = 24;

thread_local! {
    static LINES: RefCell<VecDeque<String>> = const { RefCell::new(VecDeque::new()) };
}

struct Keep;

impl log::Log for Keep {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        super::alloc::unmeasured(|| {
            let line = format!("{} {}", record.level(), record.args());
            let _ = LINES.try_with(|l| {
                let mut l = l.borrow_mut();
                if l.len() == KEPT {
                    l.pop_front();
                }
                l.push_back(line);
            });
        });
    }

    fn flush(&self) {}
}

static KEEP: Keep = Keep;

/// Installs the logger (once per binary; later calls do nothing) and
/// forgets this thread's lines.
pub fn start() {
    if log::set_logger(&KEEP).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let _ = LINES.try_with(|l| l.borrow_mut().clear());
}

/// The guest's last lines on this thread.
pub fn lines() -> Vec<String> {
    LINES
        .try_with(|l| l.borrow().iter().cloned().collect())
        .unwrap_or_default()
}
