//! The users file (`users.toml` in the state directory): accounts that exist only for rdhost,
//! for containers and tests where there are no system users to authenticate with PAM.
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! nt_hash = "8846f7eaee8fb117ad06bdd830b7586c"   # only with `user add --nt-hash` (enables NLA)
//! system_user = "alice"                          # account sessions run as when the host is root
//!                                                # (default: the system account named like it)
//! ```
//!
//! The file is mode 0600 and always replaced atomically (temporary file + rename).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

use crate::state_dir::{annotate, write_atomic};

/// Longest accepted account name (Windows clients allow 20 in the old client info; newer ones more).
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file: {0}")]
    Read(io::Error),
    #[error("cannot write users file: {0}")]
    Write(io::Error),
    #[error("users file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("invalid user name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error(
        "user {0:?} already exists; remove it first with `rdhost user remove {0}` to replace it"
    )]
    Exists(String),
    #[error("no user named {0:?} (see `rdhost user list`)")]
    NotFound(String),
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// One account of the users file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Hex MD4 of the UTF-16LE password. Password-equivalent for NTLM; present only when the
    /// admin asked for it (`--nt-hash`), because NLA (CredSSP/NTLM) cannot work without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nt_hash: Option<String>,
    /// The system account this user's sessions run as when the host runs as root (default: the
    /// system account of the same name; with neither, a root host refuses the logon rather
    /// than run it as root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_user: Option<String>,
}

impl UserEntry {
    /// A new entry with a fresh argon2id hash (and the NT hash if `with_nt_hash`).
    pub fn new(
        name: &str,
        password: &str,
        system_user: Option<String>,
        with_nt_hash: bool,
    ) -> Result<Self, UsersError> {
        validate_name(name)?;
        if let Some(sys) = &system_user {
            validate_system_user_name(sys)?;
        }
        Ok(Self {
            name: name.to_owned(),
            password_hash: hash_password(password)?,
            nt_hash: with_nt_hash.then(|| to_hex(&nt_hash(password))),
            system_user,
        })
    }

    /// The stored NT hash, if any (validated when the file was parsed).
    pub fn nt_hash_bytes(&self) -> Option<[u8; 16]> {
        self.nt_hash.as_deref().and_then(parse_nt_hash)
    }
}

/// The whole users file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default, rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserEntry>,
}

const HEADER: &str = "\
# rdhost users file. Managed with `rdhost user add|list|remove`; rdhost re-reads it on change.
# Hashes here are secrets (nt_hash is password-equivalent): keep this file mode 0600.

";

impl UsersFile {
    /// Read the users file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(UsersError::Read(annotate(e, path))),
        }
    }

    /// Parse and validate: names valid and unique, hashes well-formed. `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, UsersError> {
        let invalid = |message: String| UsersError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: UsersFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (i, u) in file.users.iter().enumerate() {
            validate_name(&u.name).map_err(|e| invalid(e.to_string()))?;
            if file.users[..i].iter().any(|o| o.name == u.name) {
                return Err(invalid(format!("user {:?} appears twice", u.name)));
            }
            PasswordHash::new(&u.password_hash).map_err(|e| {
                invalid(format!(
                    "user {:?}: password_hash is not a PHC string: {e}",
                    u.name
                ))
            })?;
            if let Some(h) = &u.nt_hash
                && parse_nt_hash(h).is_none()
            {
                return Err(invalid(format!(
                    "user {:?}: nt_hash must be 32 hex digits",
                    u.name
                )));
            }
            if let Some(sys) = &u.system_user {
                validate_system_user_name(sys)
                    .map_err(|e| invalid(format!("user {:?}: {e}", u.name)))?;
            }
        }
        Ok(file)
    }

    /// Write atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let body = toml::to_string(self).map_err(|e| UsersError::Write(io::Error::other(e)))?;
        write_atomic(path, format!("{HEADER}{body}").as_bytes(), 0o600).map_err(UsersError::Write)
    }

    pub fn get(&self, name: &str) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn add(&mut self, entry: UserEntry) -> Result<(), UsersError> {
        if self.get(&entry.name).is_some() {
            return Err(UsersError::Exists(entry.name));
        }
        self.users.push(entry);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<UserEntry, UsersError> {
        let i = self
            .users
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| UsersError::NotFound(name.to_owned()))?;
        Ok(self.users.remove(i))
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Hold this while reading-modifying-writing the users file so two concurrent
/// `rdhost user add` runs cannot lose each other's change.
pub struct UsersLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

impl UsersLock {
    pub fn acquire(lock_path: &Path) -> Result<Self, UsersError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(|e| UsersError::Write(annotate(e, lock_path)))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| UsersError::Write(annotate(io::Error::from(errno), lock_path)))?;
        Ok(Self { _lock: lock })
    }
}

/// Account names: 1–64 of ASCII letters, digits, `.`, `_`, `-`, not starting with `.` or `-`.
/// Kept to what RDP clients can type and what is safe in logs, file names and shell contexts.
pub fn validate_name(name: &str) -> Result<(), UsersError> {
    let fail = |reason: &str| {
        Err(UsersError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail(&format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with(['.', '-']) {
        return fail("it must not start with '.' or '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return fail(&format!(
            "{c:?} is not allowed (use letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// System account names are looked up with getpwnam; refuse what could never be one.
fn validate_system_user_name(name: &str) -> Result<(), UsersError> {
    if name.is_empty()
        || name.len() > 256
        || name.contains(['/', ':', '\0'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(UsersError::InvalidName {
            name: name.to_owned(),
            reason: "not a valid system account name".to_owned(),
        });
    }
    Ok(())
}

/// argon2id (the crate's defaults: OWASP-recommended m=19 MiB, t=2, p=1) PHC string.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Check a password against a PHC string; malformed hashes never verify.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// NTOWFv1: MD4 of the UTF-16LE password.
pub fn nt_hash(password: &str) -> [u8; 16] {
    use md4::Digest;
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    md4::Md4::digest(&utf16).into()
}

pub fn parse_nt_hash(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn nt_hash_known_answer() {
        // The classic NTLM test vector: NT hash of "password".
        assert_eq!(
            to_hex(&nt_hash("password")),
            "8846f7eaee8fb117ad06bdd830b7586c"
        );
        assert_eq!(to_hex(&nt_hash("")), "31d6cfe0d16ae931b73c59d7e0c089c0");
        assert_eq!(
            parse_nt_hash("8846f7eaee8fb117ad06bdd830b7586c"),
            Some(nt_hash("password"))
        );
        assert_eq!(
            parse_nt_hash("8846F7EAEE8FB117AD06BDD830B7586C"),
            Some(nt_hash("password"))
        );
        assert_eq!(parse_nt_hash("8846f7"), None);
        assert_eq!(parse_nt_hash("zz46f7eaee8fb117ad06bdd830b7586c"), None);
        assert_eq!(parse_nt_hash("é846f7eaee8fb117ad06bdd830b7586"), None);
    }

    #[test]
    fn argon2id_hash_and_verify() {
        let h = hash_password("s3cret pass").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "s3cret pass"));
        assert!(!verify_password(&h, "s3cret pasS"));
        assert!(!verify_password(&h, ""));
        assert!(!verify_password("not a hash", "s3cret pass"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_password("s3cret pass").unwrap());
        assert!(matches!(hash_password(""), Err(UsersError::EmptyPassword)));
    }

    #[test]
    fn name_validation() {
        for ok in ["alice", "a", "Bob_2", "first.last", "x-y", &"a".repeat(64)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a/b",
            "DOM\\user",
            "u@host",
            "é",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(validate_name(bad), Err(UsersError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.toml");
        assert!(
            UsersFile::load(&path).unwrap().is_empty(),
            "missing file = empty"
        );

        let mut file = UsersFile::default();
        file.add(UserEntry::new("alice", "pw1", None, false).unwrap())
            .unwrap();
        file.add(UserEntry::new("bob", "pw2", Some("nobody".into()), true).unwrap())
            .unwrap();
        file.save(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);

        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# rdhost users file"));
        assert!(
            !text.contains("alice\"\nnt_hash"),
            "no nt_hash unless asked:\n{text}"
        );

        let loaded = UsersFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        let bob = loaded.get("bob").unwrap();
        assert_eq!(bob.nt_hash_bytes(), Some(nt_hash("pw2")));
        assert_eq!(bob.system_user.as_deref(), Some("nobody"));
        assert!(verify_password(&bob.password_hash, "pw2"));
        assert_eq!(loaded.get("alice").unwrap().nt_hash, None);
    }

    #[test]
    fn add_existing_and_remove_unknown_fail() {
        let mut file = UsersFile::default();
        file.add(UserEntry::new("alice", "pw", None, false).unwrap())
            .unwrap();
        let err = file
            .add(UserEntry::new("alice", "pw", None, false).unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains("rdhost user remove alice"),
            "{err}"
        );
        assert!(matches!(file.remove("carol"), Err(UsersError::NotFound(_))));
        assert_eq!(file.remove("alice").unwrap().name, "alice");
        assert!(file.is_empty());
    }

    #[test]
    fn invalid_files_are_rejected_with_reasons() {
        let p = Path::new("/x/users.toml");
        let h = hash_password("pw").unwrap();
        let cases = [
            (
                format!("[[user]]\nname = \"a\"\npassword_hash = \"{h}\"\ncolour = 1\n"),
                "colour",
            ),
            (
                format!("[[user]]\nname = \"a b\"\npassword_hash = \"{h}\"\n"),
                "invalid user name",
            ),
            (
                format!(
                    "[[user]]\nname = \"a\"\npassword_hash = \"{h}\"\n[[user]]\nname = \"a\"\npassword_hash = \"{h}\"\n"
                ),
                "twice",
            ),
            (
                "[[user]]\nname = \"a\"\npassword_hash = \"plain\"\n".to_string(),
                "PHC",
            ),
            (
                format!("[[user]]\nname = \"a\"\npassword_hash = \"{h}\"\nnt_hash = \"12\"\n"),
                "nt_hash",
            ),
            (
                format!("[[user]]\nname = \"a\"\npassword_hash = \"{h}\"\nsystem_user = \"a:b\"\n"),
                "system account",
            ),
            ("users = 3".to_string(), "users"),
        ];
        for (text, needle) in cases {
            let err = UsersFile::parse(&text, p).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("/x/users.toml"),
                "{needle}: {err}"
            );
        }
        assert!(UsersFile::parse("", p).unwrap().is_empty());
    }

    #[test]
    fn lock_serialises() {
        let tmp = tempfile::tempdir().unwrap();
        let lock_path = tmp.path().join("users.lock");
        let held = UsersLock::acquire(&lock_path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = lock_path.clone();
        let t = std::thread::spawn(move || {
            let _second = UsersLock::acquire(&p).unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "second lock must wait"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
