use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::store::Location;

/// Write `text` as a private config file in a fresh directory and load it.
fn load_text(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let result = load(&path, &Overrides::default());
    (dir, result)
}

fn problems(text: &str) -> Vec<Problem> {
    match load_text(text).1 {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems,
    }
}

fn problem_at(text: &str, key: &str) -> Problem {
    let all = problems(text);
    all.iter()
        .find(|p| p.key == key)
        .cloned()
        .unwrap_or_else(|| panic!("no problem at {key}: {all:#?}"))
}

#[test]
fn unknown_key_in_the_file_names_the_file() {
    let p = problem_at(
        "[daemon]\nbogus_key_in_file = 1\n",
        "daemon.bogus_key_in_file",
    );
    assert!(p.message.contains("unknown key in"), "{p}");
    assert!(p.message.contains("c.toml"), "{p}");
}

#[test]
fn a_wrongly_typed_value_is_a_problem_at_its_dotted_key() {
    let p = problem_at(
        "[daemon]\nmax_concurrent_runs = \"many\"\n",
        "daemon.max_concurrent_runs",
    );
    assert!(p.message.contains("\"many\""), "{p}");
    let text = "[providers.lab]\nkind = \"digitalocean\"\ntoken_env = \"X\"\n\
        [[definitions]]\nname = \"a\"\nprovider = \"lab\"\ntarget = \"droplet:1\"\n\
        schedule = \"@daily\"\nretention = \"seven\"\n";
    let p = problem_at(text, "definitions[0].retention");
    assert!(p.message.contains("\"seven\""), "{p}");
}

#[test]
fn every_section_reports_its_problems_in_one_go() {
    let text = "[daemon]\ntimezone = \"Mars/Olympus\"\nmax_concurrent_runs = \"many\"\n\
        [metrics]\nlisten = \"nowhere\"\n\
        [providers.do]\nkind = \"digitalocean\"\ntoken_env = \"X\"\npoll_interval = \"soon\"\n\
        [[definitions]]\nprovider = \"do\"\ntarget = \"droplet:1\"\nschedule = \"@daily\"\nretention = 1\n";
    let keys: Vec<String> = problems(text).into_iter().map(|p| p.key).collect();
    for key in [
        "daemon.max_concurrent_runs",
        "metrics.listen",
        "providers.do.poll_interval",
        "definitions[0].name",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}

#[test]
fn a_definition_without_name_provider_or_target_names_each_field() {
    let all = problems("[[definitions]]\nschedule = \"@daily\"\nretention = 1\n");
    let p = all.iter().find(|p| p.key == "definitions[0].provider");
    assert!(
        p.is_some_and(|p| p.message.contains("is required")),
        "{all:#?}"
    );
    let text = "[providers.do]\nkind = \"digitalocean\"\ntoken_env = \"X\"\n\
        [[definitions]]\nprovider = \"do\"\nschedule = \"@daily\"\nretention = 1\n";
    let keys: Vec<String> = problems(text).into_iter().map(|p| p.key).collect();
    assert!(keys.contains(&"definitions[0].name".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"definitions[0].target".to_owned()),
        "{keys:?}"
    );
}

#[test]
fn a_secret_key_of_another_kind_is_refused_with_the_right_family() {
    let p = problem_at(
        "[providers.do]\nkind = \"digitalocean\"\napi_key_env = \"X\"\ntoken_env = \"Y\"\n",
        "providers.do.api_key_env",
    );
    assert!(
        p.message.contains("use token, token_file or token_env"),
        "{p}"
    );
    let p = problem_at(
        "[providers.dc1]\nkind = \"erigones\"\napi_url = \"https://e/api\"\ntoken_env = \"X\"\napi_key_env = \"Y\"\n",
        "providers.dc1.token_env",
    );
    assert!(
        p.message
            .contains("use api_key, api_key_file or api_key_env"),
        "{p}"
    );
}

#[test]
fn an_unknown_kind_lists_the_kinds_of_this_build() {
    let p = problem_at("[providers.x]\nkind = \"aws\"\n", "providers.x.kind");
    assert!(p.message.contains("\"digitalocean\""), "{p}");
    assert!(p.message.contains("\"erigones\""), "{p}");
}

#[cfg(feature = "fake-provider")]
#[test]
fn the_fake_kind_takes_its_own_settings_and_no_secret() {
    let (_dir, cfg) =
        load_text("[providers.lab]\nkind = \"fake\"\nlatency = \"5ms\"\npoll_interval = \"1s\"\n");
    let cfg = cfg.unwrap();
    let lab = &cfg.providers["lab"];
    assert_eq!(lab.kind, crate::domain::ProviderKind::Fake);
    assert_eq!(lab.credential, None);
    assert_eq!(
        lab.settings.get("latency"),
        std::time::Duration::from_millis(5)
    );
    assert_eq!(
        lab.settings.get("operation_time"),
        std::time::Duration::ZERO
    );

    let p = problem_at(
        "[providers.lab]\nkind = \"fake\"\noperation_time = \"later\"\n",
        "providers.lab.operation_time",
    );
    assert!(p.message.contains("'later'"), "{p}");
    let p = problem_at(
        "[providers.lab]\nkind = \"fake\"\ntoken_env = \"X\"\n",
        "providers.lab.token_env",
    );
    assert!(p.message.contains("takes no secret"), "{p}");
    problem_at(
        "[providers.lab]\nkind = \"fake\"\nbogus = 1\n",
        "providers.lab.bogus",
    );
}

#[test]
fn a_kind_setting_of_another_kind_is_an_unknown_key() {
    let p = problem_at(
        "[providers.do]\nkind = \"digitalocean\"\ntoken_env = \"X\"\nlatency = \"1s\"\n",
        "providers.do.latency",
    );
    assert!(p.message.contains("unknown key"), "{p}");
}

#[cfg(not(feature = "fake-provider"))]
#[test]
fn without_its_feature_the_fake_kind_is_unknown() {
    let p = problem_at("[providers.lab]\nkind = \"fake\"\n", "providers.lab.kind");
    assert!(p.message.contains("is not a provider kind"), "{p}");
}

#[test]
fn a_postgres_url_is_a_postgres_location_shown_without_a_password() {
    let (dir, cfg) = load_text(
        "[daemon]\ndatabase = \"postgresql://snapsched@db.example.com/backups?sslmode=disable\"\n\
         database_password_file = \"db.password\"\n",
    );
    let cfg = cfg.unwrap();
    assert!(matches!(cfg.daemon.database, Location::Postgres(_)));
    assert_eq!(
        cfg.daemon.database_password,
        Some(Credential::File(
            std::fs::canonicalize(dir.path())
                .unwrap()
                .join("db.password")
        ))
    );
    let shown = toml::to_string_pretty(&cfg).unwrap();
    assert!(
        shown.contains("database = \"postgres://snapsched@db.example.com:5432/backups\""),
        "{shown}"
    );
    assert!(shown.contains("database_password_file = "), "{shown}");
}

#[test]
fn a_password_in_the_database_url_is_refused_also_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "").unwrap();
    let overrides = Overrides {
        database: Some("postgres://snapsched:hunter2@db/backups".into()),
        ..Overrides::default()
    };
    let err = load(&path, &overrides).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("daemon.database: "), "{text}");
    assert!(text.contains("holds a password"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn config_check_reads_the_database_password_file() {
    let text = "[daemon]\ndatabase = \"postgres://snapsched@db/backups\"\n\
                database_password_file = \"db.password\"\n";
    let (dir, cfg) = load_text(text);
    cfg.unwrap();
    let path = dir.path().join("c.toml");
    let err = check(&path, &Overrides::default()).unwrap_err();
    assert_eq!(err.problems[0].key, "daemon.database_password_file");
    assert!(err.problems[0].message.contains("db.password"), "{err}");

    let pw = dir.path().join("db.password");
    std::fs::write(&pw, "hunter2\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = check(&path, &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    check(&path, &Overrides::default()).unwrap();
}

#[test]
fn hook_problems_name_key_value_and_fix_at_every_level() {
    let text = "[daemon]\npre_hook = []\non_pre_hook_failure = \"ignore\"\n\
        [providers.lab]\nkind = \"fake\"\npost_hook = [\"thaw\", \"--now\"]\n\
        [[definitions]]\nname = \"a\"\nprovider = \"lab\"\ntarget = \"web01\"\n\
        schedule = \"@daily\"\nretention = 1\nhook_timeout = \"3h\"\non_failure = [\"./page\"]\n";
    let p = problem_at(text, "daemon.pre_hook");
    assert!(p.message.contains("must not be empty"), "{p}");
    let p = problem_at(text, "daemon.on_pre_hook_failure");
    assert!(
        p.message.contains("'ignore'") && p.message.contains("\"abort\""),
        "{p}"
    );
    let p = problem_at(text, "providers.lab.post_hook");
    assert!(p.message.contains("'thaw' is not an absolute path"), "{p}");
    assert!(p.message.contains("/usr/local/sbin/thaw"), "{p}");
    let p = problem_at(text, "definitions[0].hook_timeout");
    assert!(
        p.message.contains("'3h'") && p.message.contains("1s to 1h"),
        "{p}"
    );
    let p = problem_at(text, "definitions[0].on_failure");
    assert!(p.message.contains("'./page'"), "{p}");
}

#[test]
fn hooks_are_read_at_every_level() {
    let text = "[daemon]\non_failure = [\"/usr/bin/logger\", \"failed\"]\nhook_timeout = \"2m\"\n\
        [providers.lab]\nkind = \"fake\"\npre_hook = [\"/usr/local/sbin/freeze\"]\n\
        on_pre_hook_failure = \"continue\"\n\
        [[definitions]]\nname = \"a\"\nprovider = \"lab\"\ntarget = \"web01\"\n\
        schedule = \"@daily\"\nretention = 1\npost_hook = [\"/usr/local/sbin/thaw\", \"--all\"]\n";
    let (_dir, cfg) = load_text(text);
    let cfg = cfg.unwrap();
    assert_eq!(
        cfg.daemon
            .hooks
            .on_failure
            .as_ref()
            .map(|c| c.argv().to_vec()),
        Some(vec!["/usr/bin/logger".to_owned(), "failed".to_owned()])
    );
    let lab = &cfg.providers["lab"].hooks;
    assert_eq!(
        lab.pre_hook.as_ref().map(|c| c.program()),
        Some("/usr/local/sbin/freeze")
    );
    let def = &cfg.definitions[0];
    assert_eq!(
        def.hooks.post_hook.as_ref().map(|c| c.args().to_vec()),
        Some(vec!["--all".to_owned()])
    );
    let eff = def.hooks.or(lab).or(&cfg.daemon.hooks).effective();
    assert_eq!(eff.timeout, std::time::Duration::from_secs(120));
    assert_eq!(
        eff.on_pre_failure,
        crate::domain::hooks::OnPreHookFailure::Continue
    );
    assert!(eff.pre.is_some() && eff.post.is_some() && eff.on_failure.is_some());
}

#[test]
fn an_inline_secret_with_a_line_break_is_refused_at_load() {
    let p = problem_at(
        "[providers.do]\nkind = \"digitalocean\"\ntoken = \"dop_v1_SECRET\\nX-Injected: 1\"\n",
        "providers.do.token",
    );
    assert!(p.message.contains("a line break"), "{p}");
    assert!(!p.message.contains("SECRET"), "{p}");
}

#[test]
fn durations_have_ranges() {
    for (text, key) in [
        (
            "[daemon]\nrun_timeout = \"1000000y\"\n",
            "daemon.run_timeout",
        ),
        (
            "[daemon]\nshutdown_grace = \"2h\"\n",
            "daemon.shutdown_grace",
        ),
        (
            "[providers.f]\nkind = \"fake\"\npoll_interval = \"0s\"\n",
            "providers.f.poll_interval",
        ),
        (
            "[providers.f]\nkind = \"fake\"\nrequest_timeout = \"0s\"\n",
            "providers.f.request_timeout",
        ),
        (
            "[providers.f]\nkind = \"fake\"\naction_timeout = \"1000000y\"\n",
            "providers.f.action_timeout",
        ),
    ] {
        let p = problem_at(text, key);
        assert!(p.message.contains("out of range"), "{p}");
    }
    // The edges are accepted.
    let (_, ok) = load_text(
        "[daemon]\nrun_timeout = \"7d\"\nshutdown_grace = \"0s\"\n[providers.f]\nkind = \"fake\"\npoll_interval = \"100ms\"\nrequest_timeout = \"1h\"\n",
    );
    let cfg = ok.expect("edges accepted");
    assert_eq!(
        cfg.daemon.run_timeout,
        std::time::Duration::from_secs(7 * 86_400)
    );
}

#[test]
fn notify_is_off_by_default_and_has_bounded_defaults() {
    let (_dir, cfg) = load_text("");
    let n = cfg.unwrap().notify;
    assert!(n.webhook_url.is_none() && n.webhook_headers.is_none());
    assert_eq!(n.timeout, std::time::Duration::from_secs(10));
    assert_eq!(n.retry_initial, std::time::Duration::from_secs(1));
    assert_eq!(n.retry_max, std::time::Duration::from_secs(300));
    assert_eq!(n.queue_limit, 10_000);
}

#[test]
fn the_example_configures_notify_as_documented() {
    let (_dir, cfg) = load_text(EXAMPLE);
    let n = cfg.unwrap().notify;
    assert!(
        n.webhook_url.is_none(),
        "the example leaves the webhook off"
    );
    assert_eq!(n.queue_limit, 10_000);
    let (_dir, cfg) = load_text(&EXAMPLE.replace(
        "# webhook_url = \"https://hooks.example.com/snapsched\"",
        "webhook_url = \"https://hooks.example.com/snapsched\"",
    ));
    let n = cfg.unwrap().notify;
    assert_eq!(
        n.webhook_url.map(|u| u.expose().to_string()).as_deref(),
        Some("https://hooks.example.com/snapsched")
    );
}

#[test]
fn a_webhook_url_with_credentials_is_refused_and_shown_nowhere() {
    let all = problems("[notify]\nwebhook_url = \"https://ops:hunter2@hooks.example.com/x\"\n");
    let p = all
        .iter()
        .find(|p| p.key == "notify.webhook_url")
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert!(p.message.contains("webhook_headers_file"), "{p}");
    assert!(!p.to_string().contains("hunter2"), "{p}");
}

#[test]
fn notify_values_of_the_wrong_type_or_range_name_key_value_and_fix() {
    for (text, key, want) in [
        (
            "webhook_url = \"ftp://h/x\"",
            "notify.webhook_url",
            "not an http or https URL",
        ),
        ("webhook_url = 5", "notify.webhook_url", ""),
        (
            "timeout = \"0s\"",
            "notify.timeout",
            "'0s' is out of range: give a duration from \"1s\" to \"5m\"",
        ),
        ("timeout = \"soon\"", "notify.timeout", "'soon'"),
        (
            "retry_initial = \"1ms\"",
            "notify.retry_initial",
            "out of range: give a duration from \"10ms\" to \"1h\"",
        ),
        (
            "retry_initial = \"10s\"\nretry_max = \"1s\"",
            "notify.retry_max",
            "shorter than notify.retry_initial",
        ),
        (
            "queue_limit = 0",
            "notify.queue_limit",
            "0 is out of range 1-1000000",
        ),
        ("queue_limit = \"many\"", "notify.queue_limit", "\"many\""),
        (
            "webhook_headers_file = \"h\"",
            "notify.webhook_headers_file",
            "notify.webhook_url is not",
        ),
        (
            "webhook_token = \"x\"",
            "notify.webhook_token",
            "unknown key",
        ),
    ] {
        let p = problem_at(&format!("[notify]\n{text}\n"), key);
        assert!(p.message.contains(want), "{text}: {p}");
    }
}

#[test]
fn config_show_prints_the_webhook_origin_and_the_headers_path_only() {
    let (dir, cfg) = load_text(
        "[notify]\nwebhook_url = \"https://hooks.example.com/services/T0/B0/s3cret\"\n\
         webhook_headers_file = \"webhook.headers\"\n",
    );
    let cfg = cfg.unwrap();
    let shown = toml::to_string_pretty(&cfg).unwrap();
    assert!(
        shown.contains("webhook_url = \"https://hooks.example.com/[redacted]\""),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("webhook.headers"), "{shown}");

    // `config check` reads the headers file with the secret-file checks.
    let path = dir.path().join("c.toml");
    let err = check(&path, &Overrides::default()).unwrap_err();
    assert_eq!(err.problems[0].key, "notify.webhook_headers_file");
    let h = dir.path().join("webhook.headers");
    std::fs::write(&h, "Authorization: Bearer hunter2\n").unwrap();
    std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = check(&path, &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o600)).unwrap();
    check(&path, &Overrides::default()).unwrap();
}
