//! rdhost-shot: connect to an RDP host, wait for the screen to settle, save a PNG.
//!
//! The password comes from `RDHOST_PASSWORD`, or else the first line of stdin, so it never
//! shows up in `ps`.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rdhost_client::{ClientConfig, ConnectError, Security, SessionError, errinfo};

const USAGE: &str = "\
usage: rdhost-shot ADDR:PORT USER OUT.png [options]

Connects, waits until the screen has been still for --quiet-ms after the first update,
and writes the framebuffer to OUT.png.
The password is read from $RDHOST_PASSWORD, or else from the first line of stdin.

options:
  --sec tls|nla|negotiate   security protocol to offer (default: negotiate)
  --domain NAME             logon domain
  --pcid ID                 ask for session ID with a pre-connection PDU (like xfreerdp /pcid:ID)
  --size WxH                requested desktop size (default: 1024x768)
  --quiet-ms MS             how long the screen must be still (default: 500)
  --timeout SECS            give up after this long, connecting included (default: 30)

exit status: 0 saved; 2 usage; 3 could not connect; 4 authentication failed;
             5 refused by the server (its error info is printed); 6 no picture or session ended;
             7 could not write the PNG";

struct Args {
    config: ClientConfig,
    out: PathBuf,
    quiet: Duration,
    timeout: Duration,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut config = ClientConfig {
        security: Security::Negotiate,
        ..ClientConfig::default()
    };
    let mut quiet = Duration::from_millis(500);
    let mut timeout = Duration::from_secs(30);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--sec" => {
                config.security = match value("--sec")?.as_str() {
                    "tls" => Security::Tls,
                    "nla" => Security::Nla,
                    "negotiate" => Security::Negotiate,
                    other => return Err(format!("--sec: unknown protocol {other:?}")),
                }
            }
            "--domain" => config.domain = Some(value("--domain")?),
            "--pcid" => {
                config.session_id = Some(
                    value("--pcid")?
                        .parse()
                        .map_err(|e| format!("--pcid: {e}"))?,
                )
            }
            "--size" => {
                let v = value("--size")?;
                let (w, h) = v.split_once('x').ok_or("--size wants WxH")?;
                config.width = w.parse().map_err(|e| format!("--size: {e}"))?;
                config.height = h.parse().map_err(|e| format!("--size: {e}"))?;
            }
            "--quiet-ms" => {
                quiet = Duration::from_millis(
                    value("--quiet-ms")?
                        .parse()
                        .map_err(|e| format!("--quiet-ms: {e}"))?,
                )
            }
            "--timeout" => {
                timeout = Duration::from_secs(
                    value("--timeout")?
                        .parse()
                        .map_err(|e| format!("--timeout: {e}"))?,
                )
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => positional.push(arg.clone()),
        }
    }
    let [addr, user, out] = positional.as_slice() else {
        return Err("expected ADDR:PORT USER OUT.png".into());
    };
    config.addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    config.username = user.clone();
    config.connect_timeout = timeout;
    Ok(Args {
        config,
        out: PathBuf::from(out),
        quiet,
        timeout,
    })
}

fn password() -> Result<String, String> {
    if let Ok(p) = std::env::var("RDHOST_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn describe_error_info(code: Option<u32>) -> String {
    match code {
        Some(c) => format!("error info 0x{c:X} ({})", errinfo::name(c)),
        None => "no error info".into(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut args = match parse(&argv) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("rdhost-shot: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    args.config.password = match password() {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("rdhost-shot: {msg}");
            return ExitCode::from(2);
        }
    };

    let started = tokio::time::Instant::now();
    let mut client = match rdhost_client::connect(args.config.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rdhost-shot: {}: {e}", args.config.addr);
            return ExitCode::from(match e {
                ConnectError::AuthenticationFailed { .. } => 4,
                ConnectError::Refused { error_info } => {
                    println!("refused: {}", describe_error_info(error_info));
                    5
                }
                _ => 3,
            });
        }
    };

    let left = args.timeout.saturating_sub(started.elapsed());
    let settled = match client.pump_until_idle(args.quiet, left).await {
        Ok(settled) => settled,
        Err(SessionError::Closed { error_info }) => {
            println!("closed by server: {}", describe_error_info(error_info));
            return ExitCode::from(6);
        }
        Err(e) => {
            eprintln!("rdhost-shot: {e}");
            return ExitCode::from(6);
        }
    };
    if client.frames_received() == 0 {
        eprintln!("rdhost-shot: no picture within {:?}", args.timeout);
        return ExitCode::from(6);
    }
    if !settled {
        eprintln!(
            "rdhost-shot: the screen never kept still for {:?}; saving the latest picture",
            args.quiet
        );
    }
    if let Err(e) = client.save_png(&args.out) {
        eprintln!("rdhost-shot: {}: {e}", args.out.display());
        return ExitCode::from(7);
    }
    let codecs: Vec<String> = client
        .codecs_seen()
        .iter()
        .map(|(c, n)| format!("{c:?}x{n}"))
        .collect();
    println!(
        "saved {} ({}x{}, {} updates, {} bytes, session {}, codecs [{}])",
        args.out.display(),
        client.width(),
        client.height(),
        client.frames_received(),
        client.bytes_received(),
        client
            .server_session_id()
            .map_or("?".to_owned(), |id| id.to_string()),
        codecs.join(", ")
    );
    if let Err(e) = client.disconnect().await {
        eprintln!("rdhost-shot: disconnect: {e}");
    }
    ExitCode::SUCCESS
}
