use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rdhost::cli::{Cli, Command};
use rdhost::config::ServeConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rdhost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
