//! `install.sh` into a temporary root, with recorders for every system-changing command.

use super::health::FakeServer;
use super::*;

/// A temporary root plus recorders for every command `install.sh` may change
/// the system with. Each recorder appends `name args` to `calls`; `useradd`,
/// `groupadd` and `userdel` also edit the root's passwd/group files as the
/// real ones would, `apt-get install` "installs" QEMU by creating the program
/// `uk-test-qemu` in the recorders' directory (on PATH), and `systemctl
/// is-active` says inactive for the units listed in `inactive`.
struct InstallRig {
    dir: TempDir,
    root: PathBuf,
    bin: PathBuf,
}

const QEMU_NAME: &str = "uk-test-qemu";

impl InstallRig {
    fn new(test: &str) -> InstallRig {
        let dir = TempDir::new(test);
        let root = dir.join("root");
        let bin = dir.join("bin");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        let recorder = format!(
            r#"#!/bin/bash
name=$(basename "$0")
echo "$name $*" >> '{calls}'
case "$name $1" in
"apt-get install") printf '#!/bin/sh\n' > '{bin}/{QEMU_NAME}'; chmod 755 '{bin}/{QEMU_NAME}' ;;
"groupadd "*) echo "${{!#}}:x:990:" >> '{root}/etc/group' ;;
"useradd "*) echo "${{!#}}:x:990:990::/nonexistent:/usr/sbin/nologin" >> '{root}/etc/passwd' ;;
"userdel "*) sed -i "/^${{!#}}:/d" '{root}/etc/passwd' ;;
"systemctl is-active") grep -qx "${{!#}}" '{inactive}' 2>/dev/null && exit 3 ;;
esac
exit 0
"#,
            calls = dir.join("calls").display(),
            bin = bin.display(),
            root = root.display(),
            inactive = dir.join("inactive").display(),
        );
        for name in ["systemctl", "apt-get", "useradd", "groupadd", "userdel"] {
            write_script(&bin.join(name), &recorder);
        }
        InstallRig { dir, root, bin }
    }

    fn command(&self, args: &[&str], with_recorders: bool) -> Command {
        let mut cmd = Command::new(deploy_dir().join("install.sh"));
        cmd.arg("--root").arg(&self.root).args(args);
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .env("QEMU", QEMU_NAME)
            .env("CURL", "curl")
            .env("UNIKERNEL_WAIT", "0");
        for (var, name) in [
            ("SYSTEMCTL", "systemctl"),
            ("APT_GET", "apt-get"),
            ("USERADD", "useradd"),
            ("GROUPADD", "groupadd"),
            ("USERDEL", "userdel"),
        ] {
            if with_recorders {
                cmd.env(var, self.bin.join(name));
            } else {
                cmd.env_remove(var);
            }
        }
        cmd
    }

    /// Runs install.sh with `args`; returns its output and the commands it
    /// recorded (then forgets them).
    fn run(&self, args: &[&str], code: i32) -> (RunOutput, Vec<String>) {
        let out = run_bounded(&mut self.command(args, true), self.dir.path(), TOOL_TIMEOUT);
        let calls_path = self.dir.join("calls");
        let calls: Vec<String> = fs::read_to_string(&calls_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = fs::remove_file(&calls_path);
        assert_eq!(
            out.code(),
            Some(code),
            "install.sh {args:?}: {}\nrecorded: {calls:?}",
            out.text()
        );
        note(
            "install",
            format_args!(
                "install.sh {}: status {code} in {:.2?}, recorded {calls:?}",
                args.join(" "),
                out.elapsed
            ),
        );
        (out, calls)
    }

    /// Every file under the root: relative path -> (mode, bytes).
    fn tree(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&self.root).unwrap();
                    out.insert(
                        format!("/{}", rel.display()),
                        (mode_of(&path), fs::read(&path).unwrap()),
                    );
                }
            }
        }
        out
    }

    fn users(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("etc/passwd"))
            .unwrap()
            .lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    }

    fn mtime(&self, rel: &str) -> i64 {
        fs::metadata(self.root.join(rel.trim_start_matches('/')))
            .unwrap()
            .mtime_nsec()
    }
}

fn enable_single() -> String {
    "systemctl enable --now unikernel.service unikernel-health.timer".to_string()
}

#[test]
fn install_sh_into_a_temporary_root() {
    let test = "install";
    let rig = InstallRig::new(test);
    let image = image_copy(&rig.dir);
    let image_bytes = fs::read(&image).unwrap();
    let image_arg = image.to_string_lossy().into_owned();

    // First install: QEMU missing, no kvm group, no user.
    let (_, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(
        calls,
        [
            "apt-get update".to_string(),
            "apt-get install -y --no-install-recommends qemu-system-x86".to_string(),
            "groupadd --system kvm".to_string(),
            "useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --comment unikernel service unikernel".to_string(),
            "systemctl daemon-reload".to_string(),
            enable_single(),
        ]
    );
    let deploy = |name: &str| fs::read(deploy_dir().join(name)).unwrap();
    let mut expected: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    expected.insert(INSTALLED_IMAGE.into(), (0o644, image_bytes.clone()));
    // No bundle given: an empty one, the baked site.
    expected.insert(INSTALLED_BUNDLE.into(), (0o644, Vec::new()));
    expected.insert(INSTALLED_HEALTH.into(), (0o755, deploy("unikernel-health")));
    for unit in UNITS {
        expected.insert(format!("/etc/systemd/system/{unit}"), (0o644, deploy(unit)));
    }
    expected.insert(
        "/etc/unikernel/unikernel.env".into(),
        (0o644, deploy("unikernel.env")),
    );
    for doc in ["README.md", "Caddyfile", "tap-networking.conf"] {
        expected.insert(
            format!("/usr/local/share/doc/unikernel/{doc}"),
            (0o644, deploy(doc)),
        );
    }
    expected.insert(
        "/usr/local/share/doc/unikernel/unikernel.env.dist".into(),
        (0o644, deploy("unikernel.env")),
    );
    let with_accounts = |mut tree: BTreeMap<String, (u32, Vec<u8>)>| {
        tree.remove("/etc/passwd");
        tree.remove("/etc/group");
        tree
    };
    let names = |t: &BTreeMap<String, (u32, Vec<u8>)>| -> Vec<String> {
        t.iter().map(|(k, (m, _))| format!("{k} {m:o}")).collect()
    };
    let tree = with_accounts(rig.tree());
    assert_eq!(names(&tree), names(&expected), "files and modes");
    assert!(
        tree == expected,
        "file contents differ from deploy/ and the image"
    );
    assert_eq!(rig.users(), ["root", "unikernel"]);

    // Second run, same command: nothing to install, create or reload.
    let unit_mtime = rig.mtime("/etc/systemd/system/unikernel.service");
    let (_, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(calls, [enable_single()]);
    assert!(
        with_accounts(rig.tree()) == expected,
        "a second run changed files"
    );
    assert_eq!(
        rig.mtime("/etc/systemd/system/unikernel.service"),
        unit_mtime,
        "a second run rewrote a unchanged unit"
    );
    assert_eq!(rig.users(), ["root", "unikernel"], "user created twice");

    // The operator's settings survive a run.
    let env_path = rig.root.join("etc/unikernel/unikernel.env");
    let mut edited = fs::read_to_string(&env_path).unwrap();
    edited.push_str("UNIKERNEL_MEMORY=\"256M\"\n");
    fs::write(&env_path, &edited).unwrap();
    let (out, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(calls, [enable_single()]);
    assert!(
        out.stdout
            .contains("kept your /etc/unikernel/unikernel.env")
    );
    assert_eq!(fs::read_to_string(&env_path).unwrap(), edited);

    // Upgrade: a different image; the old one is kept; the running service
    // is restarted (before `enable --now`, which would not restart it).
    let mut new_bytes = image_bytes.clone();
    new_bytes.extend_from_slice(b"\0upgrade");
    let new_image = rig.dir.join("new.elf");
    fs::write(&new_image, &new_bytes).unwrap();
    let new_arg = new_image.to_string_lossy().into_owned();
    let (_, calls) = rig.run(&["--image", &new_arg], 0);
    assert_eq!(
        calls,
        [
            "systemctl is-active --quiet unikernel.service".to_string(),
            "systemctl restart unikernel.service".to_string(),
            enable_single(),
        ]
    );
    let lib = rig.root.join("usr/local/lib/unikernel");
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), new_bytes);
    assert_eq!(
        fs::read(lib.join("unikernel.elf.previous")).unwrap(),
        image_bytes
    );
    assert_eq!(mode_of(&lib.join("unikernel.elf.previous")), 0o644);

    // Roll back, and forward again.
    let (_, calls) = rig.run(&["--rollback"], 0);
    assert_eq!(
        calls,
        [
            "systemctl is-active --quiet unikernel.service",
            "systemctl restart unikernel.service"
        ]
    );
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), image_bytes);
    assert_eq!(
        fs::read(lib.join("unikernel.elf.previous")).unwrap(),
        new_bytes
    );
    rig.run(&["--rollback"], 0);
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), new_bytes);

    // A site update: a bundle beside the image, the replaced one kept, a
    // rolling restart; --rollback swaps it back (with the image, whose
    // previous one is still there).
    let bundle = |name: &str| {
        let path = rig.dir.join(name);
        fs::write(&path, [b"UKSITE\r\n".as_slice(), name.as_bytes()].concat()).unwrap();
        (
            path.to_string_lossy().into_owned(),
            fs::read(&path).unwrap(),
        )
    };
    let ((a_arg, a_bytes), (b_arg, b_bytes)) = (bundle("a.bundle"), bundle("b.bundle"));
    let site = lib.join("site.bundle");
    let (_, calls) = rig.run(&["--image", &new_arg, "--bundle", &a_arg], 0);
    assert!(calls.contains(&"systemctl restart unikernel.service".to_string()));
    assert_eq!(fs::read(&site).unwrap(), a_bytes);
    rig.run(&["--image", &new_arg, "--bundle", &b_arg], 0);
    assert_eq!(fs::read(&site).unwrap(), b_bytes);
    assert_eq!(fs::read(lib.join("site.bundle.previous")).unwrap(), a_bytes);
    let (out, _) = rig.run(&["--rollback"], 0);
    assert_eq!(fs::read(&site).unwrap(), a_bytes, "{}", out.text());
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), image_bytes);
    rig.run(&["--rollback"], 0);
    assert_eq!(fs::read(&site).unwrap(), b_bytes);
    assert_eq!(fs::read(lib.join("unikernel.elf")).unwrap(), new_bytes);
    // Without --bundle an installed bundle stays.
    rig.run(&["--image", &new_arg], 0);
    assert_eq!(fs::read(&site).unwrap(), b_bytes);

    // Instances: settings files from the shipped one with their ports. `a`
    // gets a port where something answers /health, `b` one where nothing does.
    let healthy =
        FakeServer::start("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    let port_a = healthy.port.to_string();
    let port_b = free_port().to_string();
    let (_, calls) = rig.run(
        &[
            "--image",
            &new_arg,
            "--instance",
            &format!("a={port_a}"),
            "--instance",
            &format!("b={port_b}"),
        ],
        0,
    );
    assert_eq!(
        calls,
        [
            "systemctl enable --now unikernel@a.service unikernel-health@a.timer unikernel@b.service unikernel-health@b.timer"
        ]
    );
    for (name, port) in [("a", &port_a), ("b", &port_b)] {
        let path = rig.root.join(format!("etc/unikernel/instances/{name}.env"));
        let text = fs::read_to_string(&path).unwrap();
        let env = parse_env_file(&text).unwrap();
        let mut shipped = parse_env_file(&deploy_file("unikernel.env")).unwrap();
        shipped.insert("UNIKERNEL_PORT".into(), port.to_string());
        // Each instance its own admin port (site port + 1000) and access log.
        let admin = port.parse::<u32>().unwrap() + 1000;
        shipped.insert("UNIKERNEL_ADMIN_PORT".into(), admin.to_string());
        shipped.insert(
            "UNIKERNEL_ACCESS_LOG".into(),
            format!("/var/log/unikernel/{name}-access.log"),
        );
        assert_eq!(env, shipped, "{name}.env");
        assert_eq!(mode_of(&path), 0o644);
    }

    // Upgrade with instances: one at a time, skipping what does not run; the
    // installed instances stay what is enabled (not the single service).
    fs::write(rig.dir.join("inactive"), "unikernel.service\n").unwrap();
    let (_, calls) = rig.run(&["--image", &image_arg], 0);
    assert_eq!(
        calls,
        [
            "systemctl is-active --quiet unikernel.service",
            "systemctl is-active --quiet unikernel@a.service",
            "systemctl restart unikernel@a.service",
            "systemctl is-active --quiet unikernel@b.service",
            "systemctl restart unikernel@b.service",
            "systemctl enable --now unikernel@a.service unikernel-health@a.timer unikernel@b.service unikernel-health@b.timer",
        ]
    );

    // Waiting for /health between restarts: `a` answers, `b` does not, so
    // the roll-back stops there and says so.
    let mut cmd = rig.command(&["--rollback"], true);
    cmd.env("UNIKERNEL_WAIT", "2");
    let out = run_bounded(&mut cmd, rig.dir.path(), TOOL_TIMEOUT);
    let _ = fs::remove_file(rig.dir.join("calls"));
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stdout.contains("unikernel@a.service answers")
            && out
                .stderr
                .contains("unikernel@b.service did not answer /health within 2s"),
        "{}",
        out.text()
    );
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    drop(healthy);

    // Uninstall: everything but the settings and the user.
    let (_, calls) = rig.run(&["--uninstall"], 0);
    assert_eq!(
        calls,
        [
            "systemctl disable --now unikernel.service unikernel-health.timer unikernel@a.service unikernel-health@a.timer unikernel@b.service unikernel-health@b.timer",
            "systemctl daemon-reload"
        ]
    );
    let left: Vec<String> = with_accounts(rig.tree()).into_keys().collect();
    assert_eq!(
        left,
        [
            "/etc/unikernel/instances/a.env",
            "/etc/unikernel/instances/b.env",
            "/etc/unikernel/unikernel.env"
        ]
    );
    assert_eq!(rig.users(), ["root", "unikernel"]);

    // Purge: the settings and the user too.
    let (_, calls) = rig.run(&["--uninstall", "--purge"], 0);
    assert_eq!(calls.last().map(String::as_str), Some("userdel unikernel"));
    assert!(
        with_accounts(rig.tree()).is_empty(),
        "{:?}",
        rig.tree().keys()
    );
    assert_eq!(rig.users(), ["root"]);
}

#[test]
fn install_sh_refuses_what_it_should() {
    let rig = InstallRig::new("install-refuse");
    let image = image_copy(&rig.dir);
    let image_arg = image.to_string_lossy().into_owned();

    // --root without recorders would act on this machine: refused.
    let out = run_bounded(
        &mut rig.command(&["--image", &image_arg], false),
        rig.dir.path(),
        TOOL_TIMEOUT,
    );
    assert_eq!(out.code(), Some(2), "{}", out.text());
    assert!(out.stderr.contains("SYSTEMCTL"), "{}", out.text());
    assert!(!rig.dir.join("calls").exists());

    let not_elf = rig.dir.join("not.elf");
    fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
    let (out, calls) = rig.run(&["--image", &not_elf.to_string_lossy()], 2);
    assert!(out.stderr.contains("not an ELF"), "{}", out.text());
    assert!(calls.is_empty());
    let (_, calls) = rig.run(&["--image", &image_arg, "--instance", "a/b=1"], 2);
    assert!(calls.is_empty());
    let (_, calls) = rig.run(&["--image", &image_arg, "--instance", "a=99999"], 2);
    assert!(calls.is_empty());
    rig.run(&["--purge"], 2);
    rig.run(&["--rollback", "--image", &image_arg], 2);
    rig.run(&["--bogus"], 2);
    let (out, _) = rig.run(&["--rollback"], 1);
    assert!(
        out.stderr.contains("no previous image or bundle"),
        "{}",
        out.text()
    );
    let (out, calls) = rig.run(&["--image", &image_arg, "--bundle", &image_arg], 2);
    assert!(
        out.stderr.contains("is not a site bundle"),
        "{}",
        out.text()
    );
    assert!(calls.is_empty());
    rig.run(&["--site", "/nonexistent", "--bundle", &image_arg], 2);
    let files: Vec<String> = rig.tree().into_keys().collect();
    assert_eq!(
        files,
        ["/etc/group", "/etc/passwd"],
        "refused runs left files"
    );
}
