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
            // Line breaks of our own stay; any other control character
            // (from a provider, a file, the store) is shown escaped.
            let text =
                snapsched::table::escape_controls_but_newlines(&snapsched::domain::text::bounded(
                    &e.to_string(),
                    4 * snapsched::domain::text::ERROR_MAX,
                ));
            // Run by the unit (ExecReload's config check), stderr is the
            // journal: every line at priority error, as the daemon's.
            let prefix = if snapsched::telemetry::logging::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            let lines = format!("snapsched: {text}")
                .lines()
                .map(|l| format!("{prefix}{l}\n"))
                .collect::<String>();
            eprint!("{lines}");
            e.exit_code()
        }
    }
}
