//! A session's processes: starting them as the session's user, and ending every one of them at
//! logoff, including those that left the Unix session with `setsid` (tmux, daemons).
//!
//! Each session gets a [`SessionProcesses`]: a cgroup v2 of its own when the host may create one
//! (every descendant stays in it whatever it does), else the Unix sessions of the processes it
//! started (what a process that calls `setsid` escapes). Which one is used is logged once.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::RunAs;

/// The identity to switch to in the child (the host is root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups, looked up in the parent (`getgrouplist`): the child between fork
    /// and exec may only make async-signal-safe calls, and reading /etc/group is not one.
    pub groups: Vec<libc::gid_t>,
}

/// Who a session's processes run as, resolved before anything is started.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub home: PathBuf,
    /// The user's login shell from `RunAs`; `None` for the host's own user (callers fall back
    /// to `$SHELL`).
    pub shell: Option<PathBuf>,
    /// `Some` only when the host is root and starts processes as someone else (or as root).
    pub switch: Option<Switch>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot run a session as {user} (uid {uid}): the host is not root")]
    NotRoot { user: String, uid: u32 },
    #[error("cannot look up the groups of {user}: {source}")]
    Groups { user: String, source: nix::Error },
    #[error("invalid {what}: it contains a NUL byte")]
    Nul { what: &'static str },
}

/// The identity for `run_as`, or the host's own user. A non-root host may only "switch" to itself.
pub fn identity(run_as: Option<&RunAs>) -> Result<Identity, IdentityError> {
    let euid = nix::unistd::geteuid();
    if let Some(r) = run_as {
        if !euid.is_root() {
            if r.uid != euid.as_raw() {
                return Err(IdentityError::NotRoot { user: r.user.clone(), uid: r.uid });
            }
            return Ok(Identity { user: r.user.clone(), home: r.home.clone(), shell: Some(r.shell.clone()), switch: None });
        }
        let name = CString::new(r.user.as_str()).map_err(|_| IdentityError::Nul { what: "user name" })?;
        let groups = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(r.gid))
            .map_err(|source| IdentityError::Groups { user: r.user.clone(), source })?;
        return Ok(Identity {
            user: r.user.clone(),
            home: r.home.clone(),
            shell: Some(r.shell.clone()),
            switch: Some(Switch { uid: r.uid, gid: r.gid, groups: groups.into_iter().map(|g| g.as_raw()).collect() }),
        });
    }
    // The host's own user, from its passwd entry (the environment may not have HOME/USER).
    match nix::unistd::User::from_uid(euid) {
        Ok(Some(u)) => Ok(Identity { user: u.name, home: u.dir, shell: None, switch: None }),
        _ => Ok(Identity {
            user: std::env::var("USER").unwrap_or_else(|_| euid.to_string()),
            home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
            shell: None,
            switch: None,
        }),
    }
}

impl Identity {
    /// The uid the processes will run as.
    pub fn uid(&self) -> u32 {
        self.switch.as_ref().map_or_else(|| nix::unistd::geteuid().as_raw(), |s| s.uid)
    }

    pub fn gid(&self) -> u32 {
        self.switch.as_ref().map_or_else(|| nix::unistd::getegid().as_raw(), |s| s.gid)
    }

    /// The login shell: `RunAs`'s, else the host's `$SHELL`, else `/bin/sh`.
    pub fn login_shell(&self) -> PathBuf {
        self.shell
            .clone()
            .filter(|s| !s.as_os_str().is_empty())
            .or_else(|| std::env::var_os("SHELL").filter(|s| !s.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/bin/sh"))
    }

    /// The home directory as the child's `chdir` needs it.
    pub fn home_cstring(&self) -> Result<CString, IdentityError> {
        CString::new(self.home.as_os_str().as_bytes()).map_err(|_| IdentityError::Nul { what: "home directory" })
    }
}

/// The environment login(1) gives: HOME, USER, LOGNAME, SHELL, PATH (root's has the sbin
/// directories), LANG. Callers add their own with [`set_env`].
pub fn session_env(who: &Identity, shell: &Path) -> Vec<(OsString, OsString)> {
    let path = if who.uid() == 0 {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    } else {
        "/usr/local/bin:/usr/bin:/bin:/usr/games"
    };
    vec![
        ("HOME".into(), who.home.clone().into()),
        ("USER".into(), who.user.clone().into()),
        ("LOGNAME".into(), who.user.clone().into()),
        ("SHELL".into(), shell.into()),
        ("PATH".into(), path.into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// Set `key` in `env`, replacing an earlier value.
pub fn set_env(env: &mut Vec<(OsString, OsString)>, key: impl AsRef<OsStr>, value: impl Into<OsString>) {
    let key = key.as_ref();
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.into(),
        None => env.push((key.into(), value.into())),
    }
}

/// What a child becomes between fork and exec, on top of what [`SessionProcesses::spawn`] always
/// does (its own Unix session, the session's cgroup).
pub struct Launch {
    pub switch: Option<Switch>,
    /// The working directory; "/" when it cannot be entered as the user (like login(1)).
    pub cwd: CString,
    /// stdin is a terminal: make it the new Unix session's controlling terminal.
    pub controlling_tty: bool,
    /// Close-on-exec descriptors the program must inherit under the same numbers (the X
    /// server's `-displayfd`). Cleared in the child only, so no other fork sees them.
    pub inherit_fds: Vec<RawFd>,
}

/// How a session's processes are kept together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// A cgroup when one can be made, else Unix sessions.
    #[default]
    Auto,
    /// Unix sessions only (what a process that calls `setsid` escapes).
    ProcessSessions,
}

/// The mechanism a [`SessionProcesses`] ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    Cgroup(PathBuf),
    ProcessSessions,
}

struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened before any fork: the child writes "0" to it to join.
    procs: OwnedFd,
}

/// Every process of one session, and the means to end them all.
pub struct SessionProcesses {
    cgroup: Option<Cgroup>,
    /// Unix sessions of the processes started here (their pids): members without a cgroup.
    leaders: Mutex<Vec<i32>>,
    /// Set once everything ended: the drop guard must not signal pids that may be reused.
    finished: AtomicBool,
}

/// Where session cgroups are made, found once per host process.
fn cgroup_base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let found = find_cgroup_base();
        match &found {
            Some(dir) => tracing::info!("session processes are kept in cgroups under {}", dir.display()),
            None => tracing::info!(
                "no writable cgroup v2 hierarchy: session processes are tracked by Unix session (a process that calls setsid outlives its session)"
            ),
        }
        found
    });
    base.as_deref()
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

fn writable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The host's own cgroup if it may make children there (a delegated subtree: systemd
/// `Delegate=yes`, or a container's own root), else `rdhost.slice` at the root of the hierarchy
/// (root only). A child joins with a write to its new cgroup's `cgroup.procs`, which needs write
/// access there and at the common ancestor of where it comes from.
fn find_cgroup_base() -> Option<PathBuf> {
    let mount = [Path::new("/sys/fs/cgroup"), Path::new("/sys/fs/cgroup/unified")].into_iter().find(|p| is_cgroup2(p))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(|p| p.trim_start_matches('/').to_owned()))?;
    let own_dir = mount.join(&own);
    if !own.is_empty() && writable(&own_dir) && writable(&own_dir.join("cgroup.procs")) {
        return Some(own_dir);
    }
    if writable(&mount.join("cgroup.procs")) {
        let slice = mount.join("rdhost.slice");
        match std::fs::create_dir(&slice) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        if writable(&slice) {
            return Some(slice);
        }
    }
    None
}

fn make_session_cgroup(base: &Path) -> io::Result<Cgroup> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        // The host's pid and a counter; the clock tells this run from an earlier host with the same pid.
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let dir = base.join(format!("session-{}-{}-{stamp:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .inspect_err(|_| {
                let _ = std::fs::remove_dir(&dir);
            })?;
        return Ok(Cgroup { dir, procs: procs.into() });
    }
}

impl SessionProcesses {
    /// A new, empty set. With `Auto`, a cgroup when the hierarchy allows it (else, and with
    /// `ProcessSessions`, Unix sessions). Never fails: the fallback always works.
    pub fn new(containment: Containment) -> SessionProcesses {
        let cgroup = match containment {
            Containment::ProcessSessions => None,
            Containment::Auto => cgroup_base().and_then(|base| {
                make_session_cgroup(base)
                    .inspect_err(|e| tracing::warn!("cannot make a session cgroup under {}: {e}; using Unix sessions", base.display()))
                    .ok()
            }),
        };
        SessionProcesses { cgroup, leaders: Mutex::new(Vec::new()), finished: AtomicBool::new(false) }
    }

    pub fn mechanism(&self) -> Mechanism {
        match &self.cgroup {
            Some(c) => Mechanism::Cgroup(c.dir.clone()),
            None => Mechanism::ProcessSessions,
        }
    }

    /// Start `cmd` as a new Unix session leader in this set, set up as `launch` says.
    pub fn spawn(&self, mut cmd: Command, launch: Launch) -> io::Result<Child> {
        let procs_fd = self.cgroup.as_ref().map(|c| c.procs.as_raw_fd());
        let Launch { switch, cwd, controlling_tty, inherit_fds } = launch;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
        // calls on data prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Join first, while still privileged: everything the program starts stays in.
                if let Some(fd) = procs_fd
                    && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                // stdin is the terminal by now: make it the new session's controlling terminal.
                if controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                for &fd in &inherit_fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(s) = &switch {
                    // Groups first, then gid, then uid: after setuid nothing else may change.
                    if libc::setgroups(s.groups.len(), s.groups.as_ptr()) < 0 || libc::setgid(s.gid) < 0 || libc::setuid(s.uid) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // As the user, like login(1): a directory that is not there or not reachable gives "/".
                if libc::chdir(cwd.as_ptr()) < 0 {
                    libc::chdir(c"/".as_ptr());
                }
                Ok(())
            });
        }
        // Only a backstop for a runtime shutting down mid-session; ending a session normally
        // goes through `end`/`finish`, which reach every process, not only this one.
        cmd.kill_on_drop(true);
        let child = cmd.spawn()?;
        if let Some(pid) = child.id() {
            lock(&self.leaders).push(pid as i32);
        }
        Ok(child)
    }

    /// Live processes of the session (zombies excluded).
    pub fn members(&self) -> Vec<i32> {
        match &self.cgroup {
            Some(c) => std::fs::read_to_string(c.dir.join("cgroup.procs"))
                .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
                .unwrap_or_default(),
            None => {
                let leaders = lock(&self.leaders).clone();
                unix_session_members(&leaders)
            }
        }
    }

    fn members_except(&self, except: &[i32]) -> Vec<i32> {
        let mut pids = self.members();
        pids.retain(|p| !except.contains(p));
        pids
    }

    /// SIGHUP (and SIGCONT, so stopped jobs see it) to every member but `except`: "your
    /// terminal is gone", the polite way to end a login session.
    pub fn hang_up(&self, except: &[i32]) {
        let members = self.members_except(except);
        signal_all(&members, Signal::SIGHUP);
        signal_all(&members, Signal::SIGCONT);
    }

    /// SIGKILL to every member but `except`.
    pub fn kill_except(&self, except: &[i32]) {
        signal_all(&self.members_except(except), Signal::SIGKILL);
    }

    /// Wait until every member but `except` has exited, or the deadline passes. True when they did.
    pub async fn wait_gone(&self, except: &[i32], deadline: Instant) -> bool {
        loop {
            let members = self.members_except(except);
            if members.is_empty() {
                return true;
            }
            if !wait_exited(&members, deadline).await {
                return false;
            }
            // Some may have started others meanwhile: look again.
        }
    }

    /// Kill whatever is left, wait until it is gone, and remove the cgroup. After this the set
    /// is empty and its drop does nothing.
    pub async fn finish(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        match &self.cgroup {
            Some(c) => {
                // cgroup.kill (Linux 5.14) kills every member atomically, forks in flight too;
                // without it, kill what is listed until nothing is.
                let killed = std::fs::write(c.dir.join("cgroup.kill"), "1").is_ok();
                loop {
                    if !killed {
                        self.kill_except(&[]);
                    }
                    let round = if killed { deadline } else { deadline.min(Instant::now() + Duration::from_millis(200)) };
                    if wait_unpopulated(&c.dir, round).await || Instant::now() >= deadline {
                        break;
                    }
                }
                if let Err(e) = std::fs::remove_dir(&c.dir) {
                    tracing::warn!("cannot remove the session cgroup {}: {e}", c.dir.display());
                }
            }
            None => {
                // A fork between reading the members and the kill escapes one round, not all.
                for _ in 0..10 {
                    self.kill_except(&[]);
                    if self.wait_gone(&[], deadline.min(Instant::now() + Duration::from_millis(500))).await {
                        break;
                    }
                }
            }
        }
        self.finished.store(true, Ordering::Release);
    }

    /// End a session whose processes all go at once (the terminal desktop): SIGHUP to every
    /// member, SIGKILL to whatever is left after `grace`, and reap `leader`.
    pub async fn end(&self, leader: &mut Child, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.hang_up(&[]);
        let leader_exited = tokio::time::timeout_at(deadline, leader.wait()).await.is_ok();
        let rest_exited = self.wait_gone(&[], deadline).await;
        if !(leader_exited && rest_exited) {
            let _ = leader.start_kill();
        }
        self.finish().await;
        let _ = leader.wait().await;
    }
}

impl Drop for SessionProcesses {
    /// Kills what is left if the owner is dropped before it ended the session (the runtime shut
    /// down mid-session): no process outlives its desktop.
    fn drop(&mut self) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        let killed = self.cgroup.as_ref().is_some_and(|c| std::fs::write(c.dir.join("cgroup.kill"), "1").is_ok());
        if !killed {
            self.kill_except(&[]);
        }
        if let Some(c) = self.cgroup.take() {
            remove_when_empty(c.dir);
        }
    }
}

/// Remove a cgroup once its killed members are gone, off the dropping thread (it may be a runtime's).
fn remove_when_empty(dir: PathBuf) {
    let _ = std::thread::Builder::new().name("rdhost-cgroup-rm".into()).spawn(move || {
        for _ in 0..250 {
            if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("the session cgroup {} is still populated; left in place", dir.display());
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Processes of the Unix session `sid` that have not exited (zombies excluded), from /proc.
pub fn session_members(sid: i32) -> Vec<i32> {
    unix_session_members(&[sid])
}

fn unix_session_members(sids: &[i32]) -> Vec<i32> {
    if sids.is_empty() {
        return Vec::new();
    }
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
        (sids.contains(&session) && state != "Z" && state != "X").then_some(pid)
    })
    .collect()
}

/// True while `pid` is a live process (not a zombie).
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat[stat.rfind(')')? + 1..].split_whitespace().next()?.to_owned()))
        .is_some_and(|state| state != "Z" && state != "X")
}

pub fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        // ESRCH: it exited meanwhile.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Wait (without polling) until every process in `pids` has exited, or the deadline passes.
/// Returns true when all are gone.
pub async fn wait_exited(pids: &[i32], deadline: Instant) -> bool {
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
        // A pidfd becomes readable when its process exits (a zombie counts as exited).
        if tokio::time::timeout_at(deadline, fd.readable()).await.is_err() {
            return false;
        }
    }
    true
}

fn unpopulated(dir: &Path) -> bool {
    // A cgroup removed already counts as empty.
    std::fs::read_to_string(dir.join("cgroup.events")).map_or(true, |s| s.lines().any(|l| l == "populated 0"))
}

/// Wait until the cgroup has no live process: `cgroup.events` changes when that happens, and
/// inotify says when it changed.
async fn wait_unpopulated(dir: &Path, deadline: Instant) -> bool {
    let events = dir.join("cgroup.events");
    let watch = (|| {
        // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = CString::new(events.as_os_str().as_bytes()).ok()?;
        // SAFETY: the path is a valid C string for the call.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
            return None;
        }
        // SAFETY: the OwnedFd is a valid open fd, owned by the AsyncFd from here on.
        unsafe { AsyncFd::register(fd) }.ok()
    })();
    loop {
        // Watch first, then read: a change between the two is not missed.
        if unpopulated(dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        match &watch {
            Some(fd) => match tokio::time::timeout_at(deadline, fd.readable()).await {
                Ok(Ok(mut ready)) => {
                    let mut buf = [0u8; 1024];
                    // Drain the queued events; the file itself is read again above.
                    while ready.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(io::Error::from)).is_ok_and(|r| r.is_ok_and(|n| n > 0)) {}
                }
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => return unpopulated(dir),
            },
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
