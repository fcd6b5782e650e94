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
            init_logging(&config.log);
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
        _ => unreachable!("session commands were handled above"),
    }
}

fn init_logging(filter: &str) {
    // The filter was validated when the config was built.
    // Every client that connects by IP address makes rustls warn about its SNI; that is noise.
    let filter = if filter.contains("rustls") {
        filter.to_owned()
    } else {
        format!("{filter},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    // Colour codes only on a terminal: journald and log files want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: ServeConfig) -> anyhow::Result<ExitCode> {
    rdhost::wiring::serve(config).await?;
    Ok(ExitCode::SUCCESS)
}
