//! Authentication backends: the users file (argon2id) and PAM (system users), and `Auto`, which
//! uses the users file while it has users and PAM otherwise.
//!
//! Calls block (argon2 takes tens of milliseconds, PAM may do anything): the wiring runs them in
//! `spawn_blocking`. Callers cannot tell an unknown user from a wrong password: both are
//! [`AuthError::BadCredentials`]. Delaying repeated failures is the wiring's job (the model's
//! `AuthThrottle`); PAM's own failure delay is switched off so it does not stack with ours.
//!
//! Which system account a session runs as ([`Identity::run_as`]):
//! * host not root: `None`, every session runs as the host's own user (single-user mode);
//! * host root, PAM user: that user;
//! * host root, users-file account: its `system_user`, default the host's own user (root).

use std::ffi::{CStr, CString, c_void};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::AuthBackendKind;
use crate::users::{UserEntry, UsersFile, verify_password};

/// Who logged on, and which system account their session runs as (`None`: the host's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub run_as: Option<SystemUser>,
}

/// A system account, as getpwnam reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl SystemUser {
    /// Look a system account up by name; `Ok(None)` if there is none.
    pub fn lookup(name: &str) -> io::Result<Option<Self>> {
        let user = nix::unistd::User::from_name(name).map_err(io::Error::from)?;
        Ok(user.map(Self::from))
    }

    /// The account the host runs as (effective uid).
    pub fn current() -> io::Result<Option<Self>> {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).map_err(io::Error::from)?;
        Ok(user.map(Self::from))
    }
}

impl From<nix::unistd::User> for SystemUser {
    fn from(u: nix::unistd::User) -> Self {
        Self {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password (deliberately indistinguishable).
    #[error("wrong user name or password")]
    BadCredentials,
    /// The backend could not decide (unreadable users file, PAM misconfigured, unmapped account).
    #[error("authentication backend failed: {0}")]
    Backend(String),
}

/// Checks credentials. Blocking; call from `spawn_blocking`.
pub trait Authenticator: Send + Sync {
    fn authenticate(
        &self,
        user: &str,
        domain: Option<&str>,
        password: &str,
    ) -> Result<Identity, AuthError>;
    /// The NT hash (MD4 of the UTF-16LE password) NLA needs to run NTLM for `user`, if known.
    fn nt_hash(&self, user: &str) -> Option<[u8; 16]>;
    /// The identity of `user` once NLA proved their password (no password to check here).
    fn identity_after_nla(&self, user: &str) -> Result<Identity, AuthError>;
    /// NLA can check every account this backend would accept (all have NT hashes).
    fn nla_ready(&self) -> bool;
    /// One line for the startup log: which backend, where.
    fn describe(&self) -> String;
}

/// How identities map to system accounts; decided once from the host's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAsPolicy {
    /// The host is not root: sessions run as the host's user; `run_as` is always `None`.
    SingleUser,
    /// The host is root: sessions run as a system account; users-file accounts without a
    /// `system_user` run as `host_user`.
    Root { host_user: String },
}

impl RunAsPolicy {
    pub fn detect() -> Self {
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            return Self::SingleUser;
        }
        let host_user = nix::unistd::User::from_uid(euid)
            .ok()
            .flatten()
            .map_or_else(|| "root".to_owned(), |u| u.name);
        Self::Root { host_user }
    }

    fn resolve(&self, account: Option<&str>, who: &str) -> Result<Option<SystemUser>, AuthError> {
        let Self::Root { host_user } = self else {
            return Ok(None);
        };
        let name = account.unwrap_or(host_user);
        match SystemUser::lookup(name) {
            Ok(Some(u)) => Ok(Some(u)),
            Ok(None) => Err(AuthError::Backend(format!(
                "{who} maps to system account {name:?}, which does not exist"
            ))),
            Err(e) => Err(AuthError::Backend(format!(
                "looking up system account {name:?}: {e}"
            ))),
        }
    }
}

/// Clients may send `DOMAIN\user` in the user field; the account is the part after the backslash.
pub fn split_domain<'a>(user: &'a str, domain: Option<&'a str>) -> (&'a str, Option<&'a str>) {
    match user.rsplit_once('\\') {
        Some((d, u)) => (u, Some(d)),
        None => (user, domain.filter(|d| !d.is_empty())),
    }
}

// ---------------------------------------------------------------------------------------------
// Users file

/// Identity of a file version: a rename gives a new inode, so `user add` is always noticed even
/// when the mtime granularity would hide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

struct UsersCache {
    /// `None` = the file did not exist when last looked at.
    stamp: Option<FileStamp>,
    users: Arc<UsersFile>,
}

/// Accounts from `users.toml`; re-reads the file whenever it changed on disk.
/// The domain is ignored (users-file accounts are local to this host).
pub struct UsersFileAuth {
    path: PathBuf,
    policy: RunAsPolicy,
    cache: Mutex<Option<UsersCache>>,
}

impl UsersFileAuth {
    pub fn new(path: impl Into<PathBuf>, policy: RunAsPolicy) -> Self {
        Self {
            path: path.into(),
            policy,
            cache: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current users (re-read if the file changed).
    pub fn users(&self) -> Result<Arc<UsersFile>, AuthError> {
        let stamp = match fs::metadata(&self.path) {
            Ok(m) => Some(FileStamp {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime: m.mtime(),
                mtime_nsec: m.mtime_nsec(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(AuthError::Backend(format!("{}: {e}", self.path.display()))),
        };
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = cache.as_ref()
            && c.stamp == stamp
        {
            return Ok(c.users.clone());
        }
        // A broken file is an error, not "no users": an edit gone wrong must not silently switch
        // Auto to PAM or lock everyone out without saying why. Not cached, so a fix is seen.
        let users =
            Arc::new(UsersFile::load(&self.path).map_err(|e| AuthError::Backend(e.to_string()))?);
        *cache = Some(UsersCache {
            stamp,
            users: users.clone(),
        });
        Ok(users)
    }

    pub fn has_users(&self) -> Result<bool, AuthError> {
        Ok(!self.users()?.is_empty())
    }
}

/// A hash to verify against when the user does not exist, so that case costs the same time.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        crate::users::hash_password("rdhost timing equaliser")
            .expect("argon2 with default parameters cannot fail")
    })
}

impl UsersFileAuth {
    /// Who a users-file account is once its password (or NLA) checked out.
    fn identity_of(&self, entry: &UserEntry) -> Result<Identity, AuthError> {
        let run_as = self.policy.resolve(
            entry.system_user.as_deref(),
            &format!("users-file account {:?}", entry.name),
        )?;
        Ok(Identity {
            user: entry.name.clone(),
            run_as,
        })
    }
}

impl Authenticator for UsersFileAuth {
    fn authenticate(
        &self,
        user: &str,
        domain: Option<&str>,
        password: &str,
    ) -> Result<Identity, AuthError> {
        let (name, _domain) = split_domain(user, domain);
        let users = self.users()?;
        let Some(entry) = users.get(name) else {
            let _ = verify_password(dummy_hash(), password);
            return Err(AuthError::BadCredentials);
        };
        if !verify_password(&entry.password_hash, password) {
            return Err(AuthError::BadCredentials);
        }
        self.identity_of(entry)
    }

    fn nt_hash(&self, user: &str) -> Option<[u8; 16]> {
        let (name, _) = split_domain(user, None);
        self.users().ok()?.get(name)?.nt_hash_bytes()
    }

    fn nla_ready(&self) -> bool {
        self.users().is_ok_and(|f| {
            !f.users.is_empty() && f.users.iter().all(|u| u.nt_hash_bytes().is_some())
        })
    }

    fn identity_after_nla(&self, user: &str) -> Result<Identity, AuthError> {
        let (name, _) = split_domain(user, None);
        let users = self.users()?;
        let entry = users.get(name).ok_or(AuthError::BadCredentials)?;
        self.identity_of(entry)
    }

    fn describe(&self) -> String {
        format!("users file {}", self.path.display())
    }
}

// ---------------------------------------------------------------------------------------------
// PAM

/// The PAM service name: configure it in `/etc/pam.d/rdhost` (without that file PAM uses
/// `/etc/pam.d/other`).
pub const PAM_SERVICE: &str = "rdhost";

const PAM_SUCCESS: i32 = 0;
const PAM_BUF_ERR: i32 = 5;
const PAM_CONV_ERR: i32 = 19;
const PAM_PROMPT_ECHO_OFF: i32 = 1;
const PAM_PROMPT_ECHO_ON: i32 = 2;
const PAM_USER_ITEM: i32 = 2;
const PAM_FAIL_DELAY_ITEM: i32 = 10;
const PAM_SILENT: i32 = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: i32 = 0x0001;

/// Return codes that mean "these credentials do not get in" rather than "PAM is broken".
fn pam_denied(code: i32) -> bool {
    // PERM_DENIED 6, AUTH_ERR 7, CRED_INSUFFICIENT 8, USER_UNKNOWN 10, MAXTRIES 11,
    // NEW_AUTHTOK_REQD 12 (expired password: cannot be changed over RDP), ACCT_EXPIRED 13.
    matches!(code, 6 | 7 | 8 | 10 | 11 | 12 | 13)
}

/// System users via PAM (service [`PAM_SERVICE`]): `pam_authenticate` then `pam_acct_mgmt`.
pub struct PamAuth {
    service: CString,
    policy: RunAsPolicy,
    /// Some PAM modules are not thread-safe; one conversation at a time.
    serial: Mutex<()>,
}

impl PamAuth {
    pub fn new(service: &str, policy: RunAsPolicy) -> Self {
        let service = CString::new(service).unwrap_or_else(|_| CString::from(c"rdhost"));
        Self {
            service,
            policy,
            serial: Mutex::new(()),
        }
    }
}

/// Data for the conversation callback.
struct Conversation {
    user: CString,
    password: CString,
}

/// PAM asks questions through this; we answer the user name and the password, nothing else.
extern "C" fn converse(
    num_msg: libc::c_int,
    msg: *mut *mut pam_sys::PamMessage,
    resp: *mut *mut pam_sys::PamResponse,
    appdata: *mut c_void,
) -> libc::c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the &Conversation we registered, alive for the whole pam_* call.
    let conv = unsafe { &*(appdata as *const Conversation) };
    // SAFETY: PAM frees the array and each `resp` with free(), so they must come from malloc.
    let replies =
        unsafe { libc::calloc(n, size_of::<pam_sys::PamResponse>()) } as *mut pam_sys::PamResponse;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes `msg` as an array of n pointers to messages.
        let style = unsafe { (**msg.add(i)).msg_style };
        let answer = match style {
            PAM_PROMPT_ECHO_OFF => Some(&conv.password),
            PAM_PROMPT_ECHO_ON => Some(&conv.user),
            _ => None, // error/info text: nothing to answer
        };
        if let Some(answer) = answer {
            // SAFETY: strdup copies a NUL-terminated string into malloc'd memory.
            let copy = unsafe { libc::strdup(answer.as_ptr()) };
            if copy.is_null() {
                for j in 0..i {
                    // SAFETY: earlier replies were strdup'd or are null (calloc); free both fine.
                    unsafe { free_secret((*replies.add(j)).resp) };
                }
                // SAFETY: allocated above with calloc.
                unsafe { libc::free(replies as *mut c_void) };
                return PAM_BUF_ERR;
            }
            // SAFETY: i < n, within the calloc'd array.
            unsafe { (*replies.add(i)).resp = copy };
        }
    }
    // SAFETY: resp is a valid out-pointer per the PAM conversation contract.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Zero then free a malloc'd C string (a password copy we own on an error path).
unsafe fn free_secret(p: *mut libc::c_char) {
    if !p.is_null() {
        // SAFETY: caller guarantees p is a NUL-terminated malloc'd string.
        unsafe {
            let len = libc::strlen(p);
            std::ptr::write_bytes(p, 0, len);
            libc::free(p as *mut c_void);
        }
    }
}

/// PAM_FAIL_DELAY hook: we delay failures ourselves (AuthThrottle), per source address.
extern "C" fn no_fail_delay(_retval: libc::c_int, _usec: libc::c_uint, _appdata: *mut c_void) {}

impl PamAuth {
    /// Runs one PAM transaction; returns the (possibly module-mapped) user name.
    fn transaction(&self, user: &str, password: &str) -> Result<String, AuthError> {
        let (Ok(c_user), Ok(c_password)) = (CString::new(user), CString::new(password)) else {
            return Err(AuthError::BadCredentials); // NUL bytes: no such account or password
        };
        let conv_data = Conversation {
            user: c_user,
            password: c_password,
        };
        let conv = pam_sys::PamConversation {
            conv: Some(converse),
            data_ptr: &conv_data as *const Conversation as *mut c_void,
        };
        let _serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let mut handle: *const pam_sys::PamHandle = std::ptr::null();
        // SAFETY: all pointers are valid NUL-terminated strings / live structs for the call;
        // PAM copies the conversation struct.
        let rc = unsafe {
            pam_sys::raw::pam_start(
                self.service.as_ptr(),
                conv_data.user.as_ptr(),
                &conv,
                &mut handle,
            )
        };
        if rc != PAM_SUCCESS || handle.is_null() {
            return Err(AuthError::Backend(format!(
                "pam_start failed with code {rc}"
            )));
        }
        let h = handle as *mut pam_sys::PamHandle;
        let result = (|| {
            // SAFETY: h is a live handle; the item is a function pointer of the documented type.
            unsafe {
                pam_sys::raw::pam_set_item(h, PAM_FAIL_DELAY_ITEM, no_fail_delay as *const c_void)
            };
            let flags = PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
            // SAFETY: h is live; conv_data outlives these calls.
            let rc = unsafe { pam_sys::raw::pam_authenticate(h, flags) };
            if rc != PAM_SUCCESS {
                return Err(rc);
            }
            // SAFETY: as above.
            let rc = unsafe { pam_sys::raw::pam_acct_mgmt(h, PAM_SILENT) };
            if rc != PAM_SUCCESS {
                return Err(rc);
            }
            let mut item: *const c_void = std::ptr::null();
            // SAFETY: PAM_USER is a NUL-terminated string owned by the handle; copied out below.
            let rc = unsafe { pam_sys::raw::pam_get_item(h, PAM_USER_ITEM, &mut item) };
            if rc == PAM_SUCCESS && !item.is_null() {
                // SAFETY: see above; the handle is still live.
                let name = unsafe { CStr::from_ptr(item as *const libc::c_char) };
                Ok(name.to_string_lossy().into_owned())
            } else {
                Ok(user.to_owned())
            }
        })();
        let message = |rc: i32| {
            // SAFETY: h is live; pam_strerror returns a static string or null.
            let s = unsafe { pam_sys::raw::pam_strerror(h, rc) };
            if s.is_null() {
                format!("PAM error {rc}")
            } else {
                // SAFETY: non-null NUL-terminated string from libpam.
                format!(
                    "PAM: {} (code {rc})",
                    unsafe { CStr::from_ptr(s) }.to_string_lossy()
                )
            }
        };
        let result = result.map_err(|rc| {
            if pam_denied(rc) {
                AuthError::BadCredentials
            } else {
                AuthError::Backend(message(rc))
            }
        });
        let end_status = match result {
            Ok(_) => PAM_SUCCESS,
            Err(_) => 7,
        };
        // SAFETY: h is live and not used after this.
        unsafe { pam_sys::raw::pam_end(h, end_status) };
        result
    }
}

impl Authenticator for PamAuth {
    fn authenticate(
        &self,
        user: &str,
        domain: Option<&str>,
        password: &str,
    ) -> Result<Identity, AuthError> {
        let (name, _domain) = split_domain(user, domain);
        if name.is_empty() || password.is_empty() {
            return Err(AuthError::BadCredentials);
        }
        let account = self.transaction(name, password)?;
        let run_as = self
            .policy
            .resolve(Some(&account), &format!("PAM user {account:?}"))?;
        Ok(Identity {
            user: account,
            run_as,
        })
    }

    fn nt_hash(&self, _user: &str) -> Option<[u8; 16]> {
        None // PAM never reveals password material: no NLA for PAM users.
    }

    fn identity_after_nla(&self, _user: &str) -> Result<Identity, AuthError> {
        Err(AuthError::Backend("PAM users cannot use NLA".into()))
    }

    fn nla_ready(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("PAM service {:?}", self.service.to_string_lossy())
    }
}

// ---------------------------------------------------------------------------------------------
// Auto

/// The users file while it has at least one user, PAM otherwise; decided per attempt, so
/// `rdhost user add` on a running host switches it over without a restart.
pub struct AutoAuth {
    users: UsersFileAuth,
    pam: PamAuth,
}

impl AutoAuth {
    pub fn new(users: UsersFileAuth, pam: PamAuth) -> Self {
        Self { users, pam }
    }

    fn active(&self) -> Result<&dyn Authenticator, AuthError> {
        Ok(if self.users.has_users()? {
            &self.users
        } else {
            &self.pam
        })
    }
}

impl Authenticator for AutoAuth {
    fn authenticate(
        &self,
        user: &str,
        domain: Option<&str>,
        password: &str,
    ) -> Result<Identity, AuthError> {
        self.active()?.authenticate(user, domain, password)
    }

    fn nt_hash(&self, user: &str) -> Option<[u8; 16]> {
        self.active().ok()?.nt_hash(user)
    }

    fn identity_after_nla(&self, user: &str) -> Result<Identity, AuthError> {
        self.active()?.identity_after_nla(user)
    }

    fn nla_ready(&self) -> bool {
        self.active().is_ok_and(|a| a.nla_ready())
    }

    fn describe(&self) -> String {
        format!(
            "auto: {} while it has users, else {}",
            self.users.describe(),
            self.pam.describe()
        )
    }
}

/// The authenticator `rdhost serve` uses for `kind`.
pub fn build(
    kind: AuthBackendKind,
    users_file: PathBuf,
    policy: RunAsPolicy,
) -> Arc<dyn Authenticator> {
    match kind {
        AuthBackendKind::UsersFile => Arc::new(UsersFileAuth::new(users_file, policy)),
        AuthBackendKind::Pam => Arc::new(PamAuth::new(PAM_SERVICE, policy)),
        AuthBackendKind::Auto => Arc::new(AutoAuth::new(
            UsersFileAuth::new(users_file, policy.clone()),
            PamAuth::new(PAM_SERVICE, policy),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{UserEntry, nt_hash};

    fn write_users(path: &Path, entries: &[UserEntry]) {
        let file = UsersFile {
            users: entries.to_vec(),
        };
        file.save(path).unwrap();
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.toml");
        (tmp, path)
    }

    #[test]
    fn users_file_success_and_failures_look_alike() {
        let (_tmp, path) = setup();
        write_users(
            &path,
            &[UserEntry::new("alice", "right", None, false).unwrap()],
        );
        let auth = UsersFileAuth::new(&path, RunAsPolicy::SingleUser);
        let id = auth.authenticate("alice", None, "right").unwrap();
        assert_eq!(
            id,
            Identity {
                user: "alice".into(),
                run_as: None
            }
        );
        assert_eq!(
            auth.authenticate("alice", None, "wrong"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth.authenticate("mallory", None, "right"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth.authenticate("alice", None, ""),
            Err(AuthError::BadCredentials)
        );
        // Domain is ignored; DOMAIN\user is split.
        assert!(
            auth.authenticate("alice", Some("WORKGROUP"), "right")
                .is_ok()
        );
        assert_eq!(
            auth.authenticate("HOST\\alice", None, "right")
                .unwrap()
                .user,
            "alice"
        );
    }

    #[test]
    fn users_file_changes_are_picked_up_without_restart() {
        let (_tmp, path) = setup();
        let auth = UsersFileAuth::new(&path, RunAsPolicy::SingleUser);
        assert_eq!(
            auth.authenticate("bob", None, "pw"),
            Err(AuthError::BadCredentials),
            "no file yet"
        );
        assert!(!auth.has_users().unwrap());

        write_users(&path, &[UserEntry::new("bob", "pw", None, false).unwrap()]);
        assert!(auth.authenticate("bob", None, "pw").is_ok());

        write_users(&path, &[UserEntry::new("bob", "new", None, false).unwrap()]);
        assert_eq!(
            auth.authenticate("bob", None, "pw"),
            Err(AuthError::BadCredentials)
        );
        assert!(auth.authenticate("bob", None, "new").is_ok());

        fs::remove_file(&path).unwrap();
        assert_eq!(
            auth.authenticate("bob", None, "new"),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn broken_users_file_is_a_backend_error_until_fixed() {
        let (_tmp, path) = setup();
        let auth = UsersFileAuth::new(&path, RunAsPolicy::SingleUser);
        fs::write(&path, "[[user]]\nname = 3\n").unwrap();
        let err = auth.authenticate("bob", None, "pw").unwrap_err();
        assert!(
            matches!(&err, AuthError::Backend(m) if m.contains("users.toml")),
            "{err}"
        );
        write_users(&path, &[UserEntry::new("bob", "pw", None, false).unwrap()]);
        assert!(auth.authenticate("bob", None, "pw").is_ok());
    }

    #[test]
    fn nt_hash_only_when_stored() {
        let (_tmp, path) = setup();
        write_users(
            &path,
            &[
                UserEntry::new("nla", "pw", None, true).unwrap(),
                UserEntry::new("plain", "pw", None, false).unwrap(),
            ],
        );
        let auth = UsersFileAuth::new(&path, RunAsPolicy::SingleUser);
        assert_eq!(auth.nt_hash("nla"), Some(nt_hash("pw")));
        assert_eq!(auth.nt_hash("DOM\\nla"), Some(nt_hash("pw")));
        assert_eq!(auth.nt_hash("plain"), None);
        assert_eq!(auth.nt_hash("nobody-here"), None);
    }

    #[test]
    fn run_as_rules_when_root() {
        let (_tmp, path) = setup();
        write_users(
            &path,
            &[
                UserEntry::new("default", "pw", None, false).unwrap(),
                UserEntry::new("mapped", "pw", Some("root".into()), false).unwrap(),
                UserEntry::new("ghost", "pw", Some("no-such-account-rdhost".into()), false)
                    .unwrap(),
            ],
        );
        let root = RunAsPolicy::Root {
            host_user: "root".into(),
        };
        let auth = UsersFileAuth::new(&path, root);
        let run_as = auth
            .authenticate("default", None, "pw")
            .unwrap()
            .run_as
            .unwrap();
        assert_eq!(
            (run_as.name.as_str(), run_as.uid, run_as.gid),
            ("root", 0, 0)
        );
        assert!(run_as.home.is_absolute());
        assert_eq!(
            auth.authenticate("mapped", None, "pw")
                .unwrap()
                .run_as
                .unwrap()
                .uid,
            0
        );
        let err = auth.authenticate("ghost", None, "pw").unwrap_err();
        assert!(
            matches!(&err, AuthError::Backend(m) if m.contains("no-such-account-rdhost")),
            "{err}"
        );
        // A wrong password never reaches the mapping.
        assert_eq!(
            auth.authenticate("ghost", None, "bad"),
            Err(AuthError::BadCredentials)
        );

        // Not root: never a run_as, even with a mapping.
        let auth = UsersFileAuth::new(&path, RunAsPolicy::SingleUser);
        assert_eq!(
            auth.authenticate("mapped", None, "pw").unwrap().run_as,
            None
        );
    }

    #[test]
    fn pam_rejects_unknown_user_cleanly() {
        let pam = PamAuth::new(PAM_SERVICE, RunAsPolicy::SingleUser);
        let started = std::time::Instant::now();
        let result = pam.authenticate("rdhost-no-such-user-4711", None, "not the password");
        assert_eq!(result, Err(AuthError::BadCredentials));
        // PAM's own failure delay (~2 s in pam_unix) is disabled: ours is per source address.
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            pam.authenticate("", None, "x"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            pam.authenticate("a\0b", None, "x"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(pam.nt_hash("root"), None);
    }

    #[test]
    fn auto_uses_users_file_only_when_it_has_users() {
        let (_tmp, path) = setup();
        let auto = AutoAuth::new(
            UsersFileAuth::new(&path, RunAsPolicy::SingleUser),
            PamAuth::new(PAM_SERVICE, RunAsPolicy::SingleUser),
        );
        // Empty: PAM decides (and has no such user).
        assert_eq!(
            auto.authenticate("carol", None, "pw"),
            Err(AuthError::BadCredentials)
        );
        assert!(auto.describe().contains("PAM"));
        write_users(&path, &[UserEntry::new("carol", "pw", None, true).unwrap()]);
        assert_eq!(
            auto.authenticate("carol", None, "pw").unwrap().user,
            "carol"
        );
        assert_eq!(auto.nt_hash("carol"), Some(nt_hash("pw")));
    }

    #[test]
    fn nla_readiness_and_identity_after_nla() {
        let (_tmp, path) = setup();
        let root = RunAsPolicy::Root {
            host_user: "root".into(),
        };
        let auth = UsersFileAuth::new(&path, root.clone());
        assert!(!auth.nla_ready(), "no users: NLA cannot check anyone");
        write_users(&path, &[UserEntry::new("nla", "pw", None, true).unwrap()]);
        assert!(auth.nla_ready());
        let id = auth.identity_after_nla("DOM\\nla").unwrap();
        assert_eq!(
            (id.user.as_str(), id.run_as.map(|u| u.uid)),
            ("nla", Some(0))
        );
        assert_eq!(
            auth.identity_after_nla("ghost"),
            Err(AuthError::BadCredentials)
        );

        // One account without an NT hash: NLA could not check it, so not ready.
        write_users(
            &path,
            &[
                UserEntry::new("nla", "pw", None, true).unwrap(),
                UserEntry::new("plain", "pw", None, false).unwrap(),
            ],
        );
        assert!(!auth.nla_ready());

        let pam = PamAuth::new(PAM_SERVICE, root);
        assert!(!pam.nla_ready());
        assert!(matches!(
            pam.identity_after_nla("root"),
            Err(AuthError::Backend(_))
        ));

        let auto = AutoAuth::new(
            UsersFileAuth::new(
                tempfile::tempdir().unwrap().path().join("u.toml"),
                RunAsPolicy::SingleUser,
            ),
            PamAuth::new(PAM_SERVICE, RunAsPolicy::SingleUser),
        );
        assert!(!auto.nla_ready(), "empty users file: PAM decides, no NLA");
    }

    #[test]
    fn split_domain_forms() {
        assert_eq!(split_domain("a", None), ("a", None));
        assert_eq!(split_domain("a", Some("")), ("a", None));
        assert_eq!(split_domain("a", Some("D")), ("a", Some("D")));
        assert_eq!(split_domain("D\\a", Some("X")), ("a", Some("D")));
    }
}
