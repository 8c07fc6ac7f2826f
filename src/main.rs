//! The `orderwatch` binary: parse the command line, hand over to the library.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = orderwatch::cli::Cli::parse();
    orderwatch::cli::main(cli).await
}
