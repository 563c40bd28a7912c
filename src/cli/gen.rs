//! `snapsched completions SHELL` and `snapsched man`: shell completion scripts
//! and a roff man page, both generated from the clap definitions so they never
//! drift from the real arguments. Output goes to stdout for packaging.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
#[cfg(test)]
use clap::Parser;

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
/// summary without a "snapsched:" prefix or a final period. After clap's
/// sections come FILES, ENVIRONMENT, EXIT STATUS and EXAMPLES.
pub fn man_page() -> Result<Vec<u8>, CliError> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd);
    let mut buf = Vec::new();
    man.render(&mut buf)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot render the man page: {e}")))?;
    // Our sections go before clap's VERSION section (the page's last).
    let page = String::from_utf8_lossy(&buf).into_owned();
    let at = page.find(".SH VERSION").unwrap_or(page.len());
    let mut out = page[..at].to_owned();
    out.push_str(MAIN_PAGE_SECTIONS);
    out.push_str(&page[at..]);
    let buf = out.into_bytes();
    Ok(buf)
}

/// Every page: snapsched(1) and one per subcommand at every depth
/// (`snapsched-def(1)`, `snapsched-def-add(1)`, …), the names the main
/// page's SUBCOMMANDS section refers to. `(file name, roff)` pairs.
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>, CliError> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let man = clap_mangen::Man::new(sub.clone());
            let mut buf = Vec::new();
            man.render(&mut buf)?;
            buf.extend_from_slice(SUBPAGE_SEE_ALSO.as_bytes());
            out.push((man.get_filename(), buf));
            walk(sub, out)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![("snapsched.1".to_owned(), man_page()?)];
    walk(&cmd, &mut pages)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot render the man pages: {e}")))?;
    Ok(pages)
}

/// `snapsched man`: the main page to stdout, or with `--dir` every page
/// written into DIR (created if missing), one file name per line on stdout.
pub fn man(dir: Option<&Path>) -> CliResult {
    let Some(dir) = dir else {
        let buf = man_page()?;
        let mut out = std::io::stdout().lock();
        return out
            .write_all(&buf)
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write the man page: {e}")));
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "cannot create directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut out = std::io::stdout().lock();
    for (name, page) in man_pages()? {
        let path = dir.join(&name);
        std::fs::write(&path, page).map_err(|e| {
            CliError::Runtime(anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })?;
        writeln!(out, "{}", path.display())
            .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot write to stdout: {e}")))?;
    }
    Ok(())
}

const SUBPAGE_SEE_ALSO: &str = r#".SH "SEE ALSO"
\fBsnapsched\fR(1) for files, environment, exit status and examples.
"#;

const MAIN_PAGE_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/snapsched/config.toml\fR
The configuration file (TOML) unless \fB\-\-config\fR or \fBSNAPSCHED_CONFIG\fR names another.
\fBsnapsched config default\fR prints a commented one; an example is in
\fI/usr/share/doc/snapsched/examples/config.toml\fR.
.TP
\fI/var/lib/snapsched/snapsched.db\fR
The service's SQLite store (the unit's \fBStateDirectory=\fR). Without
\fBdaemon.database\fR the store is \fI$STATE_DIRECTORY/snapsched.db\fR under
systemd, else \fI$XDG_STATE_HOME/snapsched/snapsched.db\fR, else
\fI~/.local/state/snapsched/snapsched.db\fR. \fBdaemon.database\fR may also be
a \fBpostgres://\fR URL shared by several daemons.
.TP
\fI/lib/systemd/system/snapsched.service\fR
The hardened systemd unit that runs \fBsnapsched daemon\fR.
.SH ENVIRONMENT
.TP
\fBSNAPSCHED_CONFIG\fR
Path of the configuration file.
.TP
\fBSNAPSCHED__\fISECTION\fB__\fIKEY\fR
Overrides one configuration key, e.g. \fBSNAPSCHED__DAEMON__LOG_LEVEL=debug\fR.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Set by systemd for \fBLoadCredential=\fR: a credential named after a provider
(or \fBdatabase\fR for the PostgreSQL password) is read from it first.
.TP
\fBDIGITALOCEAN_TOKEN\fR, \fBERIGONES_API_KEY\fR
The default \fBtoken_env\fR/\fBapi_key_env\fR of a provider, read when no
credential or file is given.
.TP
\fBPGPASSWORD\fR, \fBPGPASSFILE\fR
The PostgreSQL password when \fBdaemon.database_password_file\fR is not set.
.TP
\fBRUST_LOG\fR
A tracing filter that wins over \fBdaemon.log_level\fR.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR, \fBJOURNAL_STREAM\fR
Set by systemd: readiness and watchdog notifications, and logging to the
journal with priorities.
.SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Runtime failure: a provider or the database failed, or a run failed.
.TP
\fB2\fR
Usage or validation error: bad arguments, an invalid configuration, an
unknown definition.
.PP
\fBsnapsched check\fR follows the monitoring plugin conventions instead:
0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
.SH EXAMPLES
Check the configuration and the credentials it names:
.PP
.RS
snapsched config check
.RE
.PP
Add a nightly snapshot of droplet 3164444 kept for a week:
.PP
.RS
snapsched def add nightly \-\-provider do \-\-target droplet:3164444 \-\-schedule '30 2 * * *' \-\-tz Europe/Prague \-\-retention 7
.RE
.PP
See what the daemon will do and what it did:
.PP
.RS
snapsched status
.br
snapsched history nightly
.br
snapsched snapshots nightly
.RE
.PP
Preview a tiered policy for a year, and plug the store into Nagios:
.PP
.RS
snapsched retention simulate nightly \-\-keep\-daily 7 \-\-keep\-monthly 12 \-\-from 2026\-01\-01T00:00:00Z \-\-for 1y
.br
snapsched check \-\-warning 1.5 \-\-critical 2
.RE
"#;

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

    /// Every `snapsched-…(1)` a page refers to is a page we write, and
    /// every page parses as roff with the sections an operator looks for.
    #[test]
    fn every_referenced_page_is_generated() {
        let pages = man_pages().expect("renders");
        let names: std::collections::BTreeSet<String> = pages
            .iter()
            .map(|(file, _)| file.trim_end_matches(".1").to_owned())
            .collect();
        for must in [
            "snapsched",
            "snapsched-def",
            "snapsched-def-add",
            "snapsched-check",
        ] {
            assert!(names.contains(must), "{must} missing from {names:?}");
        }
        for (file, page) in &pages {
            let page = String::from_utf8(page.clone()).expect("utf-8");
            assert!(page.contains(".SH NAME"), "{file} has no NAME");
            // References look like \fBsnapsched\-def\fR(1).
            for (at, _) in page.match_indices("\\fR(1)") {
                let Some(start) = page[..at].rfind("\\fB") else {
                    continue;
                };
                let name = page[start + 3..at].replace("\\-", "-");
                assert!(
                    names.contains(&name),
                    "{file} refers to {name}(1), not generated"
                );
            }
        }
        let main = String::from_utf8(pages[0].1.clone()).unwrap();
        for section in [
            ".SH FILES",
            ".SH ENVIRONMENT",
            ".SH \"EXIT STATUS\"",
            ".SH EXAMPLES",
        ] {
            assert!(main.contains(section), "main page lacks {section}");
        }
    }

    /// The examples in the main page parse with the real argument parser.
    #[test]
    fn main_page_examples_parse() {
        let main = String::from_utf8(man_page().expect("renders")).unwrap();
        let examples = &main[main.find(".SH EXAMPLES").expect("EXAMPLES")..];
        let mut seen = 0;
        for line in examples.lines().filter(|l| l.starts_with("snapsched ")) {
            let line = line.replace("\\-", "-");
            let argv = shlex::split(&line).unwrap_or_else(|| panic!("{line}: unbalanced quotes"));
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("example does not parse: {line}\n{e}");
            }
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} examples");
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
