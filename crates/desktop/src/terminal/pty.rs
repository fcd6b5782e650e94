//! The pseudo-terminal: open it, start the login shell on it, resize it. Ending the session's
//! processes is `crate::process`'s.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use nix::fcntl::{OFlag, open};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::sys::termios::{InputFlags, SetArg, tcgetattr, tcsetattr};
use tokio::process::{Child, Command};

use crate::process::{Launch, SessionProcesses, Switch};

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

pub struct ShellSpec {
    pub program: PathBuf,
    pub arg0: OsString,
    /// Arguments after argv[0] (`-c CMD` to run a command instead of an interactive shell).
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub home: CString,
    pub switch: Option<Switch>,
}

/// Start the shell on the PTY's slave side as a session leader with the PTY as its
/// controlling terminal, in the session's process set. The parent's copy of the slave is
/// closed on return.
pub fn spawn_shell(spec: ShellSpec, slave: OwnedFd, procs: &SessionProcesses) -> io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.arg0(&spec.arg0)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let ShellSpec { home, switch, .. } = spec;
    procs.spawn(cmd, Launch { switch, cwd: home, controlling_tty: true, inherit_fds: Vec::new() })
}
