use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = snapsched::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("snapsched: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Bounded: an error may quote what came from outside.
            let text = e.to_string();
            eprintln!(
                "snapsched: {}",
                snapsched::domain::text::bounded(&text, 4 * snapsched::domain::text::ERROR_MAX)
            );
            e.exit_code()
        }
    }
}
