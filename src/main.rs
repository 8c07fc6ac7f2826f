//! The `orderwatch` binary: parse the command line, hand over to the library.

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = orderwatch::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(orderwatch::run(cli));
    // By now the store is flushed and closed. A blocking task still running
    // (a name lookup that a stop abandoned, a write to a stuck terminal)
    // must not hold the exit: dropping the runtime would wait for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}
