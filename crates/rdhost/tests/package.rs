//! Installing as a system service: the Debian package (`cargo deb -p rdhost`) built from the
//! binary under test installs, verifies (`systemd-analyze verify`), starts by the unit's command,
//! logs a system user on through the installed PAM file, and removes as promised (state kept
//! until purge); the shipped config states every key with its true default; logs go to the
//! journal (native protocol, levels as priorities) only when stderr is the journal's stream.
//!
//! The package test needs root, cargo-deb, dpkg, systemd-analyze and useradd: under CI a missing
//! one fails it, elsewhere it is skipped. It installs and purges the package for real and sets
//! aside (and puts back) /var/lib/rdhost, /etc/rdhost and /etc/pam.d/rdhost if they exist.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdhost::config::{CONFIG_KEYS_HELP, ServeConfig, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_rdhost");

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The keys `rdhost serve --help` lists (`  key = …` lines, and the `[grants]` table).
fn documented_keys() -> Vec<String> {
    let mut keys: Vec<String> = CONFIG_KEYS_HELP
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(" = ").map(|(k, _)| k.to_owned()))
        .filter(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .collect();
    assert!(CONFIG_KEYS_HELP.contains("[grants]"), "the help no longer shows [grants]");
    keys.retain(|k| k != "helpdesk"); // the example entry of [grants]
    keys.push("grants".to_owned());
    keys
}

/// Keys without a default: the file shows an example, not a default.
const EXAMPLE_KEYS: &[&str] = &["display", "xauthority", "max_sessions", "admin_group", "grants"];

#[test]
fn shipped_config_states_every_key_with_its_default() {
    let text = read(&repo_file("packaging/rdhost.toml"));
    // Everything commented out: the file as shipped changes nothing.
    let shipped = Settings::from_toml(&text, Path::new("/etc/rdhost/rdhost.toml")).expect("the shipped config parses");
    assert_eq!(shipped, Settings::default(), "the shipped config must set nothing");

    // Uncommented, every `#key = value` line must be a known key with a valid value...
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let all = Settings::from_toml(&uncommented, Path::new("/etc/rdhost/rdhost.toml"))
        .unwrap_or_else(|e| panic!("the config's commented keys do not parse: {e}"));
    // ...every documented key must be there...
    for key in documented_keys() {
        let shown = if key == "grants" { "\n#[grants]\n".to_owned() } else { format!("\n#{key} = ") };
        assert!(text.contains(&shown), "packaging/rdhost.toml does not show `{key}` (add it, commented, with its default)");
    }
    // ...and the values shown as defaults must be the defaults.
    let defaults_only = Settings {
        display: None,
        xauthority: None,
        max_sessions: None,
        admin_group: None,
        grants: None,
        ..all.clone()
    };
    let state = Some(PathBuf::from(rdhost::state_dir::SYSTEM_STATE_DIR));
    let mut stated = ServeConfig::from_settings(defaults_only, state.clone()).expect("the stated defaults are valid");
    let mut real = ServeConfig::from_settings(Settings::default(), state).unwrap();
    // The control socket's default depends on who runs the test; the file states root's.
    assert_eq!(stated.control_socket, Path::new(rdhost::control::client::SYSTEM_SOCKET));
    stated.control_socket = real.control_socket.clone();
    real.state_dir = stated.state_dir.clone();
    assert_eq!(stated, real, "packaging/rdhost.toml states a default that is not the default");
    // The examples are examples: each differs from "not set".
    for key in EXAMPLE_KEYS {
        let set = match *key {
            "display" => all.display.is_some(),
            "xauthority" => all.xauthority.is_some(),
            "max_sessions" => all.max_sessions.is_some(),
            "admin_group" => all.admin_group.is_some(),
            _ => all.grants.is_some(),
        };
        assert!(set, "the example for `{key}` is missing");
    }
}

/// The package's metadata as Debian wants it: a maintainer with an address lintian accepts
/// (not on localhost: `bogus-mail-host`), and a changelog whose first entry is this version.
#[test]
fn package_metadata_names_a_maintainer_and_this_version() {
    let manifest = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let deb: toml::Value = toml::from_str::<toml::Value>(&manifest).unwrap()["package"]["metadata"]["deb"].clone();
    let maintainer = deb["maintainer"].as_str().unwrap();
    let (name, address) = maintainer.strip_suffix('>').and_then(|m| m.split_once(" <")).expect("maintainer is \"Name <address>\"");
    let (_, domain) = address.split_once('@').expect("an e-mail address");
    assert!(!name.is_empty() && domain.contains('.') && !domain.contains("localhost"), "{maintainer}");
    let changelog = read(&repo_file("packaging/changelog"));
    let first = changelog.lines().next().unwrap();
    assert!(first.starts_with(&format!("rdhost ({}-1) ", env!("CARGO_PKG_VERSION"))), "packaging/changelog's first entry is not this version: {first}");
    assert!(changelog.contains(&format!(" -- {maintainer}  ")), "the changelog entry is signed by the maintainer");
}

/// Start `rdhost serve` with `stderr_file` as its stderr and wait until it has started; the
/// address it listens on.
/// Panics (with its output) when it does not start.
fn start_serve(cmd: &mut Command, stderr_file: &Path) -> (Running, std::net::SocketAddr) {
    let stderr = std::fs::File::create(stderr_file).unwrap();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).spawn().expect("start rdhost serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            // The last line printed at start.
            if line.starts_with("control socket: ") {
                let _ = tx.send(Ok(seen.clone()));
            }
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(seen)) => {
            let addr = seen.lines().find_map(|l| l.strip_prefix("rdhost listening on ")).expect("the listen line");
            (Running(child), addr.trim().parse().unwrap())
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rdhost serve did not start: stdout {other:?}\nstderr:\n{}", read(stderr_file));
        }
    }
}

/// A started host, killed if a failing test leaves it running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// [`start_serve`], then [`stop`] at once.
fn serve_until_started(cmd: &mut Command, stderr_file: &Path) -> std::process::ExitStatus {
    let (mut child, _) = start_serve(cmd, stderr_file);
    stop(&mut child, stderr_file)
}

/// Whether `pid` has a handler for SIGTERM (`SigCgt` in /proc/PID/status, bit 15 - 1).
fn catches_sigterm(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok().is_some_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
    })
}

/// SIGTERM, as `systemctl stop` sends, and wait for the exit. The host sets up its handler just
/// after its last start line: wait for that, or the signal's default action ends it.
fn stop(Running(child): &mut Running, stderr_file: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !catches_sigterm(child.id()) {
        assert!(Instant::now() < deadline, "rdhost serve never handled SIGTERM; stderr:\n{}", read(stderr_file));
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rdhost serve did not stop within 20 s of SIGTERM; stderr:\n{}", read(stderr_file));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve_in(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--auth", "users-file", "--log", "info", "--state-dir"])
        .arg(dir.join("state"))
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG");
    cmd
}

#[test]
fn logs_go_to_the_journal_only_when_stderr_is_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let journald_runs = Path::new("/run/systemd/journal/socket").exists();

    // Another stream's name (a variable inherited from a service, stderr redirected): stderr.
    let log = dir.path().join("other.log");
    let status = serve_until_started(serve_in(dir.path()).env("JOURNAL_STREAM", "1:1"), &log);
    assert!(status.success(), "{status}");
    let text = read(&log);
    assert!(text.contains("SIGTERM: shutting down") && !text.contains("journal"), "{text}");

    // stderr is the named stream, as under systemd: the journal, or stderr with a note when
    // journald cannot be reached.
    let log = dir.path().join("journal.log");
    std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut cmd = serve_in(dir.path());
    cmd.env("JOURNAL_STREAM", &stream);
    // serve_until_started re-creates the file: same inode, truncated.
    let status = serve_until_started(&mut cmd, &log);
    assert!(status.success(), "{status}");
    let text = read(&log);
    if journald_runs {
        assert!(!text.contains("SIGTERM: shutting down"), "logged to stderr although journald runs:\n{text}");
    } else {
        assert!(text.contains("journald's socket cannot be reached"), "no note that the journal is missing:\n{text}");
        assert!(text.contains("SIGTERM: shutting down"), "no log on stderr after the note:\n{text}");
    }
}

/// One journal record in the native protocol: `KEY=value\n`, or `KEY\n` + 64-bit LE length +
/// bytes + `\n` for values with newlines.
fn journal_fields(mut datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while !datagram.is_empty() {
        let end = datagram.iter().position(|&b| b == b'\n').unwrap_or(datagram.len());
        let line = &datagram[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((String::from_utf8_lossy(&line[..eq]).into_owned(), String::from_utf8_lossy(&line[eq + 1..]).into_owned()));
            datagram = datagram.get(end + 1..).unwrap_or_default();
        } else {
            let len = u64::from_le_bytes(datagram[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &datagram[end + 9..end + 9 + len];
            fields.push((String::from_utf8_lossy(line).into_owned(), String::from_utf8_lossy(value).into_owned()));
            datagram = datagram.get(end + 10 + len..).unwrap_or_default();
        }
    }
    fields
}

/// Under systemd, records reach journald's socket with the level as PRIORITY. journald itself
/// does not run here: a socket of the test's stands in for it at /run/systemd/journal/socket, in
/// a mount namespace of the host's own (root only).
#[test]
fn under_systemd_records_reach_the_journal_socket() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (a mount namespace) under CI");
        eprintln!("under_systemd_records_reach_the_journal_socket: skipped, needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake_run = dir.path().join("run");
    std::fs::create_dir_all(fake_run.join("systemd/journal")).unwrap();
    let journal = std::os::unix::net::UnixDatagram::bind(fake_run.join("systemd/journal/socket")).unwrap();
    journal.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let log = dir.path().join("stderr.log");
    std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();

    // /run of the namespace is the fake one; stderr is the stream JOURNAL_STREAM names.
    let serve = serve_in(dir.path());
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", "mount --bind \"$0\" /run && exec \"$@\""])
        .arg(&fake_run)
        .arg(serve.get_program())
        .args(serve.get_args())
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    let status = serve_until_started(&mut cmd, &log);
    assert!(status.success(), "{status}; stderr:\n{}", read(&log));

    let mut records = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = journal.recv(&mut buf) {
        if n > 0 {
            records.push(journal_fields(&buf[..n]));
        }
    }
    let field = |r: &[(String, String)], key: &str| r.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let find = |message: &str| {
        records
            .iter()
            .find(|r| field(r, "MESSAGE").is_some_and(|m| m.contains(message)))
            .unwrap_or_else(|| panic!("no journal record with {message:?}: {records:?}"))
    };
    let listening = find("listening");
    assert_eq!(field(listening, "PRIORITY").as_deref(), Some("6"), "info is priority 6: {listening:?}");
    assert_eq!(field(listening, "SYSLOG_IDENTIFIER").as_deref(), Some("rdhost"), "{listening:?}");
    assert!(field(listening, "TARGET").is_some_and(|t| t.starts_with("rdhost")), "{listening:?}");
    find("SIGTERM: shutting down");
    let text = read(&log);
    assert!(!text.contains("listening") && !text.contains("SIGTERM"), "logged to stderr as well:\n{text}");
}

// ---------------------------------------------------------------------------------------------
// The Debian package

const TOOLS: &[(&str, &str)] = &[
    ("useradd", "passwd"),
    ("chpasswd", "passwd"),
    ("userdel", "passwd"),
    ("dpkg", "dpkg"),
    ("dpkg-deb", "dpkg"),
    ("systemd-analyze", "systemd"),
    ("deb-systemd-helper", "init-system-helpers"),
];

/// Files of an rdhost that is not the package's (a test host's state as root, a hand-made
/// config): set aside while the package test runs and put back afterwards.
const SET_ASIDE: &[&str] = &["/var/lib/rdhost", "/etc/rdhost", "/etc/pam.d/rdhost"];

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn installed_status() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "rdhost"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Can the package test run here? Under CI every missing piece is a failure, elsewhere a skip.
fn package_test_possible(test: &str, cargo: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (dpkg -i)".to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (tool, package) in TOOLS {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            missing.push(format!("{tool} (apt package {package})"));
        }
    }
    let cargo_deb = Command::new(cargo).args(["deb", "--version"]).output();
    if !cargo_deb.is_ok_and(|o| o.status.success()) {
        missing.push("cargo-deb (cargo install cargo-deb --locked)".to_owned());
    }
    let status = installed_status();
    if !status.is_empty() && !status.contains("not-installed") {
        missing.push(format!(
            "a machine without the rdhost package (it is \"{status}\" here; this test installs and purges it: `dpkg --purge rdhost` first, which deletes /var/lib/rdhost)"
        ));
    }
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: needs {}", missing.join(", "));
    eprintln!("{test}: skipped, needs {}", missing.join(", "));
    false
}

/// A system user made for the PAM logon through the installed /etc/pam.d/rdhost.
const TEST_USER: &str = "rdhostpkgtest";

/// Puts back what was set aside, and purges the package and deletes the test user if the test
/// stopped half-way.
struct Cleanup {
    saved: Vec<(PathBuf, PathBuf)>,
    installed: bool,
    user: bool,
}

impl Cleanup {
    fn set_aside() -> Cleanup {
        let mut saved = Vec::new();
        for path in SET_ASIDE {
            let path = PathBuf::from(path);
            if path.symlink_metadata().is_ok() {
                let aside = PathBuf::from(format!("{}.package-test-{}", path.display(), std::process::id()));
                std::fs::rename(&path, &aside).unwrap_or_else(|e| panic!("set {} aside: {e}", path.display()));
                saved.push((path, aside));
            }
        }
        Cleanup { saved, installed: false, user: false }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.user {
            let _ = Command::new("userdel").args(["-r", TEST_USER]).stdin(Stdio::null()).output();
        }
        if self.installed {
            let _ = Command::new("dpkg").args(["--purge", "rdhost"]).stdin(Stdio::null()).output();
        }
        for (path, aside) in &self.saved {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
            if let Err(e) = std::fs::rename(aside, path) {
                eprintln!("could not put {} back from {}: {e}", path.display(), aside.display());
            }
        }
    }
}

/// The unit's ExecStart= command line, split as systemd does for one without quotes.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("the unit has ExecStart=");
    assert!(!line.contains(['"', '\'', '$', '%']), "ExecStart= needs real parsing now: {line}");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn debian_package_installs_starts_and_removes() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    if !package_test_possible("debian_package_installs_starts_and_removes", &cargo) {
        return;
    }
    let work = tempfile::tempdir().unwrap();

    // Package the binary under test: building a release binary just for this would add minutes.
    // `target/<dir>/rdhost` is where cargo-deb looks; `dev` builds live in `debug`.
    let bin = Path::new(BIN).canonicalize().unwrap();
    let profile_dir = bin.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    };
    let out_dir = work.path().join("deb");
    run(
        "cargo deb",
        Command::new(&cargo)
            .args(["deb", "--no-build", "--strip", "--no-dbgsym", "--fast", "--profile", &profile, "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--output")
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", target_dir),
    );
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");
    eprintln!("{}: {} bytes", deb.display(), deb.metadata().unwrap().len());

    // What it holds.
    let listing = String::from_utf8(run("dpkg-deb -c", Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout).unwrap();
    for file in [
        "./usr/bin/rdhost",
        "./usr/lib/systemd/system/rdhost.service",
        "./etc/pam.d/rdhost",
        "./etc/rdhost/rdhost.toml",
        "./usr/share/doc/rdhost/copyright",
        "./usr/share/doc/rdhost/changelog.Debian.gz",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(&format!(" {file}"))), "{file} missing from the package:\n{listing}");
    }
    assert!(!listing.contains("./var/lib/rdhost"), "the state directory is made at run time, not shipped:\n{listing}");
    let conffiles = String::from_utf8(
        run("dpkg-deb --info … conffiles", Command::new("dpkg-deb").arg("--info").arg(&deb).arg("conffiles")).stdout,
    )
    .unwrap();
    for conf in ["/etc/rdhost/rdhost.toml", "/etc/pam.d/rdhost"] {
        assert!(conffiles.lines().any(|l| l == conf), "{conf} is not a conffile: {conffiles}");
    }

    let mut cleanup = Cleanup::set_aside();
    let dpkg = |args: &[&str]| {
        let mut cmd = Command::new("dpkg");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    cleanup.installed = true;
    run("dpkg -i", dpkg(&["-i"]).arg(&deb));
    assert!(installed_status().contains("install ok installed"), "{}", installed_status());

    // The files, as shipped.
    let unit_path = Path::new("/lib/systemd/system/rdhost.service");
    for (installed, source) in [
        (unit_path, "packaging/rdhost.service"),
        (Path::new("/etc/pam.d/rdhost"), "packaging/pam.d/rdhost"),
        (Path::new("/etc/rdhost/rdhost.toml"), "packaging/rdhost.toml"),
    ] {
        assert_eq!(read(installed), read(&repo_file(source)), "{} differs from {source}", installed.display());
    }
    let mode = std::fs::metadata("/usr/bin/rdhost").unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "/usr/bin/rdhost mode {mode:o}");
    // postinst enabled it (no systemd running is needed for that).
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/rdhost.service").symlink_metadata().is_ok(),
        "postinst did not enable rdhost.service"
    );

    let verify = run("systemd-analyze verify", Command::new("systemd-analyze").arg("verify").arg(unit_path));
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(!complaints.contains("rdhost"), "systemd-analyze verify complains:\n{complaints}");

    let version = run("rdhost --version", Command::new("/usr/bin/rdhost").arg("--version"));
    let version = String::from_utf8_lossy(&version.stdout);
    assert_eq!(version.trim(), format!("rdhost {}", env!("CARGO_PKG_VERSION")));

    // The unit's command, by hand (systemd is not PID 1 in CI's container), on a loopback port
    // and a control socket of the test's own; the state directory is the unit's.
    let unit = read(unit_path);
    let argv = exec_start(&unit);
    assert_eq!(argv[0], "/usr/bin/rdhost");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .args(["--listen", "127.0.0.1:0", "--control-socket"])
        .arg(work.path().join("control.sock"))
        .env_remove("JOURNAL_STREAM");
    let log = work.path().join("serve.log");
    let (mut host, addr) = start_serve(&mut cmd, &log);

    // A system user logs on through PAM with the shipped config and /etc/pam.d/rdhost (the
    // users file is empty, so `auth = "auto"` asks PAM); a wrong password is refused.
    let password = format!("Pkg-{}-test", std::process::id());
    let _ = Command::new("userdel").args(["-r", TEST_USER]).stderr(Stdio::null()).output(); // an earlier run's
    cleanup.user = true;
    run("useradd", Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", TEST_USER]));
    let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut chpasswd.stdin.take().unwrap(), format!("{TEST_USER}:{password}\n").as_bytes()).unwrap();
    assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
    let view = |password: &str| {
        Command::new("/usr/bin/rdhost")
            .args(["view", &addr.to_string(), "--user", TEST_USER, "--password", password, "--snapshot"])
            .arg(work.path().join("logon.png"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let wrong = view("not-the-password");
    assert!(!wrong.status.success(), "a wrong password logged on; host log:\n{}", read(&log));
    let right = view(&password);
    assert!(
        right.status.success(),
        "PAM logon through /etc/pam.d/rdhost failed: {}\nhost log:\n{}",
        String::from_utf8_lossy(&right.stderr),
        read(&log)
    );
    let host_log = read(&log);
    assert!(host_log.contains(&format!("user=\"{TEST_USER}\" session=1")), "no session for {TEST_USER}:\n{host_log}");

    let status = stop(&mut host, &log);
    assert!(status.success(), "{status}; stderr:\n{}", read(&log));
    run("userdel", Command::new("userdel").args(["-r", TEST_USER]));
    cleanup.user = false;
    assert!(Path::new("/var/lib/rdhost/tls/cert.pem").is_file(), "the installed host made no state in /var/lib/rdhost");
    let state_mode = std::fs::metadata("/var/lib/rdhost").unwrap().permissions().mode() & 0o777;
    assert_eq!(state_mode, 0o700, "/var/lib/rdhost mode {state_mode:o}");

    // Removal keeps the state (and the conffiles); purge deletes both.
    std::fs::write("/var/lib/rdhost/marker", "kept across removal\n").unwrap();
    run("dpkg -r", &mut dpkg(&["-r", "rdhost"]));
    assert!(!Path::new("/usr/bin/rdhost").exists(), "dpkg -r left /usr/bin/rdhost");
    assert!(!unit_path.exists(), "dpkg -r left the unit");
    assert_eq!(read(Path::new("/var/lib/rdhost/marker")), "kept across removal\n", "dpkg -r deleted the state directory");
    assert!(Path::new("/etc/rdhost/rdhost.toml").exists(), "dpkg -r deleted a conffile");
    run("dpkg --purge", &mut dpkg(&["--purge", "rdhost"]));
    cleanup.installed = false;
    for gone in [
        "/var/lib/rdhost",
        "/etc/rdhost",
        "/etc/pam.d/rdhost",
        "/etc/systemd/system/multi-user.target.wants/rdhost.service",
        "/etc/systemd/system/rdhost.service",
    ] {
        assert!(Path::new(gone).symlink_metadata().is_err(), "dpkg --purge left {gone}");
    }
    let status = installed_status();
    assert!(status.is_empty() || status.contains("not-installed"), "after purge: {status}");
}

// ---------------------------------------------------------------------------------------------
// Configuration errors: one exit status, which the unit does not restart on

/// `rdhost serve` with `args`, its own state directory and control socket in `dir`; its output.
fn serve_once(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start rdhost serve");
    // A host that starts (the test's mistake) must not hang it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("rdhost serve {args:?} kept running; stdout:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_config_error_exits_78_with_what_to_fix_and_systemd_does_not_restart_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let typo = config("typo.toml", "listen = \"127.0.0.1:0\"\nlisten_port = 3389\n");
    let bad_value = config("value.toml", "listen = \"127.0.0.1:0\"\ndesktop = \"wayland\"\n");
    let invalid = config("invalid.toml", "listen = \"127.0.0.1:0\"\nmax_sessions = 0\n");
    let broken = config("broken.toml", "listen = \"127.0.0.1:0\n");
    let missing = dir.path().join("missing.toml").to_str().unwrap().to_owned();
    // (arguments, what the message must name so the administrator knows what to fix)
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--config", &typo], vec![&typo, "listen_port"]),
        (vec!["--config", &bad_value], vec![&bad_value, "wayland", "terminal"]),
        (vec!["--config", &invalid], vec!["`max_sessions`", "at least 1"]),
        (vec!["--config", &broken], vec![&broken, "line 1"]),
        (vec!["--config", &missing], vec![&missing]),
        (vec!["--listen", "127.0.0.1:0", "--desktop", "wayland"], vec!["--desktop", "wayland"]),
        (vec!["--listen", "127.0.0.1:0", "--no-such-flag"], vec!["--no-such-flag"]),
        (vec!["--listen", "127.0.0.1:0", "--max-sessions", "0"], vec!["`max_sessions`"]),
    ];
    for (args, needles) in cases {
        let out = serve_once(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i32::from(rdhost::config::EX_CONFIG)), "serve {args:?}: {}\n{stderr}", out.status);
        for needle in needles {
            assert!(stderr.contains(needle), "serve {args:?}: the message does not name {needle:?}:\n{stderr}");
        }
        assert!(!String::from_utf8_lossy(&out.stdout).contains("rdhost listening"), "serve {args:?} started listening");
    }

    // A failure a restart may cure (the address is taken, for now) keeps the ordinary status.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = serve_once(dir.path(), &["--listen", &addr, "--auth", "users-file"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");

    // Other commands keep clap's usage status.
    let out = Command::new(BIN).args(["user", "add"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    // The unit restarts on failure, except on this status.
    let unit = read(&repo_file("packaging/rdhost.service"));
    let prevent: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(unit.lines().any(|l| l == "Restart=on-failure"), "{unit}");
    assert!(prevent.contains(&rdhost::config::EX_CONFIG.to_string().as_str()), "RestartPreventExitStatus= lacks 78: {prevent:?}");
}

/// `systemd-analyze verify` of the unit as shipped, with ExecStart= pointing at the binary under
/// test (the package test verifies the installed one; this runs without root and without a
/// package build).
#[test]
fn the_unit_verifies() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join("systemd-analyze").is_file()) {
        assert!(std::env::var_os("CI").is_none(), "the_unit_verifies: needs systemd-analyze (apt package systemd)");
        eprintln!("the_unit_verifies: skipped, needs systemd-analyze");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = read(&repo_file("packaging/rdhost.service")).replace("ExecStart=/usr/bin/rdhost ", &format!("ExecStart={BIN} "));
    assert!(unit.contains(&format!("ExecStart={BIN} serve")), "the unit's ExecStart= changed shape");
    let unit_path = dir.path().join("rdhost.service");
    std::fs::write(&unit_path, unit).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit_path).stdin(Stdio::null()).output().unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!complaints.contains("rdhost.service"), "systemd-analyze verify complains:\n{complaints}");
}
