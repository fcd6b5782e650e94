//! What the comparison needs on the machine: the Debian packages of the servers compared (apt-get,
//! as root, when missing) and a PAM test user that every server logs on (created with a random
//! password, removed with every process it still has when dropped).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::servers::ServerKind;
use crate::procfs;

/// The Debian packages each server needs, with the programs that prove them installed.
fn packages(kind: ServerKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        // The session's X server (Xorg with the dummy driver), and xterm for the terminal workloads.
        ServerKind::Rdhost => &[
            ("xserver-xorg-core", "/usr/lib/xorg/Xorg"),
            ("xserver-xorg-video-dummy", "/usr/lib/xorg/modules/drivers/dummy_drv.so"),
            ("x11-xkb-utils", "/usr/bin/setxkbmap"),
            ("xterm", "/usr/bin/xterm"),
        ],
        ServerKind::Xrdp => &[
            ("xrdp", "/usr/sbin/xrdp"),
            ("xorgxrdp", "/usr/lib/xorg/modules/drivers/xrdpdev_drv.so"),
            ("xterm", "/usr/bin/xterm"),
        ],
        ServerKind::Shadow => &[
            ("freerdp2-shadow-x11", "/usr/bin/freerdp-shadow-cli"),
            ("xvfb", "/usr/bin/Xvfb"),
            ("xterm", "/usr/bin/xterm"),
        ],
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Install what `kinds` need and is missing. Needs root for that; without root (or with
/// `install` false) a missing package is an error naming it.
pub fn ensure_packages(kinds: &[ServerKind], install: bool) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    for &kind in kinds {
        for &(package, file) in packages(kind) {
            if !std::path::Path::new(file).exists() && !missing.contains(&package) {
                missing.push(package);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !install || !is_root() {
        bail!("missing packages: {} (install them: apt-get install {}; the benchmark installs them itself when run as root)", missing.join(" "), missing.join(" "));
    }
    eprintln!("rdhost-bench: installing {}", missing.join(" "));
    // Installing xrdp must not start the system's xrdp daemons (port 3389, sesman on 3350):
    // policy-rc.d refuses service starts for the duration, and only one we created is removed.
    let policy = PathBuf::from("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        std::fs::write(&policy, "#!/bin/sh\n# rdhost-bench: no service starts while it installs packages\nexit 101\n")?;
        std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let result = (|| -> Result<()> {
        let update = Command::new("apt-get").args(["update", "-qq"]).env("DEBIAN_FRONTEND", "noninteractive").status().context("run apt-get update")?;
        if !update.success() {
            bail!("apt-get update failed ({update})");
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("run apt-get install")?;
        if !status.success() {
            bail!("apt-get install {} failed ({status})", missing.join(" "));
        }
        Ok(())
    })();
    if ours {
        let _ = std::fs::remove_file(&policy);
    }
    result
}

/// `dpkg-query`'s version of an installed package, or "not installed".
pub fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "not installed".into())
}

/// A system user that PAM knows, with a home and `/bin/sh` as its shell; removed (with every
/// process it has) when dropped.
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub uid: u32,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl TestUser {
    /// Create `name` (a leftover of an interrupted run is removed first). Root only.
    pub fn create(name: &str) -> Result<TestUser> {
        if !is_root() {
            bail!("the comparison creates a PAM test user and starts xrdp's daemons: run it as root");
        }
        if let Some(uid) = uid_of(name) {
            eprintln!("rdhost-bench: removing the test user {name} a previous run left");
            kill_user_processes(uid);
            let _ = run("userdel", &["-r", name]);
        }
        run("useradd", &["--create-home", "--shell", "/bin/sh", "--comment", "rdhost-bench test user", name])?;
        let password = random_hex(12)?;
        let uid = uid_of(name).context("the new user has no uid")?;
        // From here on, dropping `user` removes the account again.
        let user = TestUser { name: name.into(), password: password.clone(), uid };
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().context("run chpasswd")?;
        writeln!(chpasswd.stdin.take().context("chpasswd stdin")?, "{name}:{password}")?;
        let out = chpasswd.wait_with_output()?;
        if !out.status.success() {
            bail!("chpasswd failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(user)
    }

    /// End every process of the user (a session that must not be reconnected to).
    pub fn end_processes(&self) {
        kill_user_processes(self.uid);
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        kill_user_processes(self.uid);
        if let Err(e) = run("userdel", &["-r", &self.name]) {
            eprintln!("rdhost-bench: could not remove the test user {}: {e:#}", self.name);
        }
    }
}

fn passwd_field(name: &str, field: usize) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(field).map(|s| s.to_string()))
}

fn uid_of(name: &str) -> Option<u32> {
    passwd_field(name, 2)?.parse().ok()
}

/// Every pid of `uid`, with its start time (so a recycled pid is never signalled).
fn user_processes(uid: u32) -> Vec<(u32, u64)> {
    procfs::server_processes(&[], Some(uid)).into_iter().map(|p| (p.pid, p.start)).collect()
}

/// SIGTERM every process of `uid`, SIGKILL what is left after 3 s, wait until none is left (10 s).
pub fn kill_user_processes(uid: u32) {
    if uid == 0 {
        return; // never root's
    }
    let signal = |procs: &[(u32, u64)], sig: i32| {
        for &(pid, start) in procs {
            if procfs::start_time(pid) == Some(start) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, sig) };
            }
        }
    };
    let procs = user_processes(uid);
    if procs.is_empty() {
        return;
    }
    signal(&procs, libc::SIGTERM);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let left = user_processes(uid);
        if left.is_empty() {
            return;
        }
        if t0.elapsed() > Duration::from_secs(3) {
            signal(&left, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
