//! A session's processes end at logoff, including those that called `setsid`, when the session
//! has a cgroup; without one (forced here), a `setsid` process escapes as it always did.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use rdhost_desktop::process::{Containment, Launch, Mechanism, SessionProcesses, is_alive};
use tokio::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rdhost-process-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pid of a `sleep 1000` that left the session with `setsid`, once the program wrote it.
async fn escaped_sleep(pidfile: &std::path::Path) -> i32 {
    for _ in 0..500 {
        if let Some(pid) = std::fs::read_to_string(pidfile).ok().and_then(|s| s.trim().parse().ok()) {
            // The file is written just before the exec; wait until it is sleep.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the program did not start its setsid sleep");
}

/// Start `sh -c` that leaves a `setsid` sleep behind and then waits; end the session.
async fn run_and_end(containment: Containment, name: &str) -> (Mechanism, i32, bool) {
    let dir = scratch(name);
    let pidfile = dir.join("pid");
    let procs = SessionProcesses::new(containment);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("setsid sh -c 'echo $$ > {}; exec sleep 1000' & exec sleep 1000", pidfile.display()));
    let launch = Launch { switch: None, cwd: CString::new("/").unwrap(), controlling_tty: false, inherit_fds: Vec::new() };
    let mut leader = procs.spawn(cmd, launch).unwrap();
    let escaped = escaped_sleep(&pidfile).await;
    let sid_of = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(4).unwrap().parse::<i32>().unwrap()
    };
    assert_ne!(sid_of(escaped), leader.id().unwrap() as i32, "the sleep did not leave the session");
    tokio::time::timeout(Duration::from_secs(10), procs.end(&mut leader, Duration::from_millis(500))).await.expect("ending took too long");
    let mechanism = procs.mechanism();
    let alive = is_alive(escaped);
    if alive {
        // Never leave it behind, whatever the test says.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(escaped), nix::sys::signal::Signal::SIGKILL);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    (mechanism, escaped, alive)
}

fn cgroups_expected() -> bool {
    // This machine and CI run the tests as root on a cgroup v2 (or hybrid) hierarchy.
    nix::unistd::geteuid().is_root() && (std::path::Path::new("/sys/fs/cgroup/cgroup.procs").exists() || std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists())
}

#[tokio::test]
async fn a_setsid_process_ends_with_its_session_cgroup() {
    let (mechanism, pid, alive) = run_and_end(Containment::Auto, "cgroup").await;
    match &mechanism {
        Mechanism::Cgroup(dir) => {
            assert!(!alive, "the setsid sleep {pid} outlived its session");
            assert!(!dir.exists(), "the session cgroup {} was left behind", dir.display());
        }
        Mechanism::ProcessSessions => assert!(!cgroups_expected(), "cgroups are writable here but were not used"),
    }
}

#[tokio::test]
async fn without_cgroups_a_setsid_process_escapes_as_before() {
    let (mechanism, pid, alive) = run_and_end(Containment::ProcessSessions, "sessions").await;
    assert_eq!(mechanism, Mechanism::ProcessSessions);
    assert!(alive, "the setsid sleep {pid} was ended without a cgroup: the fallback is not what it says");
}

#[tokio::test]
async fn the_unix_session_still_ends_without_cgroups() {
    let procs = SessionProcesses::new(Containment::ProcessSessions);
    let mut cmd = Command::new("/bin/sh");
    // A shell that ignores SIGHUP, with a background job: both need the SIGKILL after the grace.
    cmd.arg("-c").arg("trap '' HUP; sleep 1000 & wait");
    let launch = Launch { switch: None, cwd: CString::new("/").unwrap(), controlling_tty: false, inherit_fds: Vec::new() };
    let mut leader = procs.spawn(cmd, launch).unwrap();
    let sid = leader.id().unwrap() as i32;
    for _ in 0..500 {
        if procs.members().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let members = procs.members();
    assert!(members.len() >= 2, "the background job did not start: {members:?}");
    procs.end(&mut leader, Duration::from_millis(300)).await;
    assert!(rdhost_desktop::process::session_members(sid).is_empty());
    assert!(members.iter().all(|&p| !is_alive(p)), "left: {members:?}");
}

#[tokio::test]
async fn dropping_the_set_kills_what_is_left() {
    let procs = SessionProcesses::new(Containment::Auto);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg("sleep 1000 & exec sleep 1000");
    let launch = Launch { switch: None, cwd: CString::new("/").unwrap(), controlling_tty: false, inherit_fds: Vec::new() };
    let leader = procs.spawn(cmd, launch).unwrap();
    let pid = leader.id().unwrap() as i32;
    for _ in 0..500 {
        if procs.members().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let members = procs.members();
    let mechanism = procs.mechanism();
    drop(procs);
    drop(leader);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!is_alive(pid), "the leader outlived the drop");
    assert!(members.len() >= 2 && members.iter().all(|&p| !is_alive(p)), "left after drop: {members:?}");
    if let Mechanism::Cgroup(dir) = mechanism {
        for _ in 0..100 {
            if !dir.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!dir.exists(), "the cgroup {} was left behind", dir.display());
    }
}
