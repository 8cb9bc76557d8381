//! HTTP integration tests: every test boots its own guest with port 80 forwarded
//! to a free host port and talks to it with real clients (curl, wrk, raw TCP).
//!
//! Each test body takes the virtio-mmio [`Transport`] and runs twice, as
//! `legacy::<name>` (QEMU's default) and `modern::<name>`
//! (`-global virtio-mmio.force-legacy=false`); the boot helper checks from the
//! kernel's `virtio: ...` line that the guest really drove that transport.
//!
//! | module      | what                                          |
//! |-------------|-----------------------------------------------|
//! | `routes`    | curl: every route and status, header by header |
//! | `transfer`  | large asset byte-exact, pipelining, 1 byte/write |
//! | `bad_input` | malformed corpus, slow header → 408           |
//! | `pool`      | pool pressure: eviction by value, idle/header deadlines |
//! | `stats`     | `/api/stats.json` counters against the traffic |
//! | `load`      | wrk keep-alive load; idle host CPU            |
//!
//! Figures (accelerator, wrk requests/s, idle CPU %) go to stderr.

#[path = "http/bad_input.rs"]
mod bad_input;
#[path = "http/corpus.rs"]
mod corpus;
#[path = "http/load.rs"]
mod load;
#[path = "http/pool.rs"]
mod pool;
#[path = "http/routes.rs"]
mod routes;
#[path = "http/stats.rs"]
mod stats;
#[path = "http/transfer.rs"]
mod transfer;

use tests_qemu::http::Transport;

/// `mod legacy` and `mod modern`, each with one `#[test]` per named body.
macro_rules! for_both_transports {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod legacy {
            use super::*;
            $(#[test]
            fn $name() {
                $module::$name(Transport::Legacy)
            })*
        }
        mod modern {
            use super::*;
            $(#[test]
            fn $name() {
                $module::$name(Transport::Modern)
            })*
        }
    };
}

for_both_transports!(
    routes::curl_routes_statuses_and_headers,
    transfer::large_asset_byte_exact_in_a_row_and_at_once,
    transfer::pipelined_requests_and_one_byte_per_write,
    bad_input::malformed_and_oversized_requests,
    bad_input::slow_header_gets_408_then_close,
    pool::pool_pressure_evicts_the_least_valuable_and_deadlines_free_the_rest,
    stats::stats_counters_match_the_traffic,
    load::wrk_keep_alive_load,
    load::idle_guest_uses_little_host_cpu,
);
