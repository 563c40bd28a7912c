//! Shared helpers for the integration tests: a throw-away directory with a
//! config file and a database, and a way to run the real `snapsched` binary
//! against it ([`TestEnv`], here); running and stopping the binary
//! ([`process`]); definitions and configuration files ([`fixtures`]); the
//! fake provider APIs set up for the CLI ([`fake`]); a webhook receiver
//! ([`receiver`]); the retention oracle
//! ([`oracle`]); the scheduler on tokio's paused clock ([`paused`]). Test files import
//! helpers from here, never from each other.
//!
//! Invariants: every `TestEnv` owns its own directory (removed on drop) and
//! every run of the binary sees a scrubbed environment, so the developer's
//! own `SNAPSCHED_*` variables or `/etc/snapsched` never leak into a test.

#![allow(dead_code)]

pub mod cluster;
pub mod db;
pub mod fake;
pub mod fixtures;
pub mod hostile;
pub mod oracle;
pub mod paused;
pub mod process;
pub mod proxy;
pub mod receiver;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use process::{assert_no_panic, bin, outcome};

/// A configuration with one DigitalOcean provider (`do`), one Erigones
/// provider (`dc1`) and a fake provider (`fake`), no definitions, and the
/// database next to the file. Credentials come from environment variables,
/// which `load` does not read, so every command but `config check` works.
pub const BASE_CONFIG: &str = r#"
[daemon]
database = "snapsched.db"
timezone = "UTC"

[providers.do]
kind = "digitalocean"
token_env = "SNAPSCHED_TEST_DO_TOKEN"
api_url = "http://127.0.0.1:9"

[providers.dc1]
kind = "erigones"
api_url = "http://127.0.0.1:9/api"
api_key_env = "SNAPSCHED_TEST_DC1_KEY"

[providers.fake]
kind = "fake"
"#;

/// A temporary directory holding `config.toml` (mode 0600) and, once a
/// command opened it, `snapsched.db`.
pub struct TestEnv {
    pub dir: TempDir,
    /// Absolute path of the config file passed with `--config`.
    pub config: PathBuf,
}

impl TestEnv {
    /// A fresh directory with `config_toml` as its config file.
    pub fn new(config_toml: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("create temp dir");
        let config = dir.path().join("config.toml");
        let env = TestEnv { dir, config };
        env.write_config(config_toml);
        env
    }

    /// [`BASE_CONFIG`] and no definitions.
    pub fn base() -> TestEnv {
        TestEnv::new(BASE_CONFIG)
    }

    /// [`BASE_CONFIG`] followed by `extra` (e.g. `[[definitions]]` tables).
    pub fn base_with(extra: &str) -> TestEnv {
        TestEnv::new(&format!("{BASE_CONFIG}\n{extra}"))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The database file the base configuration names.
    pub fn db(&self) -> PathBuf {
        self.path().join("snapsched.db")
    }

    /// Replace the config file's contents, keeping it private (mode 0600).
    /// On PostgreSQL runs of the suite, `database = "snapsched.db"` becomes
    /// the URL of this test's own schema (see [`db::database_setting`]).
    pub fn write_config(&self, text: &str) {
        let text = match db::backend() {
            snapsched::store::Backend::Sqlite => text.to_owned(),
            snapsched::store::Backend::Postgres => text.replace(
                "database = \"snapsched.db\"",
                &format!("database = \"{}\"", db::database_setting(&self.db())),
            ),
        };
        write_file(&self.config, &text, 0o600);
    }

    /// Write `text` to `name` inside the directory with `mode`; returns the
    /// absolute path.
    pub fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path().join(name);
        write_file(&p, text, mode);
        p
    }

    /// A `Command` for the binary with `--config` set and a scrubbed
    /// environment (HOME and XDG_STATE_HOME point into the directory).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if (k.starts_with("SNAPSCHED") && k != "SNAPSCHED_TEST_BIN")
                || k == "STATE_DIRECTORY"
                || k == "CREDENTIALS_DIRECTORY"
            {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.env("HOME", self.path())
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("NO_COLOR", "1")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        cmd
    }

    /// Run the binary with `args`: (exit code, stdout, stderr). A process
    /// killed by a signal reports exit code -1.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_env(args, &[])
    }

    /// [`TestEnv::run`] with extra environment variables.
    pub fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = self.command(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        outcome(cmd.output().expect("spawn snapsched"))
    }

    /// Start `snapsched daemon` on this environment, its log in
    /// `daemon.log` inside the directory.
    pub fn daemon(&self) -> process::Daemon {
        process::Daemon::spawn(self.command(&["daemon"]), self.path().join("daemon.log"))
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code, 0,
            "snapsched {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Run, require exit code 2 (usage or validation error) and no panic;
    /// returns stderr.
    pub fn usage_error(&self, args: &[&str]) -> String {
        self.usage_error_env(args, &[])
    }

    /// [`TestEnv::usage_error`] with extra environment variables.
    pub fn usage_error_env(&self, args: &[&str], envs: &[(&str, &str)]) -> String {
        let (code, out, err) = self.run_env(args, envs);
        assert_eq!(
            code, 2,
            "snapsched {args:?}: expected exit 2\nstdout: {out}\nstderr: {err}"
        );
        assert_no_panic(&err);
        err
    }

    /// Run `args` with `--json` appended and parse stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{all:?}: bad JSON ({e}): {out}"))
    }

    /// `def list --json`, the definitions table as the CLI reports it.
    pub fn list(&self) -> Vec<serde_json::Value> {
        match self.json(&["def", "list"]) {
            serde_json::Value::Array(v) => v,
            other => panic!("def list --json is not an array: {other}"),
        }
    }

    /// Add a DigitalOcean droplet definition from the CLI.
    pub fn add_droplet(&self, name: &str, droplet: u64) {
        let target = format!("droplet:{droplet}");
        self.ok(&[
            "def",
            "add",
            name,
            "--provider",
            "do",
            "--target",
            &target,
            "--schedule",
            "30 5 * * *",
            "--retention",
            "7",
        ]);
    }
}

/// Create or replace a file with `mode`.
pub fn write_file(path: &Path, text: &str, mode: u32) {
    let mut f = std::fs::File::create(path).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
