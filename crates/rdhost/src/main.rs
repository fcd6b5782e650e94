use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rdhost::cli::{Cli, Command};
use rdhost::config::{EX_CONFIG, ServeConfig, is_config_error};

fn main() -> ExitCode {
    // The host's helper that holds one session's PAM session (see `rdhost::pam`).
    if std::env::args_os().nth(1).is_some_and(|a| a == rdhost::pam::SESSION_HELPER_ARG) {
        return rdhost::pam::session_helper_main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A bad flag of `serve` is a configuration error like a bad key in its file: a service
        // manager must not restart it (see EX_CONFIG). Other commands keep clap's usage status.
        Err(e) if e.use_stderr() && invoked_subcommand().as_deref() == Some("serve") => {
            let _ = e.print();
            return ExitCode::from(EX_CONFIG);
        }
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_config_error(&e) => {
            eprintln!("rdhost: error: {e:#}");
            eprintln!("rdhost: the configuration must be fixed before the host can start (exit status {EX_CONFIG}, EX_CONFIG)");
            ExitCode::from(EX_CONFIG)
        }
        Err(e) => {
            eprintln!("rdhost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The first argument that is not an option: the subcommand, when the command line has one.
fn invoked_subcommand() -> Option<String> {
    std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).find(|a| !a.starts_with('-'))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match cli.command.into_session_command() {
        Ok(session_command) => return rdhost::control::commands::run(session_command, &mut std::io::stdout().lock()),
        Err(other) => other,
    };
    match command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(args.settings(), args.config.as_deref())?;
            rdhost::init_logging(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(config))
        }
        Command::User(cmd) => {
            rdhost::user_cmd::run(cmd, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Share(cmd) => rdhost::share::run(cmd),
        Command::View(args) => rdhost::view::run(args),
        _ => unreachable!("session commands were handled above"),
    }
}


async fn serve(config: ServeConfig) -> anyhow::Result<ExitCode> {
    rdhost::wiring::serve(config).await?;
    Ok(ExitCode::SUCCESS)
}
