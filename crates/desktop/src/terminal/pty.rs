//! The pseudo-terminal and the login shell's process session: open, spawn, resize, and end it
//! with every process in it.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::{OFlag, open};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::termios::{InputFlags, SetArg, tcgetattr, tcsetattr};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A new PTY pair. Both ends are close-on-exec (other sessions' shells must not inherit them),
/// and the master is non-blocking for the event loop.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

pub fn open_pty(cols: u16, rows: u16, width_px: u16, height_px: u16) -> io::Result<Pty> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())?;
    // UTF-8 aware line editing: Backspace in canonical mode erases a whole character.
    let mut termios = tcgetattr(&slave)?;
    termios.input_flags |= InputFlags::IUTF8;
    tcsetattr(&slave, SetArg::TCSANOW, &termios)?;
    let master: OwnedFd = master.into();
    set_window_size(&master, cols, rows, width_px, height_px)?;
    Ok(Pty { master, slave })
}

/// TIOCSWINSZ: the kernel sends SIGWINCH to the terminal's foreground process group.
pub fn set_window_size(fd: &impl AsFd, cols: u16, rows: u16, width_px: u16, height_px: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: width_px, ws_ypixel: height_px };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The identity to switch to in the child (the host is root).
pub struct Switch {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups, looked up in the parent (`getgrouplist`): the child between fork
    /// and exec may only make async-signal-safe calls, and reading /etc/group is not one.
    pub groups: Vec<libc::gid_t>,
}

pub struct ShellSpec {
    pub program: PathBuf,
    pub arg0: OsString,
    pub env: Vec<(OsString, OsString)>,
    pub home: CString,
    pub switch: Option<Switch>,
}

/// Start the shell on the PTY's slave side as a session leader with the PTY as its
/// controlling terminal. The parent's copy of the slave is closed on return.
pub fn spawn_shell(spec: ShellSpec, slave: OwnedFd) -> io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.arg0(&spec.arg0)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        // Only a backstop for a runtime shutting down mid-session; ending a session normally
        // goes through `end_session`, which reaches every process, not only the shell.
        .kill_on_drop(true);
    let ShellSpec { home, switch, .. } = spec;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls on data prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // stdin is the slave by now: make it the new session's controlling terminal.
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(s) = &switch {
                // Groups first, then gid, then uid: after setuid nothing else may change.
                if libc::setgroups(s.groups.len(), s.groups.as_ptr()) < 0
                    || libc::setgid(s.gid) < 0
                    || libc::setuid(s.uid) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // As the user, like login(1): a home that is not there or not reachable gives "/".
            if libc::chdir(home.as_ptr()) < 0 {
                libc::chdir(c"/".as_ptr());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Processes of the Unix session `sid` that have not exited (zombies excluded), from /proc.
pub fn session_members(sid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid pgrp session ...": comm may contain anything, even ')'.
        let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
        let state = fields.next()?;
        let session: i32 = fields.nth(2)?.parse().ok()?;
        (session == sid && state != "Z" && state != "X").then_some(pid)
    })
    .collect()
}

fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        // ESRCH: it exited meanwhile; EPERM cannot happen for our own children's session.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Wait (without polling) until every process in `pids` has exited, or the deadline passes.
/// Returns true when all are gone.
async fn wait_exited(pids: &[i32], deadline: Instant) -> bool {
    for &pid in pids {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                continue;
            }
            // No pidfd (old kernel): give the processes the whole grace period.
            tokio::time::sleep_until(deadline).await;
            return false;
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the OwnedFd is a valid open fd, owned by the AsyncFd from here on.
        let Ok(fd) = (unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }) else {
            tokio::time::sleep_until(deadline).await;
            return false;
        };
        // A pidfd becomes readable when its process exits.
        if tokio::time::timeout_at(deadline, fd.readable()).await.is_err() {
            return false;
        }
    }
    true
}

/// End the Unix session led by `child`: SIGHUP (and SIGCONT, so stopped jobs see it) to every
/// process in it, SIGKILL to whatever is left after `grace`, and reap the shell.
pub async fn end_session(child: &mut Child, sid: i32, grace: Duration) {
    let deadline = Instant::now() + grace;
    let members = session_members(sid);
    signal_all(&members, Signal::SIGHUP);
    signal_all(&members, Signal::SIGCONT);
    let shell_exited = tokio::time::timeout_at(deadline, child.wait()).await.is_ok();
    let rest_exited = wait_exited(&session_members(sid), deadline).await;
    if !(shell_exited && rest_exited) {
        signal_all(&session_members(sid), Signal::SIGKILL);
        let _ = child.start_kill();
    }
    let _ = child.wait().await;
}

/// Kills what is left of a session if the task driving it is dropped before it ended it (the
/// runtime shut down): no process outlives its desktop.
pub struct SessionGuard {
    pub sid: i32,
    pub armed: bool,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_all(&session_members(self.sid), Signal::SIGKILL);
        }
    }
}
