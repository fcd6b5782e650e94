//! `rdhost user add|list|remove`.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::auth::SystemUser;
use crate::cli::{UserAddArgs, UserCommand, UserListArgs, UserRemoveArgs};
use crate::state_dir::{StateDir, default_state_dir};
use crate::users::{UserEntry, UsersFile, UsersLock, validate_name};

pub fn run(cmd: UserCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add(args) => {
            let password = read_new_password(&args.name)?;
            add(args, &password, out)
        }
        UserCommand::List(args) => list(args, out),
        UserCommand::Remove(args) => remove(args, out),
    }
}

fn state_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    flag.or_else(default_state_dir)
        .context("cannot work out a default state directory (no $XDG_STATE_HOME or $HOME); pass --state-dir DIR")
}

/// The new account's password: one line from stdin when it is not a terminal, else prompted
/// twice without echo.
fn read_new_password(name: &str) -> anyhow::Result<String> {
    // Check the name before asking for a password that would be thrown away.
    validate_name(name)?;
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return read_password_line(stdin.lock());
    }
    let first = rpassword::prompt_password(format!("Password for {name}: "))
        .context("reading the password")?;
    if first.is_empty() {
        bail!("the password must not be empty");
    }
    let second =
        rpassword::prompt_password("Repeat the password: ").context("reading the password")?;
    if first != second {
        bail!("the passwords do not match; nothing was changed, run the command again");
    }
    Ok(first)
}

/// One line, trailing `\n` / `\r\n` removed. Anything after the first line is ignored.
pub fn read_password_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    if n == 0 {
        bail!(
            "no password on standard input; pipe one line in, e.g. `echo \"$PW\" | rdhost user add NAME`"
        );
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    if line.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(line)
}

/// Add `args.name` with `password` (already read).
pub fn add(args: UserAddArgs, password: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    if let Some(sys) = &args.system_user
        && SystemUser::lookup(sys)
            .with_context(|| format!("looking up system account {sys:?}"))?
            .is_none()
    {
        bail!(
            "there is no system account {sys:?} on this machine; create it first or leave out --system-user"
        );
    }
    let entry = UserEntry::new(&args.name, password, args.system_user.clone(), args.nt_hash)?;
    let dir =
        StateDir::create(state_dir(args.state_dir)?).context("creating the state directory")?;
    let path = dir.users_file();
    let _lock = UsersLock::acquire(&dir.users_lock())?;
    let mut file = UsersFile::load(&path)?;
    file.add(entry)?;
    file.save(&path)?;

    writeln!(out, "added {} to {}", args.name, path.display())?;
    if args.nt_hash {
        writeln!(
            out,
            "NT hash stored: {} can log on with NLA. It is password-equivalent for NTLM; keep {} secret.",
            args.name,
            path.display()
        )?;
    }
    if args.system_user.is_some() && !nix::unistd::geteuid().is_root() {
        writeln!(
            out,
            "note: --system-user takes effect only when `rdhost serve` runs as root"
        )?;
    }
    Ok(())
}

pub fn list(args: UserListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = StateDir::at(state_dir(args.state_dir)?).users_file();
    let file = UsersFile::load(&path)?;
    if file.is_empty() {
        writeln!(
            out,
            "no users in {} (add one with `rdhost user add NAME`)",
            path.display()
        )?;
        return Ok(());
    }
    let width = file
        .users
        .iter()
        .map(|u| u.name.len())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    let sys_width = file
        .users
        .iter()
        .map(|u| u.system_user.as_deref().map_or(HOST_USER.len(), str::len))
        .max()
        .unwrap_or(0)
        .max("SYSTEM USER".len());
    writeln!(
        out,
        "{:<width$}  {:<sys_width$}  NLA",
        "NAME", "SYSTEM USER"
    )?;
    for u in &file.users {
        let sys = u.system_user.as_deref().unwrap_or(HOST_USER);
        let nla = if u.nt_hash.is_some() { "yes" } else { "no" };
        writeln!(out, "{:<width$}  {:<sys_width$}  {nla}", u.name, sys)?;
    }
    Ok(())
}

const HOST_USER: &str = "(host's user)";

pub fn remove(args: UserRemoveArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = StateDir::at(state_dir(args.state_dir)?);
    let path = dir.users_file();
    if !path.exists() {
        bail!(
            "no user named {:?}: there is no users file at {}",
            args.name,
            path.display()
        );
    }
    let _lock = UsersLock::acquire(&dir.users_lock())?;
    let mut file = UsersFile::load(&path)?;
    file.remove(&args.name)?;
    file.save(&path)?;
    writeln!(out, "removed {} from {}", args.name, path.display())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{nt_hash, verify_password};

    fn add_args(dir: &std::path::Path, name: &str) -> UserAddArgs {
        UserAddArgs {
            name: name.into(),
            state_dir: Some(dir.into()),
            system_user: None,
            nt_hash: false,
        }
    }

    fn output(f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        f(&mut buf)?;
        Ok(String::from_utf8(buf).unwrap())
    }

    #[test]
    fn password_line_rules() {
        assert_eq!(read_password_line(&b"secret\n"[..]).unwrap(), "secret");
        assert_eq!(read_password_line(&b"secret\r\n"[..]).unwrap(), "secret");
        assert_eq!(
            read_password_line(&b"no newline"[..]).unwrap(),
            "no newline"
        );
        assert_eq!(
            read_password_line(&b" spaces kept \nsecond line\n"[..]).unwrap(),
            " spaces kept "
        );
        assert!(
            read_password_line(&b"\n"[..])
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            read_password_line(&b""[..])
                .unwrap_err()
                .to_string()
                .contains("no password")
        );
    }

    #[test]
    fn add_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let text = output(|o| add(add_args(&dir, "alice"), "pw-a", o)).unwrap();
        assert!(text.starts_with("added alice to"), "{text}");

        let args = UserAddArgs {
            nt_hash: true,
            system_user: Some("root".into()),
            ..add_args(&dir, "bob")
        };
        let text = output(|o| add(args, "pw-b", o)).unwrap();
        assert!(text.contains("password-equivalent"), "{text}");

        let file = UsersFile::load(&dir.join("users.toml")).unwrap();
        assert!(verify_password(
            &file.get("alice").unwrap().password_hash,
            "pw-a"
        ));
        assert_eq!(
            file.get("bob").unwrap().nt_hash_bytes(),
            Some(nt_hash("pw-b"))
        );

        let listing = output(|o| {
            list(
                UserListArgs {
                    state_dir: Some(dir.clone()),
                },
                o,
            )
        })
        .unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 3, "{listing}");
        assert!(lines[0].starts_with("NAME") && lines[0].contains("SYSTEM USER"));
        assert!(
            lines[1].starts_with("alice")
                && lines[1].contains("(host's user)")
                && lines[1].ends_with("no")
        );
        assert!(
            lines[2].starts_with("bob") && lines[2].contains("root") && lines[2].ends_with("yes")
        );
        assert!(
            !listing.contains("argon2")
                && !listing.contains(&crate::users::to_hex(&nt_hash("pw-b")))
        );

        // Existing names are refused with a hint.
        let err = output(|o| add(add_args(&dir, "alice"), "x", o))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already exists") && err.contains("rdhost user remove alice"),
            "{err}"
        );

        let text = output(|o| {
            remove(
                UserRemoveArgs {
                    name: "alice".into(),
                    state_dir: Some(dir.clone()),
                },
                o,
            )
        })
        .unwrap();
        assert!(text.starts_with("removed alice"));
        let err = output(|o| {
            remove(
                UserRemoveArgs {
                    name: "alice".into(),
                    state_dir: Some(dir.clone()),
                },
                o,
            )
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("no user named \"alice\""), "{err}");
        assert!(
            UsersFile::load(&dir.join("users.toml"))
                .unwrap()
                .get("bob")
                .is_some()
        );
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        assert!(output(|o| add(add_args(&dir, "bad name"), "pw", o)).is_err());
        assert!(
            output(|o| add(add_args(&dir, "carol"), "", o))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let args = UserAddArgs {
            system_user: Some("rdhost-no-such-account".into()),
            ..add_args(&dir, "carol")
        };
        let err = output(|o| add(args, "pw", o)).unwrap_err().to_string();
        assert!(err.contains("no system account"), "{err}");
        assert!(!dir.exists(), "nothing created");

        let listing = output(|o| {
            list(
                UserListArgs {
                    state_dir: Some(dir.clone()),
                },
                o,
            )
        })
        .unwrap();
        assert!(listing.starts_with("no users in"), "{listing}");
        let err = output(|o| {
            remove(
                UserRemoveArgs {
                    name: "x".into(),
                    state_dir: Some(dir.clone()),
                },
                o,
            )
        })
        .unwrap_err();
        assert!(err.to_string().contains("no users file"), "{err}");
    }
}
