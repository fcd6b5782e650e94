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
//! * host root, users-file account: its `system_user`, else the system account of the same
//!   name; with neither the logon is refused. Never root unless the administrator named root
//!   (`--system-user root`, or an account called root).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::AuthBackendKind;
use crate::pam;
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
    /// Every account NLA can check, with its NT hash: SPNEGO-wrapped NTLM needs them all up front.
    fn nla_accounts(&self) -> Vec<(String, [u8; 16])> {
        Vec::new()
    }
    /// One line for the startup log: which backend, where.
    fn describe(&self) -> String;
}

/// How identities map to system accounts; decided once from the host's privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAsPolicy {
    /// The host is not root: sessions run as the host's user; `run_as` is always `None`.
    SingleUser,
    /// The host is root: every session runs as a system account, and which one is explicit
    /// (a PAM user's own; a users-file account's `system_user` or namesake), never a default.
    Root,
}

impl RunAsPolicy {
    pub fn detect() -> Self {
        if nix::unistd::geteuid().is_root() {
            Self::Root
        } else {
            Self::SingleUser
        }
    }

    /// The system account `name`, which `who` maps to; it must exist.
    fn resolve(self, name: &str, who: &str) -> Result<Option<SystemUser>, AuthError> {
        if self == Self::SingleUser {
            return Ok(None);
        }
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

/// Which system account a users-file account's sessions run as when the host is root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountMapping {
    /// Its `system_user`.
    Named(String),
    /// No `system_user`; a system account of the same name exists.
    SameName(String),
    /// No `system_user` and no system account of that name: logons are refused.
    Unmapped,
}

impl AccountMapping {
    /// How `entry` maps when the host is root (looks the same-named account up).
    pub fn of(entry: &UserEntry) -> Result<Self, AuthError> {
        if let Some(name) = &entry.system_user {
            return Ok(Self::Named(name.clone()));
        }
        match SystemUser::lookup(&entry.name) {
            Ok(Some(_)) => Ok(Self::SameName(entry.name.clone())),
            Ok(None) => Ok(Self::Unmapped),
            Err(e) => Err(AuthError::Backend(format!(
                "looking up system account {:?}: {e}",
                entry.name
            ))),
        }
    }

    /// The system account, if there is one to run as.
    pub fn account(&self) -> Option<&str> {
        match self {
            Self::Named(n) | Self::SameName(n) => Some(n),
            Self::Unmapped => None,
        }
    }
}

/// Why a users-file account without a system account cannot log on, and how to fix it.
fn unmapped_message(account: &str, users_file: &Path) -> String {
    format!(
        "users-file account {account:?} has no system_user and there is no system account \
         {account:?}: as root, rdhost runs a session only as an account named for it, never as \
         root by default. Add `system_user = \"NAME\"` to its entry in {} (`system_user = \"root\"` \
         if root sessions are really meant), or remove it and add it again with \
         `rdhost user add {account} --system-user NAME`",
        users_file.display()
    )
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
        let run_as = match self.policy {
            RunAsPolicy::SingleUser => None,
            RunAsPolicy::Root => {
                let Some(account) = AccountMapping::of(entry)?.account().map(str::to_owned) else {
                    return Err(AuthError::Backend(unmapped_message(
                        &entry.name,
                        &self.path,
                    )));
                };
                self.policy
                    .resolve(&account, &format!("users-file account {:?}", entry.name))?
            }
        };
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

    fn nla_accounts(&self) -> Vec<(String, [u8; 16])> {
        self.users().map(|f| f.users.iter().filter_map(|u| Some((u.name.clone(), u.nt_hash_bytes()?))).collect()).unwrap_or_default()
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

/// System users via PAM (service [`PAM_SERVICE`]): `pam_authenticate` then `pam_acct_mgmt`.
/// libpam is loaded at run time ([`crate::pam`]); without it every attempt is a backend error
/// that says what to install.
pub struct PamAuth {
    service: CString,
    policy: RunAsPolicy,
    library: Result<Arc<pam::Library>, pam::LoadError>,
    /// Some PAM modules are not thread-safe; one conversation at a time.
    serial: Mutex<()>,
}

impl PamAuth {
    /// PAM through the system's libpam (loaded once per process).
    pub fn new(service: &str, policy: RunAsPolicy) -> Self {
        Self::with_library(service, policy, pam::system())
    }

    /// PAM through `library`, or unavailable for the reason given: how tests stand in for a
    /// machine without libpam.
    pub fn with_library(
        service: &str,
        policy: RunAsPolicy,
        library: Result<Arc<pam::Library>, pam::LoadError>,
    ) -> Self {
        let service = CString::new(service).unwrap_or_else(|_| CString::from(c"rdhost"));
        Self {
            service,
            policy,
            library,
            serial: Mutex::new(()),
        }
    }

    /// Why PAM cannot be used, if it cannot.
    pub fn unavailable(&self) -> Option<&pam::LoadError> {
        self.library.as_ref().err()
    }

    /// Runs one PAM transaction; returns the (possibly module-mapped) user name.
    fn transaction(&self, user: &str, password: &str) -> Result<String, AuthError> {
        let library = self
            .library
            .as_ref()
            .map_err(|e| AuthError::Backend(e.to_string()))?;
        let _serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        library
            .authenticate(&self.service, user, password)
            .map_err(|refusal| match refusal {
                pam::Refusal::Denied(_) => AuthError::BadCredentials,
                pam::Refusal::Failed(text) => AuthError::Backend(text),
            })
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
            .resolve(&account, &format!("PAM user {account:?}"))?;
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
        let service = format!("PAM service {:?}", self.service.to_string_lossy());
        match &self.library {
            Ok(_) => service,
            Err(e) => format!("{service}, UNAVAILABLE ({e})"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Auto

/// The users file while it has at least one user, PAM otherwise; decided per attempt, so
/// `rdhost user add` on a running host switches it over without a restart. Without libpam it is
/// the users file alone.
pub struct AutoAuth {
    users: UsersFileAuth,
    pam: PamAuth,
}

impl AutoAuth {
    pub fn new(users: UsersFileAuth, pam: PamAuth) -> Self {
        Self { users, pam }
    }

    fn active(&self) -> Result<&dyn Authenticator, AuthError> {
        if self.users.has_users()? {
            return Ok(&self.users);
        }
        match self.pam.unavailable() {
            None => Ok(&self.pam),
            Some(e) => Err(AuthError::Backend(format!(
                "nobody can log on: the users file {} has no accounts (add one with `rdhost user add NAME`) and {e}",
                self.users.path().display()
            ))),
        }
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

    fn nla_accounts(&self) -> Vec<(String, [u8; 16])> {
        self.active().map(|a| a.nla_accounts()).unwrap_or_default()
    }

    fn identity_after_nla(&self, user: &str) -> Result<Identity, AuthError> {
        self.active()?.identity_after_nla(user)
    }

    fn nla_ready(&self) -> bool {
        self.active().is_ok_and(|a| a.nla_ready())
    }

    fn describe(&self) -> String {
        match self.pam.unavailable() {
            None => format!(
                "auto: {} while it has users, else {}",
                self.users.describe(),
                self.pam.describe()
            ),
            Some(_) => format!(
                "auto: {} only; {}",
                self.users.describe(),
                self.pam.describe()
            ),
        }
    }
}

/// The authenticator for `kind`, unchecked and silent (the sharer, where no account logs on,
/// uses this). `rdhost serve` uses [`build_for_serve`].
pub fn build(
    kind: AuthBackendKind,
    users_file: PathBuf,
    policy: RunAsPolicy,
) -> Arc<dyn Authenticator> {
    build_with(kind, users_file, policy, pam::system(), PAM_SERVICE)
}

fn build_with(
    kind: AuthBackendKind,
    users_file: PathBuf,
    policy: RunAsPolicy,
    library: Result<Arc<pam::Library>, pam::LoadError>,
    service: &str,
) -> Arc<dyn Authenticator> {
    match kind {
        AuthBackendKind::UsersFile => Arc::new(UsersFileAuth::new(users_file, policy)),
        AuthBackendKind::Pam => Arc::new(PamAuth::with_library(service, policy, library)),
        AuthBackendKind::Auto => Arc::new(AutoAuth::new(
            UsersFileAuth::new(users_file, policy),
            PamAuth::with_library(service, policy, library),
        )),
    }
}

/// The authenticator `rdhost serve` uses for `kind`, checked at start: `pam` without libpam is
/// an error that says what to install; `auto` without libpam, and users-file accounts that run
/// as root or cannot log on at all, are logged as warnings.
pub fn build_for_serve(
    kind: AuthBackendKind,
    pam_service: &str,
    users_file: PathBuf,
    policy: RunAsPolicy,
) -> anyhow::Result<Arc<dyn Authenticator>> {
    // Only installing libpam or changing `auth` helps: a configuration error (no restarts).
    let (authenticator, warnings) = build_checked_for(kind, pam_service, users_file, policy, pam::system())
        .map_err(|message| crate::config::ConfigError::Unusable { key: "auth", message })?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(authenticator)
}

/// [`build_for_serve`] with the libpam to use and the default PAM service, returning the
/// warnings instead of logging them.
pub fn build_checked(
    kind: AuthBackendKind,
    users_file: PathBuf,
    policy: RunAsPolicy,
    library: Result<Arc<pam::Library>, pam::LoadError>,
) -> Result<(Arc<dyn Authenticator>, Vec<String>), String> {
    build_checked_for(kind, PAM_SERVICE, users_file, policy, library)
}

/// [`build_checked`] for PAM service `service`.
pub fn build_checked_for(
    kind: AuthBackendKind,
    service: &str,
    users_file: PathBuf,
    policy: RunAsPolicy,
    library: Result<Arc<pam::Library>, pam::LoadError>,
) -> Result<(Arc<dyn Authenticator>, Vec<String>), String> {
    let mut warnings = Vec::new();
    match (kind, &library) {
        (AuthBackendKind::Pam, Err(e)) => {
            return Err(format!(
                "cannot use auth = \"pam\": {e}. Or let users-file accounts log on instead \
                 (auth = \"users-file\", accounts from `rdhost user add NAME`)"
            ));
        }
        (AuthBackendKind::Auto, Err(e)) => warnings.push(format!(
            "{e}. Until then system users cannot log on, only accounts from the users file {}",
            users_file.display()
        )),
        _ => {}
    }
    if kind != AuthBackendKind::Pam && policy == RunAsPolicy::Root {
        warnings.extend(root_account_warnings(&users_file));
    }
    Ok((build_with(kind, users_file, policy, library, service), warnings))
}

/// As root: one line for each users-file account whose sessions would run as root, or that
/// cannot log on for want of a system account.
fn root_account_warnings(users_file: &Path) -> Vec<String> {
    let users = match UsersFile::load(users_file) {
        Ok(users) => users,
        Err(e) => return vec![format!("{e}: its accounts cannot log on until it is fixed")],
    };
    let mut warnings = Vec::new();
    for entry in &users.users {
        let name = &entry.name;
        let mapping = match AccountMapping::of(entry) {
            Ok(m) => m,
            Err(e) => {
                warnings.push(format!("users-file account {name:?}: {e}"));
                continue;
            }
        };
        let Some(account) = mapping.account() else {
            warnings.push(format!(
                "{}; its logons are refused",
                unmapped_message(name, users_file)
            ));
            continue;
        };
        match SystemUser::lookup(account) {
            Ok(Some(u)) if u.uid == 0 => {
                let why = match mapping {
                    AccountMapping::Named(_) => format!("system_user = {account:?}"),
                    _ => "the system account of the same name".to_owned(),
                };
                warnings.push(format!(
                    "users-file account {name:?} runs its sessions as root ({why}): whoever has its password has root shells"
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => warnings.push(format!(
                "users-file account {name:?} maps to system account {account:?}, which does not exist; its logons are refused"
            )),
            Err(e) => warnings.push(format!("users-file account {name:?}: looking up system account {account:?}: {e}")),
        }
    }
    warnings
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
                // No system_user: the system account of the same name (nobody exists everywhere).
                UserEntry::new("nobody", "pw", None, false).unwrap(),
                UserEntry::new("mapped", "pw", Some("root".into()), false).unwrap(),
                UserEntry::new("ghost", "pw", Some("no-such-account-rdhost".into()), false)
                    .unwrap(),
                // Neither: refused, never root by default.
                UserEntry::new("nosuchsysuser-rdhost", "pw", None, false).unwrap(),
            ],
        );
        let auth = UsersFileAuth::new(&path, RunAsPolicy::Root);
        let run_as = auth
            .authenticate("nobody", None, "pw")
            .unwrap()
            .run_as
            .unwrap();
        let nobody = SystemUser::lookup("nobody").unwrap().unwrap();
        assert_eq!((run_as.name.as_str(), run_as.uid), ("nobody", nobody.uid));
        assert_ne!(run_as.uid, 0);
        assert!(run_as.home.is_absolute());
        assert_eq!(
            auth.authenticate("mapped", None, "pw")
                .unwrap()
                .run_as
                .unwrap()
                .uid,
            0,
            "an explicit system_user = root stays possible"
        );
        let err = auth.authenticate("ghost", None, "pw").unwrap_err();
        assert!(
            matches!(&err, AuthError::Backend(m) if m.contains("no-such-account-rdhost")),
            "{err}"
        );
        let err = auth
            .authenticate("nosuchsysuser-rdhost", None, "pw")
            .unwrap_err();
        let AuthError::Backend(text) = &err else {
            panic!("{err:?}")
        };
        assert!(
            text.contains("\"nosuchsysuser-rdhost\" has no system_user")
                && text.contains("never as root by default")
                && text.contains(&path.display().to_string())
                && text.contains("--system-user NAME"),
            "{text}"
        );
        assert!(matches!(
            auth.identity_after_nla("nosuchsysuser-rdhost"),
            Err(AuthError::Backend(_))
        ));
        // A wrong password never reaches the mapping.
        assert_eq!(
            auth.authenticate("ghost", None, "bad"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth.authenticate("nosuchsysuser-rdhost", None, "bad"),
            Err(AuthError::BadCredentials)
        );

        // Not root: never a run_as, even with a mapping or without a system account.
        let auth = UsersFileAuth::new(&path, RunAsPolicy::SingleUser);
        assert_eq!(
            auth.authenticate("mapped", None, "pw").unwrap().run_as,
            None
        );
        assert_eq!(
            auth.authenticate("nosuchsysuser-rdhost", None, "pw")
                .unwrap()
                .run_as,
            None
        );
    }

    fn missing_libpam() -> Result<Arc<pam::Library>, pam::LoadError> {
        pam::Library::load("libpam-rdhost-missing.so.9").map(Arc::new)
    }

    #[test]
    fn pam_goes_through_the_loaded_library() {
        // Loaded at run time: a nonexistent user is PAM's refusal, not a load error.
        let pam = PamAuth::new(PAM_SERVICE, RunAsPolicy::SingleUser);
        assert_eq!(pam.unavailable(), None);
        assert_eq!(pam.describe(), "PAM service \"rdhost\"");
        assert_eq!(
            pam.authenticate("rdhost-no-such-user-4711", None, "pw"),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn pam_without_libpam_says_what_to_install() {
        let pam = PamAuth::with_library(PAM_SERVICE, RunAsPolicy::SingleUser, missing_libpam());
        assert!(pam.unavailable().is_some());
        let err = pam.authenticate("root", None, "pw").unwrap_err();
        assert!(
            matches!(&err, AuthError::Backend(m) if m.contains("PAM is unavailable") && m.contains("libpam0g")),
            "{err}"
        );
        assert!(pam.describe().contains("UNAVAILABLE"), "{}", pam.describe());
    }

    #[test]
    fn auto_without_libpam_is_the_users_file_alone() {
        let (_tmp, path) = setup();
        let auto = AutoAuth::new(
            UsersFileAuth::new(&path, RunAsPolicy::SingleUser),
            PamAuth::with_library(PAM_SERVICE, RunAsPolicy::SingleUser, missing_libpam()),
        );
        let err = auto.authenticate("carol", None, "pw").unwrap_err();
        assert!(
            matches!(&err, AuthError::Backend(m) if m.contains("rdhost user add") && m.contains("libpam0g")),
            "no accounts and no PAM: the log says why nobody gets in: {err}"
        );
        assert!(auto.describe().contains("only"), "{}", auto.describe());
        write_users(
            &path,
            &[UserEntry::new("carol", "pw", None, false).unwrap()],
        );
        assert_eq!(
            auto.authenticate("carol", None, "pw").unwrap().user,
            "carol"
        );
        assert_eq!(
            auto.authenticate("carol", None, "bad"),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn serve_start_checks() {
        let (_tmp, path) = setup();
        // auth = "pam" without libpam: serve does not start, and says what to install.
        let Err(err) = build_checked(
            AuthBackendKind::Pam,
            path.clone(),
            RunAsPolicy::SingleUser,
            missing_libpam(),
        ) else {
            panic!("pam without libpam must fail")
        };
        assert!(
            err.contains("auth = \"pam\"") && err.contains("libpam0g"),
            "{err}"
        );
        // auto without libpam: a warning, and the users file serves.
        let (auth, warnings) = build_checked(
            AuthBackendKind::Auto,
            path.clone(),
            RunAsPolicy::SingleUser,
            missing_libpam(),
        )
        .unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("PAM is unavailable") && warnings[0].contains("users file"),
            "{warnings:?}"
        );
        assert!(auth.describe().contains("UNAVAILABLE"));
        // With libpam: nothing to say.
        let (_, warnings) = build_checked(
            AuthBackendKind::Auto,
            path.clone(),
            RunAsPolicy::SingleUser,
            pam::system(),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");

        // As root: accounts that run as root, or cannot log on, are named.
        write_users(
            &path,
            &[
                UserEntry::new("nobody", "pw", None, false).unwrap(),
                UserEntry::new("boss", "pw", Some("root".into()), false).unwrap(),
                UserEntry::new("root", "pw", None, false).unwrap(),
                UserEntry::new("nosuchsysuser-rdhost", "pw", None, false).unwrap(),
                UserEntry::new("ghost", "pw", Some("no-such-account-rdhost".into()), false)
                    .unwrap(),
            ],
        );
        let (_, warnings) = build_checked(
            AuthBackendKind::UsersFile,
            path.clone(),
            RunAsPolicy::Root,
            pam::system(),
        )
        .unwrap();
        let about = |name: &str| {
            warnings
                .iter()
                .filter(|w| w.contains(&format!("account \"{name}\"")))
                .collect::<Vec<_>>()
        };
        assert!(about("nobody").is_empty(), "{warnings:?}");
        assert!(
            about("boss").len() == 1
                && about("boss")[0].contains("runs its sessions as root (system_user = \"root\")"),
            "{warnings:?}"
        );
        assert!(
            about("root").len() == 1
                && about("root")[0].contains("as root (the system account of the same name)"),
            "{warnings:?}"
        );
        assert!(
            about("nosuchsysuser-rdhost").len() == 1
                && about("nosuchsysuser-rdhost")[0].contains("logons are refused"),
            "{warnings:?}"
        );
        assert!(
            about("ghost").len() == 1 && about("ghost")[0].contains("does not exist"),
            "{warnings:?}"
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        // Not root, or PAM only: the users file's mapping does not apply.
        let (_, warnings) = build_checked(
            AuthBackendKind::UsersFile,
            path.clone(),
            RunAsPolicy::SingleUser,
            pam::system(),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (_, warnings) = build_checked(
            AuthBackendKind::Pam,
            path.clone(),
            RunAsPolicy::Root,
            pam::system(),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // A broken users file is reported at start too.
        fs::write(&path, "[[user]]\nname = 3\n").unwrap();
        let (_, warnings) = build_checked(
            AuthBackendKind::Auto,
            path.clone(),
            RunAsPolicy::Root,
            pam::system(),
        )
        .unwrap();
        assert!(
            warnings.len() == 1 && warnings[0].contains("users.toml"),
            "{warnings:?}"
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
        let root = RunAsPolicy::Root;
        let auth = UsersFileAuth::new(&path, root);
        assert!(!auth.nla_ready(), "no users: NLA cannot check anyone");
        write_users(
            &path,
            &[UserEntry::new("nla", "pw", Some("root".into()), true).unwrap()],
        );
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
                UserEntry::new("nla", "pw", Some("root".into()), true).unwrap(),
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
