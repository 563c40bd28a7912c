//! The configuration file end to end: reconciling `[[definitions]]` with
//! `config apply`, layering (file < environment < flags), refused
//! configurations, secrets, and the shipped examples.

use std::path::Path;

use serde_json::Value;

use crate::support::process::{assert_no_panic, bin, outcome};
use crate::support::{TestEnv, BASE_CONFIG};

fn def_toml(name: &str, target: &str, schedule: &str, retention: u32) -> String {
    format!(
        "[[definitions]]\nname = \"{name}\"\nprovider = \"do\"\ntarget = \"{target}\"\nschedule = \"{schedule}\"\nretention = {retention}\n"
    )
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| {
            format!(
                "{}@{}",
                d["name"].as_str().unwrap_or("?"),
                d["target"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn identity_names(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing from {report}"))
        .iter()
        .map(|i| {
            format!(
                "{}@{}",
                i["name"].as_str().unwrap_or("?"),
                i["target"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

// ---------------------------------------------------------------- apply

#[test]
fn config_apply_inserts_updates_and_deletes_file_definitions() {
    let a = def_toml("daily", "droplet:1", "30 5 * * *", 30);
    let b = def_toml("weekly", "droplet:2", "0 4 * * 0", 4);
    let env = TestEnv::base_with(&format!("{a}\n{b}"));
    // A CLI definition must survive every reconcile.
    env.add_droplet("manual", 9);

    let r = env.json(&["config", "apply"]);
    assert_eq!(
        identity_names(&r, "added"),
        ["daily@droplet:1", "weekly@droplet:2"]
    );
    assert!(identity_names(&r, "updated").is_empty());
    assert!(identity_names(&r, "removed").is_empty());
    let list = env.list();
    assert_eq!(
        names(&list),
        ["daily@droplet:1", "manual@droplet:9", "weekly@droplet:2"]
    );
    for d in &list {
        let expect = if d["name"] == "manual" {
            "cli"
        } else {
            "config"
        };
        assert_eq!(d["source"], expect, "{d}");
    }
    let daily_id = list[0]["id"].clone();

    // Applying the same file again changes nothing.
    let r = env.json(&["config", "apply"]);
    assert_eq!(r["unchanged"], 2, "{r}");
    assert!(identity_names(&r, "added").is_empty() && identity_names(&r, "updated").is_empty());

    // Change one, remove one, add one.
    let a2 = def_toml("daily", "droplet:1", "0 3 * * *", 10);
    let c = def_toml("monthly", "droplet:3", "0 2 1 * *", 6);
    env.write_config(&format!("{BASE_CONFIG}\n{a2}\n{c}"));
    let r = env.json(&["config", "apply"]);
    assert_eq!(identity_names(&r, "added"), ["monthly@droplet:3"]);
    assert_eq!(identity_names(&r, "updated"), ["daily@droplet:1"]);
    assert_eq!(identity_names(&r, "removed"), ["weekly@droplet:2"]);
    let list = env.list();
    assert_eq!(
        names(&list),
        ["daily@droplet:1", "manual@droplet:9", "monthly@droplet:3"]
    );
    assert_eq!(list[0]["id"], daily_id, "an update keeps the row");
    assert_eq!(list[0]["schedule"], "0 3 * * *");
    assert_eq!(list[0]["retention"], 10);

    // The human report names what changed.
    env.write_config(BASE_CONFIG);
    let out = env.ok(&["config", "apply"]);
    assert!(out.contains("removed 2"), "{out}");
    assert!(
        out.contains("removed 'daily' (do droplet:1 disk 1)"),
        "{out}"
    );
    assert_eq!(names(&env.list()), ["manual@droplet:9"]);
}

#[test]
fn config_apply_with_an_invalid_definition_changes_nothing() {
    let env = TestEnv::base_with(&def_toml("daily", "droplet:1", "30 5 * * *", 30));
    env.ok(&["config", "apply"]);
    let before = env.list();
    let good = def_toml("daily", "droplet:1", "0 1 * * *", 30);
    let bad = def_toml("broken", "droplet:abc", "30 5 * * *", 30);
    env.write_config(&format!("{BASE_CONFIG}\n{good}\n{bad}"));
    let err = env.usage_error(&["config", "apply"]);
    assert!(err.contains("definitions[1].target"), "{err}");
    env.write_config(&format!(
        "{BASE_CONFIG}\n{}",
        def_toml("daily", "droplet:1", "30 5 * * *", 30)
    ));
    let after = env.list();
    assert_eq!(after[0]["updated_at"], before[0]["updated_at"]);
    assert_eq!(after.len(), 1);
}

#[test]
fn config_file_problems_name_the_definition_key() {
    let bad = [
        ("name = \"bad name\"", "definitions[0].name"),
        ("disk_id = 0", "definitions[0].disk_id"),
        ("retention = -1", "definitions[0].retention"),
        ("retention = 65537", "definitions[0].retention"),
        ("timezone = \"Mars/Olympus\"", "definitions[0].timezone"),
        ("schedule = \"60 * * * *\"", "definitions[0].schedule"),
        ("provider = \"nope\"", "definitions[0].provider"),
        ("target = \"volume:not-a-uuid\"", "definitions[0].target"),
    ];
    for (line, key) in bad {
        let field = line.split(' ').next().unwrap_or("");
        let base: String = def_toml("daily", "droplet:1", "30 5 * * *", 30)
            .lines()
            .filter(|l| !l.starts_with(&format!("{field} ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let env = TestEnv::base_with(&format!("{base}{line}\n"));
        let err = env.usage_error(&["config", "check"]);
        assert!(err.contains(key), "{line}: {err}");
    }
}

#[test]
fn the_same_identity_twice_in_the_file_is_refused() {
    let a = def_toml("daily", "droplet:1", "30 5 * * *", 30);
    let env = TestEnv::base_with(&format!("{a}\n{a}"));
    let err = env.usage_error(&["config", "apply"]);
    assert!(
        err.contains("definitions[1]") && err.contains("declared twice"),
        "{err}"
    );
    assert!(
        !env.db().exists(),
        "a refused configuration must not create the store"
    );
}

#[test]
fn a_file_definition_takes_over_a_cli_definition_with_the_same_identity() {
    let env = TestEnv::base();
    env.add_droplet("daily", 1);
    env.write_config(&format!(
        "{BASE_CONFIG}\n{}",
        def_toml("daily", "droplet:1", "0 2 * * *", 3)
    ));
    let r = env.json(&["config", "apply"]);
    assert_eq!(identity_names(&r, "updated"), ["daily@droplet:1"]);
    let d = env.json(&["def", "show", "daily"]);
    assert_eq!(d["source"], "config");
    assert_eq!(d["schedule"], "0 2 * * *");
}

// ------------------------------------------------------------- layering

#[test]
fn environment_beats_the_file() {
    let env = TestEnv::base();
    let shown = env.json(&["config", "show"]);
    assert_eq!(shown["daemon"]["timezone"], "UTC");
    let (code, out, err) = env.run_env(
        &["config", "show", "--json"],
        &[("SNAPSCHED__DAEMON__TIMEZONE", "Europe/Bratislava")],
    );
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["daemon"]["timezone"], "Europe/Bratislava");
    // And it reaches definitions that name no zone.
    env.add_droplet("daily", 1);
    let (code, out, err) = env.run_env(
        &["def", "show", "daily", "--json"],
        &[("SNAPSCHED__DAEMON__TIMEZONE", "Europe/Bratislava")],
    );
    assert_eq!(code, 0, "{err}");
    let d: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(d["zone"], "Europe/Bratislava");
}

#[test]
fn database_flag_beats_environment_and_file() {
    let env = TestEnv::base();
    let from_env = env.path().join("env.db");
    let from_flag = env.path().join("flag.db");
    let envs = [("SNAPSCHED__DAEMON__DATABASE", from_env.to_str().unwrap())];

    let (code, out, err) = env.run_env(&["config", "show", "--json"], &envs);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["daemon"]["database"], from_env.to_str().unwrap());

    let (code, out, err) = env.run_env(
        &[
            "--database",
            from_flag.to_str().unwrap(),
            "config",
            "show",
            "--json",
        ],
        &envs,
    );
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["daemon"]["database"], from_flag.to_str().unwrap());

    // The flag decides where definitions really go.
    let (code, _, err) = env.run_env(
        &[
            "--database",
            from_flag.to_str().unwrap(),
            "def",
            "add",
            "daily",
            "--provider",
            "do",
            "--target",
            "droplet:1",
            "--schedule",
            "0 1 * * *",
            "--retention",
            "1",
        ],
        &envs,
    );
    assert_eq!(code, 0, "{err}");
    assert!(from_flag.exists());
    assert!(!from_env.exists());
    assert!(!env.db().exists());
}

#[test]
fn config_path_comes_from_snapsched_config_when_no_flag() {
    let env = TestEnv::base();
    let (code, out, err) = outcome(
        std::process::Command::new(bin())
            .env("SNAPSCHED_CONFIG", &env.config)
            .env("HOME", env.path())
            .args(["config", "check"])
            .env("SNAPSCHED_TEST_DO_TOKEN", "t")
            .env("SNAPSCHED_TEST_DC1_KEY", "k")
            .output()
            .expect("spawn"),
    );
    assert_eq!(code, 0, "{out}{err}");
}

// ----------------------------------------------------- refused configs

#[test]
fn unknown_key_in_the_file_is_refused() {
    let env = TestEnv::new(&BASE_CONFIG.replace(
        "timezone = \"UTC\"",
        "timezone = \"UTC\"\ntimezon = \"UTC\"",
    ));
    let err = env.usage_error(&["def", "list"]);
    assert!(err.contains("daemon.timezon"), "{err}");
    assert!(err.contains("unknown key"), "{err}");
    assert!(
        err.contains(&env.config.display().to_string()) || err.contains("config.toml"),
        "{err}"
    );
    assert!(
        !env.db().exists(),
        "a refused configuration must not create the store"
    );
}

#[test]
fn unknown_key_in_a_definition_is_refused_with_its_index() {
    let env = TestEnv::base_with(&format!(
        "{}\n{}colour = \"blue\"\n",
        def_toml("a", "droplet:1", "0 1 * * *", 1),
        def_toml("b", "droplet:2", "0 1 * * *", 1)
    ));
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("definitions[1].colour"), "{err}");
}

#[test]
fn unknown_key_from_the_environment_is_refused_naming_the_variable() {
    let env = TestEnv::base();
    env.add_droplet("daily", 1);
    let before = env.list();
    let err = env.usage_error_env(&["def", "list"], &[("SNAPSCHED__DAEMON__BOGUS", "1")]);
    assert!(err.contains("daemon.bogus"), "{err}");
    assert!(err.contains("SNAPSCHED__DAEMON__BOGUS"), "{err}");
    assert!(
        !err.contains("unknown key in"),
        "blames the file for an environment key: {err}"
    );
    let err = env.usage_error_env(
        &["def", "rm", "daily"],
        &[("SNAPSCHED__DAEMON__BOGUS", "1")],
    );
    assert!(err.contains("SNAPSCHED__DAEMON__BOGUS"), "{err}");
    assert_eq!(env.list(), before);
}

#[test]
fn missing_config_file_is_refused() {
    let env = TestEnv::base();
    let missing = env.path().join("nope.toml");
    let (code, _, err) = outcome(
        std::process::Command::new(bin())
            .arg("--config")
            .arg(&missing)
            .args(["def", "list"])
            .env_remove("SNAPSCHED_CONFIG")
            .output()
            .expect("spawn"),
    );
    assert_eq!(code, 2, "{err}");
    assert_no_panic(&err);
    assert!(
        err.contains("nope.toml") && err.contains("not found"),
        "{err}"
    );
    assert!(
        err.contains("config default"),
        "no hint how to create it: {err}"
    );
    assert!(!env.db().exists());
}

#[test]
fn a_directory_as_config_file_is_refused() {
    let mut env = TestEnv::base();
    env.config = env.path().to_owned();
    let err = env.usage_error(&["def", "list"]);
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn toml_syntax_error_is_refused() {
    let env = TestEnv::new("[daemon\ntimezone = ");
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn wrongly_typed_value_is_refused() {
    let env =
        TestEnv::new(&BASE_CONFIG.replace("timezone = \"UTC\"", "max_concurrent_runs = \"many\""));
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("max_concurrent_runs"), "{err}");
}

#[test]
fn config_check_reports_every_problem() {
    let env = TestEnv::new(
        &BASE_CONFIG
            .replace(
                "timezone = \"UTC\"",
                "timezone = \"Mars/Olympus\"\nshutdown_grace = \"soon\"",
            )
            .replace("kind = \"fake\"", "kind = \"fake\"\nbogus = 1"),
    );
    let err = env.usage_error(&["config", "check"]);
    for key in [
        "daemon.timezone",
        "daemon.shutdown_grace",
        "providers.fake.bogus",
    ] {
        assert!(err.contains(key), "{key} missing:\n{err}");
    }
}

// ---------------------------------------------------------------- secrets

fn secret_config(kind_line: &str, secret_line: &str) -> String {
    format!(
        "[daemon]\ndatabase = \"snapsched.db\"\n\n[providers.do]\n{kind_line}\n{secret_line}\napi_url = \"http://127.0.0.1:9\"\n"
    )
}

#[test]
fn config_check_accepts_a_private_readable_secret_file() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        "token_file = \"do.token\"",
    ));
    env.write("do.token", "dop_v1_abc\n", 0o600);
    let out = env.ok(&["config", "check"]);
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn missing_secret_file_is_refused() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        "token_file = \"do.token\"",
    ));
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("providers.do.token_file"), "{err}");
    assert!(err.contains("do.token"), "{err}");
}

#[test]
fn group_readable_secret_file_is_refused_with_the_chmod_fix() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        "token_file = \"do.token\"",
    ));
    let token = env.write("do.token", "dop_v1_SECRETVALUE\n", 0o640);
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("providers.do.token_file"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", token.display())),
        "{err}"
    );
    assert!(!err.contains("SECRETVALUE"), "the secret leaked: {err}");
}

#[test]
fn unreadable_secret_file_is_refused() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        "token_file = \"do.token\"",
    ));
    // A directory cannot be read as a file, even by root.
    std::fs::create_dir(env.path().join("do.token")).expect("mkdir");
    std::fs::set_permissions(
        env.path().join("do.token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("providers.do.token_file"), "{err}");
    assert!(err.contains("cannot read secret file"), "{err}");
}

#[test]
fn empty_secret_file_is_refused() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        "token_file = \"do.token\"",
    ));
    env.write("do.token", "\n", 0o600);
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn unset_secret_environment_variable_is_refused() {
    let env = TestEnv::base();
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("providers.do.token_env"), "{err}");
    assert!(err.contains("providers.dc1.api_key_env"), "{err}");
    assert!(err.contains("SNAPSCHED_TEST_DO_TOKEN"), "{err}");
    assert!(
        err.contains("SNAPSCHED_TEST_DC1_KEY"),
        "every problem is reported: {err}"
    );
}

const INLINE_SECRET: &str = "dop_v1_SECRETVALUE0123456789";

#[test]
fn config_show_never_prints_an_inline_secret() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        &format!("token = \"{INLINE_SECRET}\""),
    ));
    for args in [
        &["config", "show"][..],
        &["config", "show", "--json"],
        &["config", "check"],
    ] {
        let (code, out, err) = env.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            !out.contains(INLINE_SECRET) && !err.contains(INLINE_SECRET),
            "{args:?} printed the secret:\n{out}{err}"
        );
        assert!(
            !out.contains("SECRETVALUE"),
            "{args:?} printed part of the secret:\n{out}"
        );
    }
    let shown = env.ok(&["config", "show"]);
    assert!(shown.contains("[redacted]"), "{shown}");
}

#[test]
fn inline_secret_in_a_readable_file_is_refused_with_the_chmod_hint() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        &format!("token = \"{INLINE_SECRET}\""),
    ));
    std::fs::set_permissions(
        &env.config,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let err = env.usage_error(&["config", "show"]);
    assert!(err.contains("providers.do.token"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("SECRETVALUE"), "the secret leaked: {err}");
}

// ------------------------------------------------------ credential order

/// A systemd credentials directory holding `files` (name, contents, mode).
fn credentials_dir(env: &TestEnv, files: &[(&str, &str, u32)]) -> String {
    let dir = env.path().join("credentials");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, text, mode) in files {
        crate::support::write_file(&dir.join(name), text, *mode);
    }
    dir.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn a_systemd_credential_beats_an_unset_token_env_so_the_example_checks_ok() {
    // The shipped example names DIGITALOCEAN_TOKEN and ERIGONES_API_KEY,
    // which a service does not have; its credentials are used instead.
    let env = TestEnv::new(
        &crate::support::BASE_CONFIG.replace("[providers.fake]\nkind = \"fake\"\n", ""),
    );
    let creds = credentials_dir(&env, &[("do", "dop_v1_x\n", 0o400), ("dc1", "k\n", 0o400)]);
    let (code, out, err) = env.run_env(&["config", "check"], &[("CREDENTIALS_DIRECTORY", &creds)]);
    assert_eq!(code, 0, "{out}{err}");

    let example = TestEnv::new(snapsched::config::EXAMPLE);
    let creds = credentials_dir(
        &example,
        &[("do", "dop_v1_x\n", 0o400), ("dc1", "k\n", 0o400)],
    );
    let (code, out, err) =
        example.run_env(&["config", "check"], &[("CREDENTIALS_DIRECTORY", &creds)]);
    assert_eq!(code, 0, "the example fails under systemd: {out}{err}");
}

#[test]
fn a_token_file_beats_the_systemd_credential() {
    let env = TestEnv::new(&secret_config(
        "kind = \"digitalocean\"",
        "token_file = \"do.token\"",
    ));
    // The named file is broken; the (good) credential must not hide that.
    env.write("do.token", "dop_v1_x\n", 0o644);
    let creds = credentials_dir(&env, &[("do", "dop_v1_y\n", 0o400)]);
    let err = env.usage_error_env(&["config", "check"], &[("CREDENTIALS_DIRECTORY", &creds)]);
    assert!(err.contains("providers.do.token_file"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

// ------------------------------------------------------------ database URL

const PG_URL: &str = "postgres://snapsched@db.example.com/backups";

#[test]
fn config_show_prints_a_postgres_database_without_its_password() {
    let env = TestEnv::base();
    let envs = [
        ("SNAPSCHED__DAEMON__DATABASE", PG_URL),
        ("PGPASSWORD", "hunter2SECRET"),
    ];
    for args in [&["config", "show"][..], &["config", "show", "--json"]] {
        let (code, out, err) = env.run_env(args, &envs);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            out.contains("postgres://snapsched@db.example.com:5432/backups"),
            "{args:?}: {out}"
        );
        assert!(
            !out.contains("hunter2") && !err.contains("hunter2"),
            "{out}{err}"
        );
    }
}

#[test]
fn a_password_in_the_database_url_is_refused_naming_the_key_and_the_fix() {
    let env = TestEnv::base();
    let url = "postgresql://snapsched:hunter2SECRET@db.example.com/backups";
    for args in [
        &["--database", url, "config", "check"][..],
        &["--database", url, "def", "list"],
    ] {
        let err = env.usage_error(args);
        assert!(err.contains("daemon.database:"), "{err}");
        assert!(err.contains("holds a password"), "{err}");
        assert!(err.contains("database_password_file"), "{err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
    }
    assert!(!env.db().exists());
}

#[test]
fn the_database_password_comes_from_a_private_file_or_the_systemd_credential() {
    let env = TestEnv::new(&format!(
        "[daemon]\ndatabase = \"{PG_URL}\"\ndatabase_password_file = \"db.password\"\n"
    ));
    env.write("db.password", "hunter2SECRET\n", 0o640);
    let err = env.usage_error(&["config", "check"]);
    assert!(err.contains("daemon.database_password_file"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    env.write("db.password", "hunter2SECRET\n", 0o600);
    env.ok(&["config", "check"]);

    // No file configured: the systemd credential `database`, when present.
    env.write_config(&format!("[daemon]\ndatabase = \"{PG_URL}\"\n"));
    env.ok(&["config", "check"]);
    let creds = credentials_dir(&env, &[("database", "hunter2SECRET\n", 0o644)]);
    let err = env.usage_error_env(&["config", "check"], &[("CREDENTIALS_DIRECTORY", &creds)]);
    assert!(err.contains("daemon.database"), "{err}");
    assert!(err.contains("credentials/database"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    credentials_dir(&env, &[("database", "hunter2SECRET\n", 0o400)]);
    let (code, out, err) = env.run_env(&["config", "check"], &[("CREDENTIALS_DIRECTORY", &creds)]);
    assert_eq!(code, 0, "{out}{err}");
}

// --------------------------------------------------------------- examples

/// Every file under `config/` is a valid configuration as shipped.
#[test]
fn every_shipped_config_file_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let cfg = snapsched::config::load(&path, &snapsched::config::Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !cfg.providers.is_empty(),
            "{}: no providers",
            path.display()
        );
        seen += 1;
    }
    assert!(seen > 0, "no .toml files under {}", dir.display());
}

#[test]
fn config_default_prints_the_example_and_it_applies() {
    let env = TestEnv::base();
    let example = env.ok(&["config", "default"]);
    assert_eq!(example, snapsched::config::EXAMPLE);
    // Its definitions reconcile into a store as written.
    env.write_config(&format!("{example}\n"));
    let db = env.path().join("example.db");
    let out = env.ok(&["--database", db.to_str().unwrap(), "config", "apply"]);
    assert!(out.contains("added 2"), "{out}");
}

/// The README's hand install, followed literally: its `sed` turns the
/// shipped example's environment variables into secret files, and with
/// those files in place `config check` passes outside systemd.
#[test]
fn the_readmes_install_steps_give_a_passing_config_check() {
    let readme = include_str!("../../README.md");
    let block = &readme[readme.find("Install by hand").expect("install section")..];
    let block = &block[block.find("```sh\n").expect("code block") + 6..];
    let block = &block[..block.find("```").expect("block end")];
    let sed = block
        .replace("\\\n", " ")
        .lines()
        .find(|l| l.trim_start().starts_with("sed -i"))
        .expect("the README's sed line")
        .to_owned();

    let env = TestEnv::new(snapsched::config::EXAMPLE);
    let dir = env.path().display().to_string();
    let sed = sed
        .replace(
            "/etc/snapsched/config.toml",
            &env.config.display().to_string(),
        )
        .replace("/etc/snapsched/", &format!("{dir}/"));
    let out = std::process::Command::new("bash")
        .args(["-c", &sed])
        .output()
        .expect("bash");
    assert!(out.status.success(), "{sed}: {out:?}");
    // Before the secret files exist, check names the missing file.
    let (code, _, err) = env.run(&["config", "check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("do.token"), "{err}");
    env.write("do.token", "dop_v1_x\n", 0o600);
    env.write("dc1.key", "k\n", 0o600);
    let (code, out, err) = env.run(&["config", "check"]);
    assert_eq!(
        code, 0,
        "the README's install fails config check: {out}{err}"
    );
}

/// Every problem the file has is located (file:line:column, dotted key) and
/// a misspelt key gets the key it most likely meant.
#[test]
fn config_errors_name_file_line_column_and_the_nearest_key() {
    let env = TestEnv::new(
        "[daemon]\ndatabse = \"x.db\"\n\n[[definitions]]\nprovider = \"fake\"\ntarget = \"vm1\"\nname = \"a\"\nschedule = \"0 3 * * *\"\n  retention = \"seven\"\n",
    );
    let err = env.usage_error(&["config", "check"]);
    let file = env.config.display().to_string();
    assert!(
        err.contains(&format!("{file}:2:1: daemon.databse: unknown key"))
            && err.contains("did you mean `database`?"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:9:3: definitions[0].retention: invalid type"
        )),
        "{err}"
    );
}

/// `config show` prints a configuration that `config check` accepts and
/// that shows again the same: it round-trips, with every setting written
/// out (the poll settings included) and no internal key.
#[test]
fn config_show_round_trips_through_config_check() {
    let env = TestEnv::new(snapsched::config::EXAMPLE);
    let creds = [
        ("DIGITALOCEAN_TOKEN", "dop_v1_x"),
        ("ERIGONES_API_KEY", "k"),
    ];
    let (code, shown, err) = env.run_env(&["config", "show"], &creds);
    assert_eq!(code, 0, "{err}");
    for key in [
        "poll_interval",
        "poll_max_interval",
        "action_timeout",
        "token_env",
        "api_key_env",
    ] {
        assert!(
            shown.contains(&format!("\n{key} = ")),
            "{key} missing:\n{shown}"
        );
    }
    for internal in ["\nname = \"do\"", "credential"] {
        assert!(!shown.contains(internal), "{internal:?} shown:\n{shown}");
    }
    let again = TestEnv::new(&shown);
    let (code, out, err) = again.run_env(&["config", "check"], &creds);
    assert_eq!(
        code, 0,
        "config show's output fails config check:\n{out}{err}\n{shown}"
    );
    let (code, reshown, err) = again.run_env(&["config", "show"], &creds);
    assert_eq!(code, 0, "{err}");
    // The database path is the only line that names where the file is.
    let strip = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with("database = "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&reshown),
        strip(&shown),
        "config show does not round-trip"
    );
}
