//! The tap drop-in (`tap-networking.conf`) in a network namespace.

use super::*;

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("ukdeploy-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }

    fn exec(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).args(argv);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn tap_drop_in_serves_in_a_network_namespace() {
    let test = "tap";
    if !nix::unistd::geteuid().is_root() {
        note(
            test,
            format_args!("SKIPPED: needs root for a network namespace and a tap"),
        );
        return;
    }
    let scratch = TempDir::new(test);
    let image = image_copy(&scratch);
    let ns = Netns::create();
    ns.exec(&[
        "ip".into(),
        "link".into(),
        "set".into(),
        "lo".into(),
        "up".into(),
    ])
    .output()
    .unwrap();
    let drop_in = UnitFile::load("tap-networking.conf");
    let access_log = scratch.join("access.log");
    let env = settings(
        "unikernel.env",
        &[("UNIKERNEL_ACCESS_LOG", &access_log.to_string_lossy())],
    );
    let none = BTreeMap::new();
    // The `+` commands as root would run them, in the namespace; the tap's
    // owner is root here (the test has no `unikernel` user to give it to).
    let run_all = |key: &str| {
        for line in drop_in.values("Service", key) {
            let ignore_failure = line
                .trim_start_matches(['+', '@', ':', '!'])
                .starts_with('-');
            let line = line.replace("user unikernel group unikernel", "user root group root");
            let argv = expand_command(&line, &env, &none).unwrap();
            let out = run_bounded(&mut ns.exec(&argv), scratch.path(), TOOL_TIMEOUT);
            assert!(
                out.status.success() || ignore_failure,
                "{key}={line}: {}",
                out.text()
            );
        }
    };
    run_all("ExecStartPre");

    let run = scratch.join("run");
    fs::create_dir_all(run.join("unikernel")).unwrap();
    let argv = unit_argv(&drop_in, &env, &run, "", &image);
    let mut qemu = KillOnDrop(
        ns.exec(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(scratch.join("serial.log")).unwrap())
            .stderr(fs::File::create(scratch.join("qemu.err")).unwrap())
            .spawn()
            .expect("starting QEMU in the namespace"),
    );
    let logs = || {
        format!(
            "--- serial ---\n{}--- stderr ---\n{}",
            fs::read_to_string(scratch.join("serial.log")).unwrap_or_default(),
            fs::read_to_string(scratch.join("qemu.err")).unwrap_or_default()
        )
    };
    let start = Instant::now();
    let curl = |url: &str| -> RunOutput {
        run_bounded(
            &mut ns.exec(&[
                "curl".into(),
                "-s".into(),
                "--max-time".into(),
                "2".into(),
                url.into(),
            ]),
            scratch.path(),
            TOOL_TIMEOUT,
        )
    };
    loop {
        let out = curl("http://10.0.3.2/health");
        if out.status.success() && out.stdout == "ok\n" {
            break;
        }
        if let Ok(Some(s)) = qemu.0.try_wait() {
            panic!("QEMU exited ({s})\n{}", logs());
        }
        if start.elapsed() > tests_qemu::deploy::HEALTH_TIMEOUT {
            panic!("no /health on 10.0.3.2 within 60 s\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let healthy_after = start.elapsed();
    let serial = fs::read_to_string(scratch.join("serial.log")).unwrap_or_default();
    assert!(
        serial.contains("net: ready: 10.0.3.2/24") && config_warnings(&serial).is_empty(),
        "the guest did not take the static address cleanly\n{}",
        logs()
    );

    // The health check as the README sets it up: HEALTH_URL on the guest.
    let health = deploy_dir().join("unikernel-health");
    let out = run_bounded(
        ns.exec(&[
            health.to_string_lossy().into_owned(),
            "unikernel.service".into(),
        ])
        .envs(&env)
        .env("HEALTH_URL", "http://10.0.3.2/health")
        .env("HEALTH_STATE_DIR", scratch.join("state"))
        .env("SYSTEMCTL", "false"),
        scratch.path(),
        TOOL_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "health check over tap: {}", out.text());

    let status = stop_child(&mut qemu.0, STOP_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "QEMU on SIGTERM: {status:?}"
    );
    run_all("ExecStopPost");
    let links = ns
        .exec(&["ip".into(), "-br".into(), "link".into()])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains("uk0"), "ExecStopPost left uk0: {links}");
    note(
        test,
        format_args!("guest at 10.0.3.2 answered /health after {healthy_after:.2?}; tap removed"),
    );
}
