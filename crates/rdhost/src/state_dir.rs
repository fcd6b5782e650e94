//! The state directory: where the host keeps its users file and TLS identity.
//!
//! Layout (all private to the host's user):
//! ```text
//! <state dir>/            0700
//!   users.toml            0600  users-file accounts (argon2id hashes; NT hashes when enabled)
//!   users.lock            0600  serialises concurrent `rdhost user add|remove`
//!   tls/                  0700
//!     cert.pem            0644  self-signed certificate (generated on first start)
//!     key.pem             0600  its private key
//! ```

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where state lives when the host runs as root.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/rdhost";

/// The default state directory: `/var/lib/rdhost` as root, else `$XDG_STATE_HOME/rdhost`, else
/// `~/.local/state/rdhost`.
pub fn default_state_dir() -> Option<PathBuf> {
    default_state_dir_for(
        nix::unistd::geteuid().is_root(),
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`default_state_dir`] with its inputs made explicit (for tests).
pub fn default_state_dir_for(
    is_root: bool,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from(SYSTEM_STATE_DIR));
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = xdg_state_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Some(xdg.join("rdhost"));
    }
    let home = home.map(PathBuf::from).filter(|p| p.is_absolute())?;
    Some(home.join(".local/state/rdhost"))
}

/// A state directory. [`StateDir::create`] makes sure it exists; [`StateDir::at`] only names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Name a state directory without touching the file system (for read-only commands).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Create the directory (and parents) if missing; new directories get mode 0700.
    pub fn create(root: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = Self::at(root);
        create_private_dir(&dir.root)?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn users_file(&self) -> PathBuf {
        self.root.join("users.toml")
    }

    pub fn users_lock(&self) -> PathBuf {
        self.root.join("users.lock")
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.tls_dir().join("cert.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.tls_dir().join("key.pem")
    }
}

/// `mkdir -p` where every directory this call creates is 0700 (umask can only narrow it).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| annotate(e, path))
}

/// Write `contents` to `path` atomically: a temporary file in the same directory, created with
/// `mode` from the start (so it is never readable by others, even briefly), synced, then renamed
/// over `path`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by umask; set it exactly (only ever narrower).
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| annotate(e, path))
}

/// io::Error does not carry the path; add it so messages say which file.
pub(crate) fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn default_dir_rules() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            default_state_dir_for(true, os("/x"), os("/home/a")),
            Some(PathBuf::from("/var/lib/rdhost"))
        );
        assert_eq!(
            default_state_dir_for(false, os("/x/state"), os("/home/a")),
            Some(PathBuf::from("/x/state/rdhost"))
        );
        assert_eq!(
            default_state_dir_for(false, None, os("/home/a")),
            Some(PathBuf::from("/home/a/.local/state/rdhost"))
        );
        assert_eq!(
            default_state_dir_for(false, os("relative"), os("/home/a")),
            Some(PathBuf::from("/home/a/.local/state/rdhost"))
        );
        assert_eq!(default_state_dir_for(false, None, None), None);
    }

    #[test]
    fn create_makes_private_dirs_and_paths_are_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b");
        let dir = StateDir::create(&root).unwrap();
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(tmp.path().join("a")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(dir.users_file(), root.join("users.toml"));
        assert_eq!(dir.cert_file(), root.join("tls/cert.pem"));
        assert_eq!(dir.key_file(), root.join("tls/key.pem"));
        // Creating again is fine.
        StateDir::create(&root).unwrap();
    }

    #[test]
    fn write_atomic_sets_mode_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        let err = write_atomic(&tmp.path().join("missing/f"), b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("missing/f"), "{err}");
    }
}
