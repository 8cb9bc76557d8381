//! The reverse proxy example (`deploy/Caddyfile`) over two guests.

use super::*;

/// `status_4xx` of a guest's stats (its own 404s: only the test makes them).
fn count_4xx(guest: &UnitGuest) -> u64 {
    let r = guest
        .admin_get("/api/stats.json", Duration::from_secs(10))
        .unwrap_or_else(|e| guest.fail(format_args!("stats: {e}")));
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| guest.fail(format_args!("stats JSON: {e}")));
    v["status_4xx"]
        .as_u64()
        .unwrap_or_else(|| guest.fail("no status_4xx"))
}

/// `curl -k` through Caddy; the status code, or an error.
fn curl_status(url: &str, timeout_s: u64) -> Result<u16, String> {
    let out = Command::new("curl")
        .args([
            "-k",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            &timeout_s.to_string(),
            url,
        ])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match code.parse::<u16>() {
        Ok(c) if c != 0 => Ok(c),
        _ => Err(format!(
            "curl {url}: exit {} code {code:?}",
            out.status.code().unwrap_or(-1)
        )),
    }
}

/// The `caddy` program: on PATH, or else unpacked (not installed: Debian's
/// package would also start a system-wide Caddy on port 80) from the Debian
/// package fetched with `apt-get download` into target/deploy-tools/.
fn caddy_program(test: &str) -> Result<PathBuf, String> {
    if have("caddy") {
        return Ok(PathBuf::from("caddy"));
    }
    let dir = boot_image::repo_root().join("target/deploy-tools/caddy");
    let program = dir.join("usr/bin/caddy");
    if program.exists() {
        return Ok(program);
    }
    note(
        test,
        format_args!(
            "caddy missing: apt-get download caddy, unpacked in {}",
            dir.display()
        ),
    );
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = run_bounded(
        Command::new("apt-get")
            .args(["download", "caddy"])
            .current_dir(&dir),
        &dir,
        APT_TIMEOUT,
    );
    let deb = fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("`apt-get download caddy` gave no package: {}", out.text()))?;
    let out = run_bounded(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir),
        &dir,
        TOOL_TIMEOUT,
    );
    if program.exists() {
        Ok(program)
    } else {
        Err(format!("unpacking {}: {}", deb.display(), out.text()))
    }
}

#[test]
fn caddyfile_balances_and_skips_a_paused_instance() {
    let test = "caddy";
    let caddy_program = match caddy_program(test) {
        Ok(p) => p,
        Err(reason) => {
            note(test, format_args!("SKIPPED: {reason}"));
            return;
        }
    };
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let mut a = UnitGuest::start("caddy-a", &scratch, &image, &[]);
    let mut b = UnitGuest::start("caddy-b", &scratch, &image, &[]);
    a.wait_healthy(tests_qemu::deploy::HEALTH_TIMEOUT);
    b.wait_healthy(tests_qemu::deploy::HEALTH_TIMEOUT);

    // deploy/Caddyfile imported unchanged; the site and upstreams through the
    // environment placeholders it documents; Caddy's own state in scratch.
    let https_port = free_port();
    let http_port = free_port();
    let wrapper = scratch.join("Caddyfile.test");
    fs::write(
        &wrapper,
        format!(
            "{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tstorage file_system {}\n}}\nimport {}\n",
            scratch.join("caddy-data").display(),
            deploy_dir().join("Caddyfile").display()
        ),
    )
    .unwrap();
    let mut caddy = KillOnDrop(
        Command::new(&caddy_program)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&wrapper)
            .env("UNIKERNEL_SITE", format!("https://localhost:{https_port}"))
            .env(
                "UNIKERNEL_UPSTREAMS",
                format!("127.0.0.1:{} 127.0.0.1:{}", a.port, b.port),
            )
            .env("HOME", scratch.path())
            .env("XDG_DATA_HOME", scratch.join("xdg-data"))
            .env("XDG_CONFIG_HOME", scratch.join("xdg-config"))
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(scratch.join("caddy.out")).unwrap())
            .stderr(fs::File::create(scratch.join("caddy.log")).unwrap())
            .spawn()
            .expect("starting caddy"),
    );
    let caddy_log = || fs::read_to_string(scratch.join("caddy.log")).unwrap_or_default();
    let base = format!("https://localhost:{https_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(200) = curl_status(&format!("{base}/health"), 3) {
            break;
        }
        if let Ok(Some(s)) = caddy.0.try_wait() {
            panic!("caddy exited ({s}):\n{}", caddy_log());
        }
        assert!(
            Instant::now() < deadline,
            "no 200 through Caddy (TLS) within 30 s:\n{}",
            caddy_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Both instances serve: 20 requests for a missing page, counted as 404s
    // by whichever guest got each.
    let (a0, b0) = (count_4xx(&a), count_4xx(&b));
    for i in 0..20 {
        let code = curl_status(&format!("{base}/balance-{i}"), 10).unwrap();
        assert_eq!(code, 404, "request {i} through Caddy");
    }
    let (a1, b1) = (count_4xx(&a), count_4xx(&b));
    note(
        test,
        format_args!("20 requests: {} to a, {} to b", a1 - a0, b1 - b0),
    );
    assert_eq!((a1 - a0) + (b1 - b0), 20);
    assert!(a1 > a0 && b1 > b0, "one instance got no requests");

    // Pause a: once Caddy's probe has failed (interval 2 s, timeout 2 s),
    // every request goes to b and succeeds.
    let mut qmp = Qmp::connect(&a.qmp_socket, Duration::from_secs(10)).unwrap();
    qmp.stop().unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let b2 = count_4xx(&b);
    for i in 0..10 {
        let t = Instant::now();
        let code = curl_status(&format!("{base}/paused-{i}"), 15).unwrap();
        assert_eq!(code, 404, "request {i} with a paused:\n{}", caddy_log());
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "request {i} waited {:?}",
            t.elapsed()
        );
    }
    assert_eq!(count_4xx(&b) - b2, 10, "requests did not all go to b");

    // Resumed: a is back in rotation after a passing probe.
    qmp.cont().unwrap();
    let a3 = count_4xx(&a);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while count_4xx(&a) == a3 {
        assert!(
            Instant::now() < deadline,
            "a not back in rotation within 30 s"
        );
        curl_status(&format!("{base}/back-{sent}"), 10).unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    note(
        test,
        format_args!("with a paused: 10/10 via b; a back after {sent} requests"),
    );
    drop(caddy);
}
