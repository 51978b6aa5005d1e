//! The svcplane binary: parses flags and hands over to the mode asked for.

mod cli;
mod manifests;
mod run;
mod status;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    run::init_logging(&cli.logging);
    match cli.command {
        cli::Command::Run(args) => run::all(args).await,
        cli::Command::Controllers(args) => run::controllers(args).await,
        cli::Command::Webhook(args) => run::webhook(args).await,
        cli::Command::Manifests(args) => manifests::print(&args),
        cli::Command::Status(args) => status::print(&args).await,
        cli::Command::Version => {
            println!("svcplane {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
