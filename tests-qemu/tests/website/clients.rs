//! Real clients on the whole site: headless Chromium playing and seeking the
//! video, REDbot's lint of four responses.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tests_qemu::browser::Browser;
use tests_qemu::http::{Transport, boot_http, site_file};

use super::{raw_status_is, run_bounded};

/// How long one step of the page may take (TCG on a busy host is slow).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the Chromium log is kept: `target/website/`.
fn artifacts() -> PathBuf {
    let dir = boot_image::repo_root().join("target/website");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Adds a muted `<video>` of the clip to the page and records its events.
const CLIP_SETUP: &str = "(() => { \
     const v = document.createElement('video'); \
     v.muted = true; v.preload = 'auto'; \
     const c = window.__clip = { v, events: [], seeked: false, error: null }; \
     for (const e of ['loadedmetadata', 'canplay', 'playing', 'seeking', 'seeked', 'stalled', 'error']) \
       v.addEventListener(e, () => c.events.push(e + '@' + v.currentTime.toFixed(2))); \
     v.addEventListener('seeked', () => { c.seeked = true; }); \
     v.addEventListener('error', () => { c.error = v.error ? v.error.code + ' ' + v.error.message : 'error'; }); \
     v.src = '/media/clip.webm'; document.body.appendChild(v); return true; })()";

const CLIP_STATE: &str = "(() => { const c = window.__clip; if (!c) return 'no clip'; const v = c.v; \
     return JSON.stringify({ duration: v.duration, currentTime: v.currentTime, \
       readyState: v.readyState, networkState: v.networkState, paused: v.paused, ended: v.ended, \
       width: v.videoWidth, height: v.videoHeight, seeked: c.seeked, error: c.error, \
       events: c.events }); })()";

/// `ffprobe`'s width, height and duration of the clip, when it is installed.
fn probe_clip() -> Option<(u64, u64, f64)> {
    let path = tests_qemu::http::site_path("media/clip.webm");
    let ran = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=width,height:format=duration",
                "-of",
                "json",
            ])
            .arg(&path),
        Duration::from_secs(30),
    )
    .ok()?;
    let v: Value = serde_json::from_slice(&ran.stdout).ok()?;
    let s = &v["streams"][0];
    Some((
        s["width"].as_u64()?,
        s["height"].as_u64()?,
        v["format"]["duration"].as_str()?.parse().ok()?,
    ))
}

pub fn chromium_plays_and_seeks_the_clip(transport: Transport) {
    let g = boot_http("website-chromium", transport, &[]);
    let before = g.stats();
    let mut b = Browser::start("website-chromium", &artifacts());
    // A page of the guest's own, so the video is same-origin.
    b.cmd(json!({"cmd": "open", "url": g.url("/docs/"), "width": 800, "height": 600}));
    assert_eq!(b.eval(CLIP_SETUP), true);
    let v = "window.__clip.v";
    b.wait_until(
        &format!("{v}.readyState >= 1"),
        STEP_TIMEOUT,
        "metadata of /media/clip.webm",
        CLIP_STATE,
    );
    let played = b.eval(&format!(
        "{v}.play().then(() => 'ok', e => 'play() failed: ' + e)"
    ));
    assert_eq!(played, "ok", "state: {}", b.eval(CLIP_STATE));
    b.wait_until(
        &format!("{v}.currentTime > 0.3"),
        STEP_TIMEOUT,
        "playing from the start",
        CLIP_STATE,
    );
    assert_eq!(b.eval(&format!("{v}.currentTime = 4, true")), true);
    b.wait_until(
        &format!("window.__clip.seeked && {v}.readyState >= 3"),
        STEP_TIMEOUT,
        "seeked to 4 s with data to play",
        CLIP_STATE,
    );
    b.wait_until(
        &format!("{v}.currentTime >= 4.3 || {v}.ended"),
        STEP_TIMEOUT,
        "playing on after the seek",
        CLIP_STATE,
    );
    let state: Value =
        serde_json::from_str(b.eval(CLIP_STATE).as_str().unwrap_or("{}")).expect("clip state JSON");
    g.note(format_args!("clip after the seek: {state}"));
    assert_eq!(state["error"], Value::Null, "media error: {state}");
    let duration = state["duration"].as_f64().unwrap_or(0.0);
    match probe_clip() {
        Some((w, h, d)) => {
            assert!(
                state["width"] == w && state["height"] == h && (duration - d).abs() < 0.1,
                "Chromium decoded {state}, ffprobe says {w}x{h} {d} s"
            );
        }
        None => {
            g.note(format_args!("no ffprobe: clip size not compared"));
            assert!((duration - 6.0).abs() < 0.2, "duration {duration}: {state}");
        }
    }
    let page_errors = b.errors();
    if !page_errors.is_empty() {
        g.note(format_args!("page errors: {page_errors:?}"));
    }
    assert!(
        !page_errors
            .iter()
            .any(|e| e.to_string().contains("clip.webm")),
        "errors about the clip: {page_errors:?}"
    );
    drop(b);

    // The guest served the clip with ranges.
    let log = g.admin_get("/api/requests.json");
    raw_status_is(&g, "/api/requests.json", &log, 200);
    let v: Value = serde_json::from_slice(&log.body)
        .unwrap_or_else(|e| g.fail(format_args!("/api/requests.json: {e}")));
    let clip_len = site_file("media/clip.webm").len() as u64;
    let rows: Vec<&Value> = v["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["path"] == "/media/clip.webm")
        .collect();
    let partial = rows.iter().filter(|r| r["status"] == 206).count();
    let bad = rows.iter().any(|r| {
        !(r["status"] == 200 || r["status"] == 206)
            || r["body_bytes"].as_u64().is_none_or(|n| n > clip_len)
    });
    if partial == 0 || bad {
        g.fail(format_args!(
            "/media/clip.webm should have been fetched with 206s: {rows:?}"
        ));
    }
    let after = g.stats();
    let ok = after.delta(&before, "status_2xx");
    if ok < rows.len() as u64 || after.delta(&before, "status_5xx") != 0 {
        g.fail(format_args!(
            "stats: 2xx +{ok} for {} clip requests, 5xx +{}",
            rows.len(),
            after.delta(&before, "status_5xx")
        ));
    }
    g.note(format_args!(
        "Chromium played and seeked the clip: {} requests, {partial} of them 206 ({:?})",
        rows.len(),
        rows.iter()
            .map(|r| format!("{} {}B", r["status"], r["body_bytes"]))
            .collect::<Vec<_>>()
    ));
    g.finish();
}

pub fn redbot_reports_no_errors(transport: Transport) {
    let g = boot_http("website-redbot", transport, &[]);
    let mut report = Vec::new();
    for (path, status) in [
        ("/", 200),
        ("/assets/app.5f3c9e1a.js", 200),
        ("/large.bin", 200),
        ("/missing", 404),
    ] {
        let url = g.url(path);
        let ran = run_bounded(
            Command::new("redbot").args(["-o", "har", &url]),
            Duration::from_secs(180),
        )
        .unwrap_or_else(|e| {
            if e.contains("No such file") {
                panic!("redbot is not installed: `pip install redbot` (scripts/install-deps does)")
            }
            g.fail(e)
        });
        let text = String::from_utf8_lossy(&ran.stdout);
        let har: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            g.fail(format_args!(
                "redbot {url} (exit {:?}) printed no HAR ({e}): {text}\n{}",
                ran.code,
                String::from_utf8_lossy(&ran.stderr)
            ))
        });
        if let Some(err) = har["log"].get("_red_error") {
            g.fail(format_args!("redbot {url}: {err}"));
        }
        let entries = har["log"]["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(first) = entries.first() else {
            g.fail(format_args!("redbot {url}: no entry: {text}"));
        };
        if first["response"]["status"] != status {
            g.fail(format_args!(
                "redbot {url}: status {}, want {status}",
                first["response"]["status"]
            ));
        }
        let mut errors = Vec::new();
        for m in entries
            .iter()
            .flat_map(|e| e["_red_messages"].as_array().cloned().unwrap_or_default())
        {
            let level = m["level"].as_str().unwrap_or("").to_ascii_uppercase();
            let line = format!(
                "{path}: {} {} ({}): {}",
                level,
                m["note_id"].as_str().unwrap_or(""),
                m["category"].as_str().unwrap_or(""),
                m["summary"].as_str().unwrap_or("")
            );
            match level.as_str() {
                "BAD" => errors.push(line),
                "WARN" | "WARNING" => report.push(line),
                _ => {}
            }
        }
        if !errors.is_empty() {
            g.fail(format_args!(
                "redbot found errors:\n  {}\nwarnings so far:\n  {}",
                errors.join("\n  "),
                report.join("\n  ")
            ));
        }
    }
    g.note(format_args!(
        "redbot: no error-level note on 4 URLs; {} warnings:\n  {}",
        report.len(),
        report.join("\n  ")
    ));
    g.finish();
}
