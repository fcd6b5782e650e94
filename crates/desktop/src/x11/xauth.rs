//! Xauthority files: the format Xlib, xauth and X servers share. A session's X server gets a
//! private file with one fresh MIT-MAGIC-COOKIE-1; attaching reads the cookie of a display from
//! the file its owner gives us.
//!
//! Each entry is five big-endian, length-prefixed fields: family (u16, no length), address,
//! display number (decimal text), auth name, auth data.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const MIT_MAGIC_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";
/// Matches any address: a session's file works whatever the host name is.
const FAMILY_WILD: u16 = 0xFFFF;
/// A Unix-socket display of the host named by `address`.
const FAMILY_LOCAL: u16 = 256;

/// One auth entry: what a client sends in its connection setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

impl Cookie {
    /// A fresh MIT-MAGIC-COOKIE-1 of 16 random bytes.
    pub fn generate() -> io::Result<Cookie> {
        let mut data = vec![0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut data)?;
        Ok(Cookie {
            name: MIT_MAGIC_COOKIE.to_vec(),
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    family: u16,
    address: Vec<u8>,
    number: Vec<u8>,
    cookie: Cookie,
}

/// Write a new file (mode 0600, replacing any) that lets clients of display `number` in.
pub fn write_file(path: &Path, number: u32, cookie: &Cookie) -> io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&FAMILY_WILD.to_be_bytes());
    for field in [
        &b""[..],
        number.to_string().as_bytes(),
        &cookie.name,
        &cookie.data,
    ] {
        let len = u16::try_from(field.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xauth field too long"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&out)?;
    file.sync_all()
}

/// The cookie for local display `number` in the file at `path`, as Xlib would choose it: an
/// entry for this host or a wildcard, else (a file copied from another machine name, as
/// containers do) any local entry for that display number.
pub fn read_cookie(path: &Path, number: u32) -> io::Result<Option<Cookie>> {
    let bytes = std::fs::read(path)?;
    let entries = parse(&bytes).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not an Xauthority file", path.display()),
        )
    })?;
    let hostname = nix::unistd::gethostname()
        .ok()
        .map(|h| h.into_encoded_bytes())
        .unwrap_or_default();
    let number = number.to_string().into_bytes();
    let for_display = |e: &&Entry| {
        (e.number.is_empty() || e.number == number) && e.cookie.name == MIT_MAGIC_COOKIE
    };
    let exact = entries
        .iter()
        .filter(for_display)
        .find(|e| e.family == FAMILY_WILD || (e.family == FAMILY_LOCAL && e.address == hostname));
    let any_local = entries
        .iter()
        .filter(for_display)
        .find(|e| e.family == FAMILY_LOCAL);
    Ok(exact.or(any_local).map(|e| e.cookie.clone()))
}

fn parse(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    fn u16_be(bytes: &mut &[u8]) -> Option<u16> {
        let (head, rest) = bytes.split_first_chunk::<2>()?;
        *bytes = rest;
        Some(u16::from_be_bytes(*head))
    }
    fn field(bytes: &mut &[u8]) -> Option<Vec<u8>> {
        let len = usize::from(u16_be(bytes)?);
        if bytes.len() < len {
            return None;
        }
        let (head, rest) = bytes.split_at(len);
        *bytes = rest;
        Some(head.to_vec())
    }
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let family = u16_be(&mut bytes)?;
        let address = field(&mut bytes)?;
        let number = field(&mut bytes)?;
        let name = field(&mut bytes)?;
        let data = field(&mut bytes)?;
        entries.push(Entry {
            family,
            address,
            number,
            cookie: Cookie { name, data },
        });
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_and_are_private() {
        let dir = std::env::temp_dir().join(format!("rdhost-xauth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("Xauthority");
        let cookie = Cookie::generate().unwrap();
        assert_eq!(cookie.data.len(), 16);
        write_file(&path, 7, &cookie).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_cookie(&path, 7).unwrap(), Some(cookie.clone()));
        assert_eq!(read_cookie(&path, 8).unwrap(), None);
        // Rewriting replaces the file.
        let other = Cookie::generate().unwrap();
        write_file(&path, 7, &other).unwrap();
        assert_eq!(read_cookie(&path, 7).unwrap(), Some(other));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_entries_of_another_host_name_are_the_fallback() {
        let mut bytes = Vec::new();
        let mut push = |family: u16, fields: [&[u8]; 4]| {
            bytes.extend_from_slice(&family.to_be_bytes());
            for f in fields {
                bytes.extend_from_slice(&(f.len() as u16).to_be_bytes());
                bytes.extend_from_slice(f);
            }
        };
        push(
            FAMILY_LOCAL,
            [b"elsewhere", b"3", MIT_MAGIC_COOKIE, b"0123456789abcdef"],
        );
        push(
            FAMILY_LOCAL,
            [b"elsewhere", b"4", b"XDM-AUTHORIZATION-1", b"x"],
        );
        let entries = parse(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        let path = std::env::temp_dir().join(format!("rdhost-xauth-local-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            read_cookie(&path, 3).unwrap().unwrap().data,
            b"0123456789abcdef"
        );
        assert_eq!(read_cookie(&path, 4).unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn truncated_files_are_rejected() {
        assert!(parse(&[0xFF, 0xFF, 0, 5, b'a']).is_none());
        assert_eq!(parse(&[]).unwrap(), Vec::new());
    }
}
