//! `snapsched completions SHELL` and `snapsched man`: shell completion scripts
//! and a roff man page, both generated from the clap definitions so they never
//! drift from the real arguments. Output goes to stdout for packaging.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, CliError, CliResult};

/// Shells `snapsched completions` can write for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print the completion script for `shell` to stdout.
pub fn completions(shell: Shell) -> CliResult {
    let mut cmd = Cli::command();
    let gen = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Rendered into memory first: clap_complete panics on a write error
    // (e.g. a closed pipe), which must be an ordinary error here.
    let mut buf = Vec::new();
    clap_complete::generate(gen, &mut cmd, "snapsched", &mut buf);
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write completions: {e}")))
}

/// Print the snapsched(1) man page (roff) to stdout.
pub fn man() -> CliResult {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot render the man page: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write the man page: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_names_every_subcommand() {
        let mut buf = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut buf)
            .expect("renders");
        let page = String::from_utf8(buf).expect("utf-8");
        assert!(page.contains(".TH snapsched 1"), "{page}");
        for sub in ["daemon", "status", "history", "completions", "man"] {
            assert!(
                page.contains(&format!("snapsched\\-{sub}")),
                "{sub} missing:\n{page}"
            );
        }
    }

    #[test]
    fn completions_cover_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "snapsched", &mut buf);
            let text = String::from_utf8(buf).expect("utf-8");
            assert!(
                text.contains("completions") && text.contains("history"),
                "{shell:?}"
            );
        }
    }
}
