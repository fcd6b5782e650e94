//! `rdhost user add|list|remove`.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::auth::{AccountMapping, RunAsPolicy, SystemUser};
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
    add_as(args, password, out, RunAsPolicy::detect())
}

/// [`add`] for a host with `policy`. As root an account must have a system account to run as:
/// `--system-user`, or an existing system account of the same name (recorded explicitly).
fn add_as(
    args: UserAddArgs,
    password: &str,
    out: &mut dyn Write,
    policy: RunAsPolicy,
) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let system_user = match &args.system_user {
        Some(sys) => {
            if SystemUser::lookup(sys)
                .with_context(|| format!("looking up system account {sys:?}"))?
                .is_none()
            {
                bail!(
                    "there is no system account {sys:?} on this machine; create it first or name another with --system-user"
                );
            }
            Some(sys.clone())
        }
        None if policy == RunAsPolicy::Root => {
            let same = SystemUser::lookup(&args.name)
                .with_context(|| format!("looking up system account {:?}", args.name))?;
            if same.is_none() {
                bail!(
                    "as root, sessions run as a system account, and there is none named {0:?}: \
                     pass --system-user NAME (an existing account the sessions of {0} run as), \
                     or --system-user root if root sessions are really what you want",
                    args.name
                );
            }
            Some(args.name.clone())
        }
        None => None,
    };
    let entry = UserEntry::new(&args.name, password, system_user.clone(), args.nt_hash)?;
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
    match (policy, &system_user) {
        (RunAsPolicy::SingleUser, Some(_)) => writeln!(
            out,
            "note: --system-user takes effect only when `rdhost serve` runs as root"
        )?,
        (RunAsPolicy::Root, Some(sys)) => {
            let is_root = SystemUser::lookup(sys)
                .ok()
                .flatten()
                .is_some_and(|u| u.uid == 0);
            if is_root {
                // An alias of root (uid 0 under another name) is named, root itself need not be.
                let alias = if sys == "root" {
                    String::new()
                } else {
                    format!(" (system account {sys})")
                };
                writeln!(
                    out,
                    "warning: sessions of {} run as root{alias}: whoever has this password has root shells",
                    args.name
                )?;
            } else if args.system_user.is_none() {
                writeln!(
                    out,
                    "sessions of {} run as the system account {sys}",
                    args.name
                )?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn list(args: UserListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    list_as(args, out, RunAsPolicy::detect())
}

/// [`list`]; the SYSTEM USER column says what a host with `policy` does with each account.
fn list_as(args: UserListArgs, out: &mut dyn Write, policy: RunAsPolicy) -> anyhow::Result<()> {
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
    let systems: Vec<String> = file
        .users
        .iter()
        .map(|u| match (&u.system_user, policy) {
            (Some(sys), _) => sys.clone(),
            (None, RunAsPolicy::SingleUser) => HOST_USER.to_owned(),
            (None, RunAsPolicy::Root) => match AccountMapping::of(u) {
                Ok(AccountMapping::SameName(n)) => format!("{n} (same name)"),
                _ => UNMAPPED.to_owned(),
            },
        })
        .collect();
    let sys_width = systems
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("SYSTEM USER".len());
    writeln!(
        out,
        "{:<width$}  {:<sys_width$}  NLA",
        "NAME", "SYSTEM USER"
    )?;
    for (u, sys) in file.users.iter().zip(&systems) {
        let nla = if u.nt_hash.is_some() { "yes" } else { "no" };
        writeln!(out, "{:<width$}  {:<sys_width$}  {nla}", u.name, sys)?;
    }
    Ok(())
}

const HOST_USER: &str = "(host's user)";
/// As root, an account without a system account to run as: its logons are refused.
const UNMAPPED: &str = "(none: logons refused)";

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

    /// `add` on a host that is not root.
    fn add_as_user(args: UserAddArgs, password: &str, out: &mut dyn Write) -> anyhow::Result<()> {
        add_as(args, password, out, RunAsPolicy::SingleUser)
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
        let text = output(|o| add_as_user(add_args(&dir, "alice"), "pw-a", o)).unwrap();
        assert!(text.starts_with("added alice to"), "{text}");

        let args = UserAddArgs {
            nt_hash: true,
            system_user: Some("root".into()),
            ..add_args(&dir, "bob")
        };
        let text = output(|o| add_as_user(args, "pw-b", o)).unwrap();
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
            list_as(
                UserListArgs {
                    state_dir: Some(dir.clone()),
                },
                o,
                RunAsPolicy::SingleUser,
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
        let err = output(|o| add_as_user(add_args(&dir, "alice"), "x", o))
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
        assert!(output(|o| add_as_user(add_args(&dir, "bad name"), "pw", o)).is_err());
        assert!(
            output(|o| add_as_user(add_args(&dir, "carol"), "", o))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let args = UserAddArgs {
            system_user: Some("rdhost-no-such-account".into()),
            ..add_args(&dir, "carol")
        };
        let err = output(|o| add_as_user(args, "pw", o))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no system account"), "{err}");
        assert!(!dir.exists(), "nothing created");

        let listing = output(|o| {
            list_as(
                UserListArgs {
                    state_dir: Some(dir.clone()),
                },
                o,
                RunAsPolicy::SingleUser,
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

    #[test]
    fn as_root_an_account_needs_a_system_account_to_run_as() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let root = RunAsPolicy::Root;
        // No --system-user and no system account of that name: refused, saying what to pass.
        let err = output(|o| add_as(add_args(&dir, "nosuchsysuser"), "pw", o, root))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none named \"nosuchsysuser\"")
                && err.contains("--system-user NAME")
                && err.contains("--system-user root"),
            "{err}"
        );
        assert!(!dir.exists(), "nothing written");

        // A system account of the same name: used, and recorded.
        let text = output(|o| add_as(add_args(&dir, "nobody"), "pw", o, root)).unwrap();
        assert!(text.contains("run as the system account nobody"), "{text}");
        // Root, when asked for explicitly: allowed, with a warning.
        let args = UserAddArgs {
            system_user: Some("root".into()),
            ..add_args(&dir, "boss")
        };
        let text = output(|o| add_as(args, "pw", o, root)).unwrap();
        assert!(
            text.contains("warning: sessions of boss run as root"),
            "{text}"
        );
        let file = UsersFile::load(&dir.join("users.toml")).unwrap();
        assert_eq!(
            file.get("nobody").unwrap().system_user.as_deref(),
            Some("nobody")
        );
        assert_eq!(
            file.get("boss").unwrap().system_user.as_deref(),
            Some("root")
        );

        // An older file's entry without system_user shows what root does with it.
        let mut file = file;
        file.add(UserEntry::new("daemon", "pw", None, false).unwrap())
            .unwrap();
        file.add(UserEntry::new("nosuchsysuser", "pw", None, false).unwrap())
            .unwrap();
        file.save(&dir.join("users.toml")).unwrap();
        let listing = output(|o| {
            list_as(
                UserListArgs {
                    state_dir: Some(dir.clone()),
                },
                o,
                root,
            )
        })
        .unwrap();
        let line = |name: &str| {
            listing
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_owned()
        };
        assert!(line("daemon").contains("daemon (same name)"), "{listing}");
        assert!(
            line("nosuchsysuser").contains("(none: logons refused)"),
            "{listing}"
        );
        assert!(line("boss").contains("root"), "{listing}");
    }
}
