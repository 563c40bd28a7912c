//! Hostile and absurd input at the edges: durations out of range, files
//! that are not config files, huge values echoed back, read commands on a
//! store that is missing, foreign, locked or read-only, and messages that
//! must blame the right thing. Every case runs the real binary and wants a
//! clear message and a non-zero exit, never a panic.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::process::{assert_no_panic, bin, outcome};
use crate::support::{TestEnv, BASE_CONFIG};

/// A definition on the fake provider, with `extra` lines.
fn fake_def(extra: &str) -> String {
    format!(
        "[[definitions]]\nname = \"d\"\nprovider = \"fake\"\ntarget = \"web01\"\nschedule = \"0 5 * * *\"\nretention = 3\n{extra}\n"
    )
}

// ---------------------------------------------------------------- durations

#[test]
fn absurd_and_harmful_durations_are_refused_naming_key_value_and_range() {
    let cases = [
        (
            "[daemon]",
            "run_timeout = \"1000000y\"",
            "daemon.run_timeout",
        ),
        (
            "[daemon]",
            "shutdown_grace = \"100000000000y\"",
            "daemon.shutdown_grace",
        ),
        (
            "[daemon]",
            "catch_up_deadline = \"1000000y\"",
            "daemon.catch_up_deadline",
        ),
        ("[daemon]", "lease_ttl = \"1000000y\"", "daemon.lease_ttl"),
        (
            "[providers.do]",
            "action_timeout = \"1000000y\"",
            "providers.do.action_timeout",
        ),
        (
            "[providers.do]",
            "poll_interval = \"100000000000y\"",
            "providers.do.poll_interval",
        ),
        (
            "[providers.do]",
            "poll_interval = \"0s\"",
            "providers.do.poll_interval",
        ),
        (
            "[providers.do]",
            "poll_max_interval = \"0s\"",
            "providers.do.poll_max_interval",
        ),
        (
            "[providers.do]",
            "request_timeout = \"0s\"",
            "providers.do.request_timeout",
        ),
        (
            "[providers.do]",
            "connect_timeout = \"0s\"",
            "providers.do.connect_timeout",
        ),
    ];
    for (section, line, key) in cases {
        let env = TestEnv::new(&BASE_CONFIG.replacen(section, &format!("{section}\n{line}"), 1));
        let err = env.usage_error(&["def", "list"]);
        let value = line.split('"').nth(1).unwrap_or("?");
        assert!(
            err.contains(key) && err.contains(&format!("'{value}'")) && err.contains(" to "),
            "{line}: no key, value or range in:\n{err}"
        );
    }
}

#[test]
fn a_zero_or_absurd_max_age_is_refused_with_the_reason() {
    let env = TestEnv::base_with(&fake_def("max_age = \"0s\""));
    let err = env.usage_error(&["config", "apply"]);
    assert!(
        err.contains("definitions[0].max_age") && err.contains("'0s'"),
        "{err}"
    );
    assert!(err.contains("every snapshot but the newest"), "{err}");
    let env = TestEnv::base_with(&fake_def(
        "max_age = \"1000000y\"\nkeep_within = \"1000000y\"\ncatch_up_deadline = \"1000000y\"",
    ));
    let err = env.usage_error(&["config", "apply"]);
    for key in ["max_age", "keep_within", "catch_up_deadline"] {
        assert!(
            err.contains(&format!("definitions[0].{key}: '1000000y' is out of range")),
            "{key}:\n{err}"
        );
    }
    // The CLI's way in is bounded the same.
    let env = TestEnv::base();
    env.ok(&[
        "def",
        "add",
        "d",
        "--provider",
        "fake",
        "--target",
        "web01",
        "--schedule",
        "0 5 * * *",
        "--retention",
        "3",
    ]);
    let err = env.usage_error(&["def", "set", "d", "max_age=0s"]);
    assert!(err.contains("max_age") && err.contains("'0s'"), "{err}");
    let err = env.usage_error(&["def", "set", "d", "catch_up_deadline=1000000y"]);
    assert!(err.contains("out of range"), "{err}");
}

// ---------------------------------------------------------------- log level

#[test]
fn an_unknown_log_level_is_refused_by_config_check_and_by_the_daemon() {
    let env = TestEnv::new(&BASE_CONFIG.replacen("[daemon]", "[daemon]\nlog_level = \"degub\"", 1));
    for args in [&["config", "check"][..], &["daemon"][..]] {
        let err = env.usage_error(args);
        assert!(
            err.contains("daemon.log_level") && err.contains("'degub'"),
            "{args:?}:\n{err}"
        );
    }
    // The flag is checked the same way; a filter with a valid level passes.
    let env = TestEnv::base();
    let err = env.usage_error(&["--log-level", "snapsched=loud", "def", "list"]);
    assert!(err.contains("daemon.log_level"), "{err}");
    env.ok(&["--log-level", "warn,snapsched=debug", "config", "show"]);
}

// ---------------------------------------------------------------- secrets

#[test]
fn a_token_file_with_a_line_break_inside_is_refused_naming_the_file_and_the_fix() {
    let env = TestEnv::base();
    let token = env.write("do.token", "dop_v1_SECRET\nsecond line\n", 0o600);
    let config = BASE_CONFIG.replace(
        "token_env = \"SNAPSCHED_TEST_DO_TOKEN\"",
        &format!("token_file = \"{}\"", token.display()),
    );
    env.write_config(&config);
    let (code, out, err) = env.run_env(&["config", "check"], &[("SNAPSCHED_TEST_DC1_KEY", "k")]);
    assert_ne!(code, 0, "{out}{err}");
    assert_no_panic(&err);
    assert!(
        err.contains("providers.do.token_file")
            && err.contains(&token.display().to_string())
            && err.contains("line break")
            && err.contains("printf"),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");
    // One trailing newline is fine.
    env.write("do.token", "dop_v1_SECRET\n", 0o600);
    let (code, out, err) = env.run_env(&["config", "check"], &[("SNAPSCHED_TEST_DC1_KEY", "k")]);
    assert_eq!(code, 0, "{out}{err}");
}

// ---------------------------------------------------------------- input size

#[test]
fn a_config_path_that_is_not_a_regular_file_is_refused_saying_what_it_is() {
    let env = TestEnv::base();
    let with_config = |path: &std::path::Path| {
        let (code, out, err) = outcome(
            Command::new(bin())
                .arg("--config")
                .arg(path)
                .args(["def", "list"])
                .env_remove("SNAPSCHED_CONFIG")
                .output()
                .expect("spawn"),
        );
        assert_eq!(code, 2, "{}: {out}{err}", path.display());
        assert_no_panic(&err);
        err
    };
    let started = Instant::now();
    let err = with_config(std::path::Path::new("/dev/zero"));
    assert!(
        err.contains("a character device, not a regular file"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "/dev/zero was read"
    );
    let err = with_config(std::path::Path::new("/dev/null"));
    assert!(
        err.contains("a character device") && !err.contains("not found"),
        "{err}"
    );
    let fifo = env.path().join("fifo.toml");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let err = with_config(&fifo);
    assert!(err.contains("a FIFO"), "{err}");
    let big = env.path().join("big.toml");
    std::fs::write(&big, format!("{BASE_CONFIG}\n#{}\n", "x".repeat(2 << 20))).expect("write");
    let err = with_config(&big);
    assert!(err.contains("at most 1048576 bytes"), "{err}");
    // A symbolic link that loops, and one to nothing, are not "not found".
    let a = env.path().join("a.toml");
    let b = env.path().join("b.toml");
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    let err = with_config(&a);
    assert!(err.contains("loops") && !err.contains("not found"), "{err}");
    let dangling = env.path().join("dangling.toml");
    std::os::unix::fs::symlink(env.path().join("gone.toml"), &dangling).expect("symlink");
    let err = with_config(&dangling);
    assert!(
        err.contains("symbolic link to") && err.contains("gone.toml"),
        "{err}"
    );
}

#[test]
fn schedule_next_count_is_capped() {
    let env = TestEnv::base();
    let err = env.usage_error(&["schedule", "next", "* * * * *", "--count", "1000000000"]);
    assert!(
        err.contains("--count 1000000000") && err.contains("10000"),
        "{err}"
    );
    let out = env.ok(&[
        "schedule",
        "next",
        "* * * * *",
        "--count",
        "10000",
        "--after",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(out.lines().count(), 10_000);
}

#[test]
fn a_huge_value_is_not_echoed_whole() {
    let env = TestEnv::base();
    let huge = format!("{} * * * *", "1,".repeat(50_000));
    let err = env.usage_error(&["schedule", "next", &huge]);
    assert!(err.len() < 8192, "{} bytes of error", err.len());
    assert!(
        err.contains("characters in all"),
        "{}",
        &err[..err.len().min(500)]
    );
    let err = env.usage_error(&[
        "def",
        "add",
        "d",
        "--provider",
        "fake",
        "--target",
        "web01",
        "--schedule",
        &huge,
        "--retention",
        "3",
    ]);
    assert!(err.len() < 8192, "{} bytes of error", err.len());
    let huge_name = "n".repeat(100_000);
    let huge_target = format!("{}!", "w".repeat(100_000));
    let err = env.usage_error(&[
        "def",
        "add",
        &huge_name,
        "--provider",
        "fake",
        "--target",
        &huge_target,
        "--schedule",
        "0 5 * * *",
        "--tz",
        &huge_name,
        "--retention",
        "3",
    ]);
    assert!(err.len() < 4096, "{} bytes of error", err.len());
    assert!(err.contains("characters in all"), "{err}");
}

// ---------------------------------------------------------------- the store

/// A SQLite store of its own for the store tests, whatever the suite's
/// backend: `--database` points at it.
fn sqlite_flag(env: &TestEnv) -> (std::path::PathBuf, String) {
    let path = env.path().join("own.db");
    let flag = path.display().to_string();
    (path, flag)
}

#[test]
fn read_commands_never_create_a_store_and_say_where_they_looked() {
    let env = TestEnv::base();
    let missing = env.path().join("nonexistent/dir/x.db");
    let at = missing.display().to_string();
    let reads: [&[&str]; 7] = [
        &["def", "list"],
        &["def", "show", "d"],
        &["status"],
        &["history"],
        &["snapshots"],
        &["nodes"],
        &[
            "retention",
            "simulate",
            "d",
            "--from",
            "2026-01-01T00:00:00Z",
            "--for",
            "1d",
        ],
    ];
    for args in reads {
        let (code, out, err) = env.run_env(args, &[("SNAPSCHED__DAEMON__DATABASE", &at)]);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert_no_panic(&err);
        assert!(
            err.contains(&format!("no snapsched store at {at}"))
                && err.contains("the daemon creates it"),
            "{args:?}: {err}"
        );
    }
    let (code, out, _) = env.run_env(&["check"], &[("SNAPSCHED__DAEMON__DATABASE", &at)]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no snapsched store at"), "{out}");
    assert!(
        !env.path().join("nonexistent").exists(),
        "a read command created the directory"
    );
}

#[test]
fn a_database_of_the_wrong_type_is_refused() {
    let env = TestEnv::new(&BASE_CONFIG.replace("database = \"snapsched.db\"", "database = 42"));
    let err = env.usage_error(&["config", "check"]);
    assert!(
        err.contains("daemon.database") && err.contains("42"),
        "{err}"
    );
    assert!(!env.path().join("42").exists());
}

#[test]
fn a_foreign_sqlite_file_is_refused_and_left_byte_identical() {
    let env = TestEnv::base();
    let (path, flag) = sqlite_flag(&env);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("create foreign file");
        sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total TEXT)")
            .execute(&mut conn)
            .await
            .expect("create table");
        sqlx::query("INSERT INTO invoices (total) VALUES ('12.50')")
            .execute(&mut conn)
            .await
            .expect("insert");
        sqlx::Connection::close(conn).await.ok();
    });
    let before = std::fs::read(&path).expect("read foreign file");
    for args in [
        &["--database", &flag, "def", "list"][..],
        &["--database", &flag, "config", "apply"][..],
    ] {
        let err = env.usage_error(args);
        assert!(
            err.contains("is not a snapsched database"),
            "{args:?}: {err}"
        );
        let after = std::fs::read(&path).expect("read foreign file");
        assert!(
            before == after,
            "{args:?} changed the foreign file (header bytes 18-19: {:?} -> {:?})",
            &before[18..20],
            &after[18..20]
        );
    }
    assert!(!env.path().join("own.db-wal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_do_not_wait_for_a_writer_lock() {
    let env = TestEnv::base();
    let (path, flag) = sqlite_flag(&env);
    env.ok(&["--database", &flag, "config", "apply"]);
    env.ok(&[
        "--database",
        &flag,
        "def",
        "add",
        "d",
        "--provider",
        "fake",
        "--target",
        "web01",
        "--schedule",
        "0 5 * * *",
        "--retention",
        "3",
    ]);
    let store = snapsched::store::Store::open(&path).await.expect("open");
    let pool = store.sqlite_pool().expect("sqlite").clone();
    let mut holder = pool.acquire().await.expect("connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *holder)
        .await
        .expect("lock");
    sqlx::query("UPDATE definitions SET active = active")
        .execute(&mut *holder)
        .await
        .expect("write under the lock");
    let started = Instant::now();
    let (code, out, err) = env.run(&["--database", &flag, "def", "list", "--json"]);
    let took = started.elapsed();
    sqlx::query("ROLLBACK")
        .execute(&mut *holder)
        .await
        .expect("unlock");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"d\""), "{out}");
    assert!(
        took < Duration::from_secs(15),
        "def list waited {took:?} for the writer"
    );
}

#[test]
fn read_commands_work_on_a_read_only_mount() {
    let env = TestEnv::base();
    let (_, flag) = sqlite_flag(&env);
    env.ok(&[
        "--database",
        &flag,
        "def",
        "add",
        "d",
        "--provider",
        "fake",
        "--target",
        "web01",
        "--schedule",
        "0 5 * * *",
        "--retention",
        "3",
    ]);
    let dir = env.path().display().to_string();
    let reads = format!(
        "{bin} --config {cfg} --database {flag} def list --json && {bin} --config {cfg} --database {flag} status && {bin} --config {cfg} --database {flag} nodes && {bin} --config {cfg} --database {flag} history",
        bin = bin().display(),
        cfg = env.config.display(),
    );
    let script = format!("mount --bind {dir} {dir} && mount -o remount,bind,ro {dir} || exit 99; touch {dir}/probe 2>/dev/null && exit 98; {reads}");
    let (code, out, err) = outcome(
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .env("HOME", env.path())
            .env_remove("SNAPSCHED_CONFIG")
            .env_remove("SNAPSCHED__DAEMON__DATABASE")
            .output()
            .expect("spawn unshare"),
    );
    if code == 99 || (code != 0 && err.contains("unshare")) {
        eprintln!("skipped: cannot make a read-only mount here ({err})");
        return;
    }
    assert_ne!(code, 98, "the mount is not read-only");
    assert_eq!(
        code, 0,
        "read commands failed on a read-only mount:\n{out}\n{err}"
    );
    assert!(out.contains("\"d\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_refuse_an_older_schema_instead_of_migrating_it() {
    let env = TestEnv::base();
    let (path, flag) = sqlite_flag(&env);
    env.ok(&["--database", &flag, "config", "apply"]);
    let store = snapsched::store::Store::open(&path).await.expect("open");
    let pool = store.sqlite_pool().expect("sqlite").clone();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .expect("pretend an older build");
    store.close().await;
    let (code, out, err) = env.run(&["--database", &flag, "def", "list"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("older schema") && err.contains("read commands do not migrate"),
        "{err}"
    );
}

// ---------------------------------------------------------------- redaction

#[test]
fn config_show_redacts_credentials_in_an_api_url() {
    let env = TestEnv::new(&BASE_CONFIG.replace(
        "http://127.0.0.1:9/api",
        "http://admin:URLSECRET@127.0.0.1:9/api",
    ));
    let out = env.ok(&["config", "show"]);
    assert!(!out.contains("URLSECRET"), "{out}");
    assert!(
        out.contains("http://admin:[redacted]@127.0.0.1:9/api"),
        "{out}"
    );
    // The import's error (the client quotes the URL) is redacted as well.
    let (code, out, err) = env.run_env(
        &["import", "erigones", "--provider", "dc1"],
        &[("SNAPSCHED_TEST_DC1_KEY", "k")],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        !err.contains("URLSECRET") && !out.contains("URLSECRET"),
        "{err}"
    );
}

// ---------------------------------------------------------------- blame

#[test]
fn an_unknown_section_from_the_environment_is_blamed_on_its_variable() {
    let env = TestEnv::base();
    let err = env.usage_error_env(&["def", "list"], &[("SNAPSCHED__NOSECTION__X", "1")]);
    assert!(err.contains("SNAPSCHED__NOSECTION__X"), "{err}");
    assert!(!err.contains("unknown key in"), "blamed on the file: {err}");
}

#[test]
fn an_empty_token_file_variable_is_called_empty_not_a_mode_problem() {
    let env = TestEnv::base();
    let err = env.usage_error_env(
        &["config", "check"],
        &[("SNAPSCHED__PROVIDERS__DO__TOKEN_FILE", "")],
    );
    assert!(
        err.contains("providers.do.token_file: is empty")
            && err.contains("SNAPSCHED__PROVIDERS__DO__TOKEN_FILE"),
        "{err}"
    );
    assert!(!err.contains("mode") && !err.contains("chmod"), "{err}");
}
