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

/// The snapsched(1) man page (roff). Its NAME line, `snapsched \- <about>`,
/// is what `whatis` and `apropos` show, so the clap `about` is a one-line
/// summary without a "snapsched:" prefix or a final period.
pub fn man_page() -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot render the man page: {e}")))?;
    Ok(buf)
}

/// Print the snapsched(1) man page (roff) to stdout.
pub fn man() -> CliResult {
    let buf = man_page()?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write the man page: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_name_section_is_name_dash_summary() {
        let page = String::from_utf8(man_page().expect("renders")).expect("utf-8");
        let lines: Vec<&str> = page.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == ".SH NAME")
            .unwrap_or_else(|| panic!("no NAME section:\n{page}"));
        let about = Cli::command()
            .get_about()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert_eq!(
            lines.get(at + 1).copied(),
            Some(format!("snapsched \\- {}", about.replace('-', "\\-")).as_str())
        );
        assert!(
            about.starts_with("Snapshot scheduler for cloud VM disks")
                && !about.ends_with('.')
                && !about.contains('\n'),
            "about should be a one-line summary: {about:?}"
        );
        assert_eq!(lines.get(at + 2).copied(), Some(".SH SYNOPSIS"));
    }

    #[test]
    fn man_page_names_every_subcommand() {
        let page = String::from_utf8(man_page().expect("renders")).expect("utf-8");
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
