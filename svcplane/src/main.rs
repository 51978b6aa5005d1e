//! The svcplane binary: parses flags and hands over to the mode asked for.

use clap::Parser;
use svcplane::cli::{Cli, Command};
use svcplane::{manifests, run, status};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    run::init_logging(&cli.logging);
    match cli.command {
        Command::Run(args) => run::all(*args).await,
        Command::Controllers(args) => run::controllers(args).await,
        Command::Webhook(args) => run::webhook(args).await,
        Command::Manifests(args) => manifests::print(&args),
        Command::Status(args) => status::print(&args).await,
        Command::Version => {
            println!("svcplane {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
