//! The units, their settings file and the launcher's QEMU command line agree.

use super::*;

/// Entries of `unit` except those whose key is in `skip`.
fn entries_without(unit: &UnitFile, skip: &[&str]) -> Vec<(String, String, String)> {
    unit.entries
        .iter()
        .filter(|(_, k, _)| !skip.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[test]
fn units_settings_and_launcher_agree() {
    // The file as shipped (no TESTS_QEMU_ACCEL override).
    let env = parse_env_file(&deploy_file("unikernel.env")).expect("unikernel.env");
    let run = PathBuf::from("/run");
    let image = Path::new("/img/unikernel.elf");

    // The service and its template: the same but for what names an instance.
    let single = UnitFile::load("unikernel.service");
    let template = UnitFile::load("unikernel@.service");
    let per_instance = [
        "Description",
        "EnvironmentFile",
        "RuntimeDirectory",
        "SyslogIdentifier",
        "ExecStart",
    ];
    assert_eq!(
        entries_without(&single, &per_instance),
        entries_without(&template, &per_instance),
        "unikernel.service and unikernel@.service differ beyond the per-instance keys"
    );
    assert_eq!(
        single.get("Service", "EnvironmentFile"),
        Some("/etc/unikernel/unikernel.env")
    );
    assert_eq!(
        template.get("Service", "EnvironmentFile"),
        Some("/etc/unikernel/instances/%i.env")
    );
    let a = unit_argv(&single, &env, &run, "x", image);
    let b = unit_argv(&template, &env, &run, "x", image);
    let differing: Vec<(String, String)> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.clone(), y.clone()))
        .collect();
    assert_eq!(a.len(), b.len(), "argv lengths differ:\n{a:?}\n{b:?}");
    assert_eq!(
        differing,
        [(
            "unix:/run/unikernel/qmp.sock,server=on,wait=off".to_string(),
            "unix:/run/unikernel-x/qmp.sock,server=on,wait=off".to_string()
        )],
        "the two command lines differ beyond the QMP socket"
    );
    // The QMP socket lies in the runtime directory systemd creates.
    assert_eq!(single.get("Service", "RuntimeDirectory"), Some("unikernel"));
    assert_eq!(
        template.get("Service", "RuntimeDirectory"),
        Some("unikernel-%i")
    );
    for (unit, must) in [
        ("Restart", "always"),
        ("User", "unikernel"),
        ("SupplementaryGroups", "kvm"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "/dev/kvm rw"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("StandardOutput", "journal"),
    ] {
        assert_eq!(single.get("Service", unit), Some(must), "{unit}=");
    }
    assert_eq!(single.get("Unit", "StartLimitIntervalSec"), Some("0"));

    // The health check units: the template is the single one for %i.
    for (one, many) in [
        ("unikernel-health.service", "unikernel-health@.service"),
        ("unikernel-health.timer", "unikernel-health@.timer"),
    ] {
        let one = UnitFile::load(one);
        let many = UnitFile::load(many);
        let mapped: Vec<(String, String, String)> = entries_without(&one, &["Description"])
            .into_iter()
            .map(|(s, k, v)| {
                let v = v
                    .replace("unikernel-health.service", "unikernel-health@%i.service")
                    .replace("unikernel.service", "unikernel@%i.service")
                    .replace(
                        "/etc/unikernel/unikernel.env",
                        "/etc/unikernel/instances/%i.env",
                    );
                (s, k, v)
            })
            .collect();
        assert_eq!(
            mapped,
            entries_without(&many, &["Description"]),
            "{} and {} differ beyond the instance",
            one.name,
            many.name
        );
    }
    let health = UnitFile::load("unikernel-health.service");
    assert_eq!(
        health.get("Service", "ExecStart"),
        Some(format!("{INSTALLED_HEALTH} unikernel.service").as_str())
    );
    assert_eq!(
        health.get("Service", "EnvironmentFile"),
        single.get("Service", "EnvironmentFile"),
        "the health check must read the service's settings"
    );

    // The launcher's QEMU command line (what `cargo run` and every other test
    // boots): each of its devices, actions and flags is in the service.
    let port: u16 = env["UNIKERNEL_PORT"].parse().expect("UNIKERNEL_PORT");
    let admin_port: u16 = env["UNIKERNEL_ADMIN_PORT"]
        .parse()
        .expect("UNIKERNEL_ADMIN_PORT");
    let launcher_cfg = QemuConfig {
        host_port: Some(port),
        admin_host_port: Some(admin_port),
        access_log: Some(boot_image::AccessLogChannel::File(PathBuf::from(
            &env["UNIKERNEL_ACCESS_LOG"],
        ))),
        config: env["UNIKERNEL_GUEST_CONFIG"]
            .split(",,")
            .map(str::to_string)
            .collect(),
        initrd: Some(image.with_file_name("site.bundle")),
        qmp_socket: Some(run.join("unikernel/qmp.sock")),
        ..QemuConfig::default()
    };
    let launcher: Vec<String> = boot_image::qemu_args(image, Accel::Auto, &launcher_cfg)
        .expect("launcher args")
        .into_iter()
        .map(|a| a.into_string().expect("UTF-8"))
        .collect();
    // Exactly the launcher's options, but for what only a deployment adds:
    // `restrict=on` (no outbound connections from the guest) and the sandbox.
    let mut launcher_words = vec![boot_image::QEMU_PROGRAM.to_string()];
    launcher_words.extend(launcher);
    let unit_options: Vec<(String, Option<String>)> = qemu_options(&a)
        .into_iter()
        .filter(|(flag, _)| flag != "-sandbox")
        .map(|(flag, value)| {
            let value = value.map(|v| match flag.as_str() {
                "-netdev" => v.replace("restrict=on,", ""),
                _ => v,
            });
            (flag, value)
        })
        .collect();
    assert_eq!(
        qemu_options(&a)
            .iter()
            .filter(|(flag, _)| flag == "-sandbox")
            .count(),
        1,
        "unikernel.service runs QEMU sandboxed"
    );
    assert_eq!(
        unit_options,
        qemu_options(&launcher_words),
        "unikernel.service's QEMU options (restrict=on and -sandbox aside) against the \
         launcher's:\n{}\n{}",
        a.join(" "),
        launcher_words.join(" ")
    );
    assert_eq!(
        flag_values(&a, "-accel"),
        ["kvm", "tcg"],
        "the default accelerators"
    );

    // The tap drop-in: the service's command line with another network.
    let tap = UnitFile::load("tap-networking.conf");
    let t = unit_argv(&tap, &env, &run, "", image);
    assert_eq!(t.len(), a.len(), "tap argv length:\n{a:?}\n{t:?}");
    let differing: Vec<(&str, &str)> = a
        .iter()
        .zip(&t)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.as_str(), y.as_str()))
        .collect();
    assert_eq!(
        differing,
        [
            (
                format!(
                    "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80,\
                     hostfwd=tcp:127.0.0.1:{admin_port}-:8081"
                )
                .as_str(),
                "tap,id=net0,ifname=uk0,script=no,downscript=no"
            ),
            (
                "name=opt/unikernel/config,string=log=info",
                "name=opt/unikernel/config,string=ip=10.0.3.2/24,,gateway=10.0.3.1,,log=info"
            ),
        ],
        "the tap drop-in's command line differs beyond the network"
    );
    assert!(
        tap.values("Service", "DeviceAllow")
            .contains(&"/dev/net/tun rw")
    );

    // The settings file: the keys the units use, plain values that systemd
    // and the shell read alike, a guest config QEMU accepts (not empty).
    let file = deploy_dir().join("unikernel.env");
    let parsed = parse_env_file(&deploy_file("unikernel.env")).expect("unikernel.env");
    for key in [
        "UNIKERNEL_LISTEN",
        "UNIKERNEL_PORT",
        "UNIKERNEL_ADMIN_PORT",
        "UNIKERNEL_ACCESS_LOG",
        "UNIKERNEL_ACCEL",
        "UNIKERNEL_MEMORY",
        "UNIKERNEL_GUEST_CONFIG",
        "UNIKERNEL_EXTRA_ARGS",
        "HEALTH_TIMEOUT",
        "HEALTH_FAILURES",
    ] {
        assert!(parsed.contains_key(key), "unikernel.env lacks {key}");
    }
    assert!(!parsed["UNIKERNEL_GUEST_CONFIG"].is_empty());
    let keys: Vec<&String> = parsed.keys().collect();
    let script = format!(
        ". {}; for k in {}; do printf '%s=%s\\n' \"$k\" \"${{!k}}\"; done",
        file.display(),
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    let shell: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(shell, parsed, "the shell reads unikernel.env differently");

    // The admin port is forwarded from 127.0.0.1 only, whatever
    // UNIKERNEL_LISTEN says (0.0.0.0 exposes the site, never the admin port).
    let exposed = settings("unikernel.env", &[("UNIKERNEL_LISTEN", "0.0.0.0")]);
    for unit in [&single, &template] {
        let argv = unit_argv(unit, &exposed, &run, "x", image);
        let forwards: Vec<String> = flag_values(&argv, "-netdev")
            .iter()
            .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|o| o.starts_with("hostfwd="))
            .collect();
        let admin: Vec<&String> = forwards.iter().filter(|f| f.ends_with("-:8081")).collect();
        assert_eq!(
            admin,
            [&format!("hostfwd=tcp:127.0.0.1:{admin_port}-:8081")],
            "{}: the admin port's forwards: {forwards:?}",
            unit.name
        );
        assert!(
            forwards.contains(&format!("hostfwd=tcp:0.0.0.0:{port}-:80")),
            "{}: UNIKERNEL_LISTEN no longer moves the site's forward: {forwards:?}",
            unit.name
        );
    }
    // The Caddyfile proxies the sites only: never an admin port (the single
    // service's, or an instance's: its site port + 1000).
    let caddy = deploy_file("Caddyfile");
    for admin in [admin_port, 9081, 9082] {
        assert!(
            !caddy.contains(&admin.to_string()),
            "the Caddyfile must never proxy the admin port {admin}"
        );
    }

    // install.sh installs every unit and example.
    let install = deploy_file("install.sh");
    for name in UNITS
        .iter()
        .chain(&["Caddyfile", "tap-networking.conf", "README.md"])
    {
        assert!(install.contains(name), "install.sh does not mention {name}");
    }
    assert!(install.contains(INSTALLED_IMAGE.trim_end_matches("/unikernel.elf")));
}
