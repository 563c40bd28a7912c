//! No secret reaches the output. Providers get distinctive credentials
//! (inline, from a file, from the environment) and point at the in-process
//! DigitalOcean and Erigones fakes made to fail (wrong credentials: 401;
//! server errors: 5xx) or at a closed port; then every command that can
//! print a credential or a provider's error is run, the configuration is
//! broken in the ways that make the loader quote it, and the daemon runs
//! with `RUST_LOG=trace`. Every byte of stdout and stderr is searched for
//! the credentials.
//!
//! Each step also asserts the failure it provokes, and that the fakes saw
//! the credentials, so a step that silently stopped reaching the code under
//! test fails instead of passing vacuously.

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, Fault, FaultRule};
use snapsched_fake_api::erigones::{self as fake_es, FakeErigonesConfig, FaultKind};

use crate::support::process::{signal, wait_exit};
use crate::support::TestEnv;

/// The credentials. Distinctive, and each also searched for in part (a
/// prefix or suffix of 12 characters), in case only a fragment is printed.
const DO_TOKEN: &str = "dop_v1_c4n4ry7e57d0t0k3n5f3e9a2b8c1d4e7f0a3b6c9d2e5f8a1b4c7d0e3";
const ES_KEY: &str = "c4n4ry-es-k3y-91d2e8f3a7b6c5d4e3f2a1b0";
const DO_FILE_TOKEN: &str = "dop_v1_f1l3c4n4ry0123456789abcdef0123456789abcdef0123456789abcd";
const ES_ENV_KEY: &str = "c4n4ry-env-k3y-0f1e2d3c4b5a69788796a5b4";
const SECRETS: [&str; 4] = [DO_TOKEN, ES_KEY, DO_FILE_TOKEN, ES_ENV_KEY];

const DROPLET: u64 = 3164444;
const VM: &str = "vm1.example.com";

/// Everything one command printed, with what it was.
struct Output {
    label: String,
    code: i32,
    out: String,
    err: String,
}

/// Every command's output, searched at the end (and by [`Seen::check`]
/// right away, so a leak is reported with the command that made it).
#[derive(Default)]
struct Seen {
    outputs: Vec<Output>,
}

impl Seen {
    fn check(&self, o: &Output) {
        for secret in SECRETS {
            let fragments = [
                secret,
                &secret[..12],
                &secret[secret.len() - 12..],
                // Debug of a `Vec<u8>` or a header value would still show
                // the characters; a base64 or percent-encoded form would
                // keep the long run of alphanumerics.
                &secret[8..24],
            ];
            for text in [&o.out, &o.err] {
                for f in fragments {
                    assert!(
                        !text.contains(f),
                        "{}: output contains secret fragment {f:?}:\n{text}",
                        o.label
                    );
                }
            }
        }
    }

    fn add(&mut self, label: impl Into<String>, (code, out, err): (i32, String, String)) -> usize {
        let o = Output {
            label: label.into(),
            code,
            out,
            err,
        };
        self.check(&o);
        self.outputs.push(o);
        self.outputs.len() - 1
    }

    fn get(&self, i: usize) -> &Output {
        &self.outputs[i]
    }

    /// Record and require a non-zero exit whose stderr says `why`.
    fn failed(&mut self, label: &str, result: (i32, String, String), why: &[&str]) {
        let i = self.add(label, result);
        let o = self.get(i);
        assert_ne!(o.code, 0, "{label}: expected a failure\n{}", o.out);
        let text = format!("{}{}", o.out, o.err).to_lowercase();
        assert!(
            why.iter().any(|w| text.contains(&w.to_lowercase())),
            "{label}: expected one of {why:?} in:\n{}\n{}",
            o.out,
            o.err
        );
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Providers: wrong credentials (401), server errors (5xx) and a closed
/// port, for both APIs and through all three ways to give a credential.
fn config(do401: &str, do5xx: &str, es401: &str, es5xx: &str, down: u16, schedule: &str) -> String {
    let mut text = format!(
        r#"
[daemon]
database = "snapsched.db"
timezone = "UTC"
run_timeout = "1s"
shutdown_grace = "2s"

[providers.do401]
kind = "digitalocean"
api_url = "{do401}"
token = "{DO_TOKEN}"

[providers.do5xx]
kind = "digitalocean"
api_url = "{do5xx}"
token_file = "do.token"

[providers.dodown]
kind = "digitalocean"
api_url = "http://127.0.0.1:{down}"
token = "{DO_TOKEN}"
connect_timeout = "2s"

[providers.es401]
kind = "erigones"
api_url = "{es401}"
api_key = "{ES_KEY}"

[providers.es5xx]
kind = "erigones"
api_url = "{es5xx}"
api_key_env = "SNAPSCHED_TEST_ES_KEY"

[providers.esdown]
kind = "erigones"
api_url = "http://127.0.0.1:{down}/api"
api_key = "{ES_KEY}"
connect_timeout = "2s"
"#
    );
    for p in ["do401", "do5xx", "dodown", "es401", "es5xx", "esdown"] {
        let target = if p.starts_with("do") {
            format!("droplet:{DROPLET}")
        } else {
            VM.to_owned()
        };
        text.push_str(&format!(
            r#"
[[definitions]]
name = "d-{p}"
provider = "{p}"
target = "{target}"
schedule = "{schedule}"
retention = 2
"#
        ));
    }
    text
}

const DEFS: [&str; 6] = [
    "d-do401", "d-do5xx", "d-dodown", "d-es401", "d-es5xx", "d-esdown",
];

fn env_vars() -> [(&'static str, &'static str); 1] {
    [("SNAPSCHED_TEST_ES_KEY", ES_ENV_KEY)]
}

#[test]
fn no_secret_in_any_output() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // 401: the fakes expect other credentials than the ones configured.
    let do401 = rt
        .block_on(FakeDigitalOcean::start(FakeConfig {
            token: "some-other-token".into(),
            ..FakeConfig::default()
        }))
        .expect("fake DigitalOcean");
    let do5xx = rt
        .block_on(FakeDigitalOcean::start(FakeConfig {
            token: DO_FILE_TOKEN.into(),
            ..FakeConfig::default()
        }))
        .expect("fake DigitalOcean");
    do5xx.inject(FaultRule::new(None, Fault::Status(503), 10_000));
    let es401 = rt
        .block_on(fake_es::start(FakeErigonesConfig {
            api_key: "some-other-key".into(),
            ..FakeErigonesConfig::default()
        }))
        .expect("fake Erigones");
    let es5xx = rt
        .block_on(fake_es::start(FakeErigonesConfig {
            api_key: ES_ENV_KEY.into(),
            ..FakeErigonesConfig::default()
        }))
        .expect("fake Erigones");
    es5xx.state.inject(fake_es::Fault {
        route: None,
        kind: FaultKind::Status(500),
        times: 10_000,
    });
    for h in [&do401, &do5xx] {
        h.add_droplet(DROPLET, "web-01");
    }
    for h in [&es401, &es5xx] {
        h.state.add_vm(VM, 1);
    }
    let down = closed_port();
    let cfg = |schedule: &str| {
        config(
            do401.url(),
            do5xx.url(),
            &es401.base_url,
            &es5xx.base_url,
            down,
            schedule,
        )
    };

    let env = TestEnv::new(&cfg("0 3 * * *"));
    env.write("do.token", &format!("{DO_FILE_TOKEN}\n"), 0o600);
    let vars = env_vars();
    let run = |args: &[&str]| env.run_env(args, &vars);
    let mut seen = Seen::default();

    // Reading and showing the configuration.
    let i = seen.add("config show", run(&["config", "show"]));
    assert_eq!(seen.get(i).code, 0, "{}", seen.get(i).err);
    assert!(
        seen.get(i).out.contains("[redacted]"),
        "config show hides inline secrets as [redacted]:\n{}",
        seen.get(i).out
    );
    let i = seen.add("config show --json", run(&["config", "show", "--json"]));
    assert_eq!(seen.get(i).code, 0, "{}", seen.get(i).err);
    let i = seen.add("config check", run(&["config", "check"]));
    assert_eq!(seen.get(i).code, 0, "{}", seen.get(i).err);
    seen.add("config apply", run(&["config", "apply"]));
    for d in DEFS {
        let i = seen.add(format!("def show {d}"), run(&["def", "show", d]));
        assert_eq!(seen.get(i).code, 0, "{}", seen.get(i).err);
        seen.add(
            format!("def show {d} --json"),
            run(&["def", "show", d, "--json"]),
        );
    }
    seen.add("def list", run(&["def", "list"]));

    // Runs that fail: rejected credentials, server errors, nobody listening.
    let why: [(&str, &[&str]); 6] = [
        (
            "d-do401",
            &["401", "unauthor", "denied", "credential", "token"],
        ),
        ("d-do5xx", &["503", "server error", "unavailable"]),
        ("d-dodown", &["connect", "refused"]),
        (
            "d-es401",
            &["401", "403", "unauthor", "denied", "credential", "key"],
        ),
        ("d-es5xx", &["500", "server error"]),
        ("d-esdown", &["connect", "refused"]),
    ];
    for (d, words) in why {
        seen.failed(
            &format!("run {d} --wait"),
            run(&["run", d, "--wait"]),
            words,
        );
        seen.failed(
            &format!("run {d} --wait --json"),
            run(&["run", d, "--wait", "--json"]),
            words,
        );
    }
    for args in [
        &["history"][..],
        &["history", "--json"],
        &["status"],
        &["status", "--json"],
        &["snapshots"],
        &["prune", "d-do401", "--dry-run"],
        &["prune", "d-es5xx"],
    ] {
        seen.add(args.join(" "), run(args));
    }
    // The credentials did reach the fakes (so the runs above used them).
    assert!(
        do401.responses(401) > 0,
        "DigitalOcean 401 fake never asked"
    );
    assert!(
        do5xx.responses(503) > 0,
        "DigitalOcean 5xx fake never asked"
    );
    assert!(
        es401.state.total_requests() > 0,
        "Erigones 401 fake never asked"
    );
    assert!(
        es5xx.state.total_requests() > 0,
        "Erigones 5xx fake never asked"
    );

    // Configurations the loader refuses, in ways that tempt it to quote.
    let broken = TestEnv::new(&cfg("0 3 * * *"));
    broken.write("do.token", &format!("{DO_FILE_TOKEN}\n"), 0o644);
    let bvars = env_vars();
    let brun = |args: &[&str]| broken.run_env(args, &bvars);
    // Loading does not read credentials, so the definitions can be applied.
    let i = seen.add("broken: config apply", brun(&["config", "apply"]));
    assert_eq!(seen.get(i).code, 0, "{}", seen.get(i).err);
    seen.failed(
        "token file readable by others: config check",
        brun(&["config", "check"]),
        &["chmod 600"],
    );
    seen.failed(
        "token file readable by others: run",
        brun(&["run", "d-do5xx"]),
        &["chmod 600"],
    );
    broken.write("do.token", &format!("{DO_FILE_TOKEN}\n"), 0o600);
    std::fs::set_permissions(
        &broken.config,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    for args in [
        &["config", "check"][..],
        &["config", "show"],
        &["def", "show", "d-do401"],
        &["run", "d-do401", "--wait"],
        &["daemon"],
    ] {
        seen.failed(
            &format!(
                "inline token in a world-readable config: {}",
                args.join(" ")
            ),
            brun(args),
            &["chmod 600"],
        );
    }
    // A token left unquoted or unterminated: TOML errors quote the line.
    for (label, line) in [
        ("unterminated", format!("token = \"{DO_TOKEN}")),
        ("unquoted", format!("token = {DO_TOKEN}")),
        ("trailing garbage", format!("token = \"{DO_TOKEN}\" x")),
        (
            "duplicate",
            format!("token = \"{DO_TOKEN}\"\ntoken = \"{DO_TOKEN}\""),
        ),
        ("literal", format!("token = '{DO_TOKEN}")),
        ("wrong type", format!("token = [\"{DO_TOKEN}\"]")),
        (
            "inline table",
            format!("token = {{ value = \"{DO_TOKEN}\" }}"),
        ),
        ("wrong family", format!("api_key = \"{DO_TOKEN}\"")),
    ] {
        let text = cfg("0 3 * * *").replacen(&format!("token = \"{DO_TOKEN}\""), &line, 1);
        broken.write_config(&text);
        for args in [&["config", "check"][..], &["def", "list"]] {
            seen.failed(
                &format!("{label} token: {}", args.join(" ")),
                brun(args),
                &["invalid configuration"],
            );
        }
    }
    // A token set through the environment next to a configuration error.
    broken
        .write_config(&cfg("0 3 * * *").replace("timezone = \"UTC\"", "timezone = \"Mars/Base\""));
    let r = broken.run_env(
        &["config", "check"],
        &[
            ("SNAPSCHED_TEST_ES_KEY", ES_ENV_KEY),
            ("SNAPSCHED__PROVIDERS__DO401__TOKEN", DO_TOKEN),
        ],
    );
    seen.failed("environment token with a config error", r, &["Mars/Base"]);

    // The daemon at trace level, every definition firing every second.
    env.write_config(&cfg("* * * * * *"));
    let mut cmd = env.command(&["daemon"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    // Bounded polling on the store: two failed scheduled runs per definition.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = run(&["history", "--json", "--limit", "500"]);
        assert_eq!(code, 0, "history: {err}");
        let runs: serde_json::Value = serde_json::from_str(&out).expect("history json");
        let failed_scheduled = |d: &str| {
            runs.as_array().map_or(0, |a| {
                a.iter()
                    .filter(|r| {
                        r["name"] == d && r["trigger"] == "schedule" && r["state"] == "failed"
                    })
                    .count()
            })
        };
        if DEFS.iter().all(|d| failed_scheduled(d) >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not fail twice per definition within 60 s: {runs:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    signal(&child, "-TERM");
    let exit = wait_exit(&mut child, Duration::from_secs(30));
    let out = String::from_utf8_lossy(&out_reader.join().expect("stdout reader")).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into_owned();
    assert!(
        err.contains("TRACE") && err.contains("run ended"),
        "no trace-level log from the daemon:\n{err}"
    );
    seen.add(
        "daemon with RUST_LOG=trace",
        (exit.code().unwrap_or(-1), out, err),
    );
    assert!(exit.success(), "daemon exited with {exit}");

    // A last pass over everything, should a check above have been skipped.
    for o in &seen.outputs {
        seen.check(o);
    }
    assert!(
        seen.outputs.len() > 50,
        "only {} outputs",
        seen.outputs.len()
    );
}
