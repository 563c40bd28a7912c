//! Hooks end to end: the real binary runs definitions whose pre, post,
//! on_success and on_failure hooks are a small recording shell script,
//! against the fake DigitalOcean API on loopback.
//!
//! The script appends `PHASE RESULT` to `order.log`, dumps its environment
//! to `env-PHASE-N`, holds while a `hold-PHASE` file exists (bounded), and
//! fails with status 3 when a `fail-PHASE` file exists. Tests hold a hook to
//! look at the provider while it runs, and release it by removing the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use snapsched_fake_api::digitalocean::{FakeConfig, FakeDigitalOcean, FakeHandle, Resource};

use crate::support::fake::{DO_TOKEN, VOLUME};
use crate::support::fixtures::config_with_do_api;
use crate::support::process::{outcome, wait_exit};
use crate::support::{write_file, TestEnv};

const VOLUME_CREATE: &str = "POST /v2/volumes/{volume_id}/snapshots";
const DROPLET_ACTION: &str = "POST /v2/droplets/{droplet_id}/actions";
const DROPLET: u64 = 3164444;
/// The Erigones key of the base configuration's `dc1`, which the daemon
/// loads (and no hook may see).
const DC1_KEY: (&str, &str) = ("SNAPSCHED_TEST_DC1_KEY", "dc1-secret-api-key");

const RECORDER: &str = r#"#!/bin/sh
dir="$1"
echo "$SNAPSCHED_PHASE ${SNAPSCHED_RESULT:-}" >> "$dir/order.log"
n=$(wc -l < "$dir/order.log" | tr -d ' ')
env > "$dir/env-$SNAPSCHED_PHASE-$n"
if [ -e "$dir/hold-$SNAPSCHED_PHASE" ]; then
  touch "$dir/held-$SNAPSCHED_PHASE"
  i=0
  while [ -e "$dir/hold-$SNAPSCHED_PHASE" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fi
if [ -e "$dir/fail-$SNAPSCHED_PHASE" ]; then
  echo "cannot freeze: database busy"
  exit 3
fi
exit 0
"#;

/// Variables a hook may see besides `SNAPSCHED_*`: the fixed `PATH` and what
/// the daemon passes through (`sh` itself adds `PWD`, and may add `SHLVL`
/// and `_`).
const ALLOWED: [&str; 11] = [
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "PWD", "SHLVL", "_",
];

/// The recorder written into `env`'s directory, with its state directory;
/// `hooks` is the TOML of the hook keys with `{hook}` standing for the
/// recorder's argv.
struct Hooks {
    dir: PathBuf,
    script: PathBuf,
}

impl Hooks {
    fn new(env: &TestEnv) -> Hooks {
        let dir = env.path().join("hooks");
        std::fs::create_dir_all(&dir).expect("hook dir");
        let script = env.write("recorder.sh", RECORDER, 0o644);
        Hooks { dir, script }
    }

    /// The recorder as a TOML argv.
    fn argv(&self) -> String {
        format!(
            "[\"/bin/sh\", \"{}\", \"{}\"]",
            self.script.display(),
            self.dir.display()
        )
    }

    fn toml(&self, keys: &[&str]) -> String {
        keys.iter()
            .map(|k| format!("{k} = {}\n", self.argv()))
            .collect()
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.join(name), "").expect("touch");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.join(name)).expect("remove");
    }

    /// `order.log` as lines.
    fn order(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("order.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// The environment of the `n`th hook (1-based), which ran as `phase`.
    fn env_of(&self, phase: &str, n: usize) -> BTreeMap<String, String> {
        let path = self.dir.join(format!("env-{phase}-{n}"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; order {:?}", path.display(), self.order()));
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Every environment dumped so far.
    fn all_envs(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).expect("read hook dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(rest) = name.strip_prefix("env-") {
                let (phase, n) = rest.rsplit_once('-').expect("env-PHASE-N");
                out.push((name.clone(), self.env_of(phase, n.parse().expect("N"))));
            }
        }
        out
    }

    /// Wait (bounded) until the hook of `phase` holds.
    fn wait_held(&self, phase: &str, child: &mut Child, env: &TestEnv) {
        let marker = self.dir.join(format!("held-{phase}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !marker.exists() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "snapsched exited ({status}) before the {phase} hook held; order {:?}\n{}",
                    self.order(),
                    daemon_logs(env)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the {phase} hook never ran: {:?}",
                self.order()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// No variable but the allowed ones and `SNAPSCHED_*`, and no value holding
/// the provider's token, in any hook's environment.
fn assert_no_secret(hooks: &Hooks) {
    let envs = hooks.all_envs();
    assert!(!envs.is_empty(), "no hook ran");
    for (file, env) in envs {
        for (k, v) in &env {
            assert!(
                k.starts_with("SNAPSCHED_") || ALLOWED.contains(&k.as_str()),
                "{file}: unexpected variable {k}={v}"
            );
            assert!(!v.contains(DO_TOKEN.1), "{file}: {k} holds the token");
            assert!(!v.contains(DC1_KEY.1), "{file}: {k} holds the API key");
        }
    }
}

async fn fake_do() -> FakeHandle {
    let fake = FakeDigitalOcean::start(FakeConfig::default())
        .await
        .expect("fake DigitalOcean");
    fake.add_volume(VOLUME.parse().expect("uuid"), "data");
    fake.add_droplet(DROPLET, "web-1");
    fake
}

/// A configuration on `fake` with one definition `web` of `target` and
/// `extra` keys in it.
fn env_with(fake: &FakeHandle, target: &str, extra: impl Fn(&Hooks) -> String) -> (TestEnv, Hooks) {
    let env = TestEnv::base();
    let hooks = Hooks::new(&env);
    let config = config_with_do_api(fake.url()).replace(
        "[providers.do]\n",
        "[providers.do]\npoll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\n",
    );
    env.write_config(&format!(
        "{config}\n[[definitions]]\nname = \"web\"\nprovider = \"do\"\ntarget = \"{target}\"\n\
         schedule = \"0 3 * * *\"\nretention = 5\n{}",
        extra(&hooks)
    ));
    env.ok(&["config", "apply"]);
    (env, hooks)
}

/// Start `snapsched run web` with the provider's token in its environment.
fn spawn_run(env: &TestEnv) -> Child {
    env.command(&["run", "web"])
        .env(DO_TOKEN.0, DO_TOKEN.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snapsched run")
}

fn finish(child: Child) -> (i32, String, String) {
    outcome(child.wait_with_output().expect("snapsched run"))
}

fn last_run(env: &TestEnv) -> serde_json::Value {
    env.json(&["history", "web", "--limit", "1"])[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_create_post_run_in_order_with_the_run_environment_and_no_secret() {
    let fake = fake_do().await;
    let target = format!("volume:{VOLUME}");
    let (env, hooks) = env_with(&fake, &target, |h| {
        h.toml(&["pre_hook", "post_hook", "on_success", "on_failure"])
    });
    hooks.touch("hold-pre");
    let mut child = spawn_run(&env);
    hooks.wait_held("pre", &mut child, &env);
    // The pre hook runs before anything is asked of the provider.
    assert_eq!(fake.requests(VOLUME_CREATE), 0);
    hooks.remove("hold-pre");
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");

    assert_eq!(
        hooks.order(),
        ["pre", "post succeeded", "on_success succeeded"]
    );
    assert_eq!(fake.requests(VOLUME_CREATE), 1);
    let snaps = fake.snapshots_of(Resource::Volume(VOLUME.parse().unwrap()));
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    assert!(
        snap.tags.contains(&"consistency:app".to_owned()),
        "{:?}",
        snap.tags
    );

    let pre = hooks.env_of("pre", 1);
    let expect = [
        ("SNAPSCHED_DEFINITION", "web"),
        ("SNAPSCHED_PROVIDER", "do"),
        ("SNAPSCHED_TARGET", target.as_str()),
        ("SNAPSCHED_DISK", "1"),
        ("SNAPSCHED_SNAPSHOT_NAME", snap.name.as_str()),
        ("SNAPSCHED_TRIGGER", "manual"),
        ("SNAPSCHED_PHASE", "pre"),
    ];
    for (k, v) in expect {
        assert_eq!(pre.get(k).map(String::as_str), Some(v), "{k} in {pre:#?}");
    }
    let slot = chrono::DateTime::parse_from_rfc3339(&pre["SNAPSCHED_SLOT"]).expect("RFC 3339 slot");
    assert!(snap
        .name
        .ends_with(&slot.format("%Y%m%d_%H%M%S").to_string()));
    assert!(!pre.contains_key("SNAPSCHED_RESULT") && !pre.contains_key("SNAPSCHED_SNAPSHOT_ID"));
    let post = hooks.env_of("post", 2);
    assert_eq!(post["SNAPSCHED_PHASE"], "post");
    assert_eq!(post["SNAPSCHED_RESULT"], "succeeded");
    assert_eq!(post["SNAPSCHED_SNAPSHOT_ID"], snap.id);
    assert_eq!(post["SNAPSCHED_SNAPSHOT_NAME"], snap.name);
    let done = hooks.env_of("on_success", 3);
    assert_eq!(done["SNAPSCHED_PHASE"], "on_success");
    assert!(!done.contains_key("SNAPSCHED_ERROR"));
    assert_no_secret(&hooks);

    let run = last_run(&env);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["consistency"], "app");
    assert_eq!(run["hook_state"], "done");
    let output = run["hook_output"].as_str().unwrap_or_default();
    assert!(
        output.contains("pre: exited with status 0")
            && output.contains("post: exited with status 0"),
        "{run:#}"
    );
    let table = env.ok(&["history", "web"]);
    assert!(
        table.contains("Consistency") && table.contains(" app "),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_droplet_post_hook_runs_once_the_action_started_not_when_it_ends() {
    let fake = fake_do().await;
    let (env, hooks) = env_with(&fake, &format!("droplet:{DROPLET}"), |h| {
        h.toml(&["pre_hook", "post_hook"])
    });
    hooks.touch("hold-post");
    let mut child = spawn_run(&env);
    hooks.wait_held("post", &mut child, &env);
    // The snapshot action is accepted and still running (the fake's clock
    // stands still): the post hook did not wait for it.
    assert_eq!(fake.requests(DROPLET_ACTION), 1);
    assert_eq!(fake.actions_in_progress(), 1);
    assert!(fake.snapshots_of(Resource::Droplet(DROPLET)).is_empty());
    let post = hooks.env_of("post", 2);
    assert_eq!(post["SNAPSCHED_RESULT"], "succeeded");
    assert!(!post.contains_key("SNAPSCHED_SNAPSHOT_ID"), "{post:#?}");
    hooks.remove("hold-post");
    fake.advance(Duration::from_secs(600));
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert_eq!(hooks.order(), ["pre", "post succeeded"]);
    assert_eq!(last_run(&env)["consistency"], "app");
    let snaps = fake.snapshots_of(Resource::Droplet(DROPLET));
    assert_eq!(snaps.len(), 1);
    assert!(
        snaps[0].tags.contains(&"consistency:app".to_owned()),
        "{:?}",
        snaps[0].tags
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_hook_with_abort_sends_no_create_request() {
    let fake = fake_do().await;
    let (env, hooks) = env_with(&fake, &format!("volume:{VOLUME}"), |h| {
        h.toml(&["pre_hook", "post_hook", "on_failure", "on_success"])
    });
    hooks.touch("fail-pre");
    let (code, out, err) = finish(spawn_run(&env));
    assert_eq!(code, 1, "stdout {out}\nstderr {err}");
    assert_eq!(fake.requests(VOLUME_CREATE), 0);
    assert_eq!(fake.requests_total(), 0, "{:?}", fake.route_counts());
    // The post hook still ran, told the run aborted; then on_failure.
    assert_eq!(hooks.order(), ["pre", "post aborted", "on_failure failed"]);
    let run = last_run(&env);
    assert_eq!(run["state"], "failed");
    assert_eq!(run["consistency"], serde_json::Value::Null);
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pre hook") && error.contains("exited with status 3"),
        "{run:#}"
    );
    assert!(error.contains("cannot freeze: database busy"), "{run:#}");
    let failure = hooks.env_of("on_failure", 3);
    assert_eq!(failure["SNAPSCHED_PHASE"], "on_failure");
    assert_eq!(failure["SNAPSCHED_RESULT"], "failed");
    assert_eq!(failure["SNAPSCHED_ERROR"], error);
    assert_no_secret(&hooks);
}

/// `on_failure` pages once per stretch of failures: not for the second
/// failure in a row, again after a success; `on_success` after every success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_is_called_once_until_the_definition_succeeds_again() {
    let fake = fake_do().await;
    let (env, hooks) = env_with(&fake, &format!("volume:{VOLUME}"), |h| {
        h.toml(&["pre_hook", "on_failure", "on_success"])
    });
    let run = |expect: i32| {
        let (code, out, err) = finish(spawn_run(&env));
        assert_eq!(code, expect, "stdout {out}\nstderr {err}");
    };
    hooks.touch("fail-pre");
    run(1);
    run(1);
    run(1);
    hooks.remove("fail-pre");
    run(0);
    run(0);
    hooks.touch("fail-pre");
    run(1);
    assert_eq!(
        hooks.order(),
        [
            "pre",
            "on_failure failed",
            "pre",
            "pre",
            "pre",
            "on_success succeeded",
            "pre",
            "on_success succeeded",
            "pre",
            "on_failure failed",
        ]
    );
    let runs = env.json(&["history", "web"]);
    let states: Vec<&str> = runs
        .as_array()
        .expect("history array")
        .iter()
        .map(|r| r["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        states,
        [
            "failed",
            "succeeded",
            "succeeded",
            "failed",
            "failed",
            "failed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_hook_with_continue_takes_a_crash_consistent_snapshot() {
    let fake = fake_do().await;
    let (env, hooks) = env_with(&fake, &format!("volume:{VOLUME}"), |h| {
        format!(
            "{}on_pre_hook_failure = \"continue\"\n",
            h.toml(&["pre_hook", "post_hook"])
        )
    });
    hooks.touch("fail-pre");
    let (code, out, err) = finish(spawn_run(&env));
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert_eq!(fake.requests(VOLUME_CREATE), 1);
    assert_eq!(hooks.order(), ["pre", "post succeeded"]);
    let run = last_run(&env);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["consistency"], "crash");
    let snaps = fake.snapshots_of(Resource::Volume(VOLUME.parse().unwrap()));
    assert!(
        snaps[0].tags.contains(&"consistency:crash".to_owned()),
        "{:?}",
        snaps[0].tags
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_hooks_is_recorded_crash_consistent() {
    let fake = fake_do().await;
    let (env, _hooks) = env_with(&fake, &format!("volume:{VOLUME}"), |_| String::new());
    let (code, out, err) = finish(spawn_run(&env));
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let run = last_run(&env);
    assert_eq!(run["consistency"], "crash");
    assert_eq!(run["hook_state"], serde_json::Value::Null);
    let snaps = fake.snapshots_of(Resource::Volume(VOLUME.parse().unwrap()));
    assert!(
        !snaps[0].tags.iter().any(|t| t.starts_with("consistency:")),
        "{:?}",
        snaps[0].tags
    );
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_past_its_timeout_is_killed_with_its_process_group() {
    let fake = fake_do().await;
    let (env, hooks) = env_with(&fake, &format!("volume:{VOLUME}"), |h| {
        let slow = h.dir.join("slow.sh");
        write_file(
            &slow,
            "#!/bin/sh\n\
             /bin/sh -c 'echo $$ > \"$1/child.pid\"; sleep 10; touch \"$1/late\"' child \"$1\" &\n\
             echo started\n\
             exec sleep 60\n",
            0o644,
        );
        format!(
            "pre_hook = [\"/bin/sh\", \"{}\", \"{}\"]\nhook_timeout = \"1s\"\n{}",
            slow.display(),
            h.dir.display(),
            h.toml(&["post_hook"])
        )
    });
    let started = Instant::now();
    let (code, out, err) = finish(spawn_run(&env));
    assert_eq!(code, 1, "stdout {out}\nstderr {err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run waited for the hook: {:?}",
        started.elapsed()
    );
    let run = last_run(&env);
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("timed out after 1s and was killed"),
        "{run:#}"
    );
    assert!(
        error.contains("started"),
        "the output tail is kept: {run:#}"
    );
    assert_eq!(fake.requests(VOLUME_CREATE), 0);
    assert_eq!(hooks.order(), ["post aborted"]);
    // The hook's child, in its process group, was killed with it.
    let pid_file = hooks.dir.join("child.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("the child started");
    let pid = pid.trim();
    // Longer than the child's own sleep: a child that survived would have
    // written its file by then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(pid) {
        assert!(
            Instant::now() < deadline,
            "the hook's child {pid} outlived the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!hooks.dir.join("late").exists(), "the hook's child ran on");
}

#[test]
fn hook_settings_are_checked_and_shown_by_the_cli() {
    let env = TestEnv::base();
    env.ok(&["config", "apply"]);
    let add = |extra: &[&str]| {
        let mut args = vec![
            "def",
            "add",
            "db",
            "--provider",
            "fake",
            "--target",
            "db01",
            "--schedule",
            "0 3 * * *",
            "--retention",
            "3",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let args = add(&["--pre-hook", "pg-start"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = env.usage_error(&args);
    assert!(
        err.contains("pre_hook: 'pg-start' is not an absolute path"),
        "{err}"
    );
    let args = add(&["--on-pre-hook-failure", "ignore"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = env.usage_error(&args);
    assert!(err.contains("on_pre_hook_failure: 'ignore'"), "{err}");
    assert!(env.list().is_empty(), "a refused definition was stored");

    let args = add(&[
        "--pre-hook",
        r#"["/usr/local/sbin/pg-backup-start", "--fast"]"#,
        "--hook-timeout",
        "90s",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ok(&args);
    let shown = env.json(&["def", "show", "db"]);
    assert_eq!(
        shown["pre_hook"],
        serde_json::json!(["/usr/local/sbin/pg-backup-start", "--fast"])
    );
    assert_eq!(shown["hook_timeout"], "1m 30s");
    env.ok(&[
        "def",
        "set",
        "db",
        "post_hook=/usr/local/sbin/pg-backup-stop",
        "on_pre_hook_failure=continue",
    ]);
    let shown = env.json(&["def", "show", "db"]);
    assert_eq!(
        shown["post_hook"],
        serde_json::json!(["/usr/local/sbin/pg-backup-stop"])
    );
    assert_eq!(shown["on_pre_hook_failure"], "continue");
    let err = env.usage_error(&["def", "set", "db", "hook_timeout=2h"]);
    assert!(err.contains("hook_timeout: '2h' is out of range"), "{err}");
    env.ok(&["def", "set", "db", "pre_hook=default"]);
    let shown = env.json(&["def", "show", "db"]);
    assert!(shown.get("pre_hook").is_none(), "{shown:#}");
    let text = env.ok(&["def", "show", "db"]);
    assert!(
        text.contains("post_hook    [\"/usr/local/sbin/pg-backup-stop\"]"),
        "{text}"
    );
}

/// The daemon, its log in `daemon-N.log`.
fn spawn_daemon(env: &TestEnv, n: usize) -> Child {
    let log = std::fs::File::create(env.path().join(format!("daemon-{n}.log"))).expect("log");
    env.command(&["daemon"])
        .env(DO_TOKEN.0, DO_TOKEN.1)
        .env(DC1_KEY.0, DC1_KEY.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn snapsched daemon")
}

fn daemon_logs(env: &TestEnv) -> String {
    (0..3)
        .filter_map(|n| std::fs::read_to_string(env.path().join(format!("daemon-{n}.log"))).ok())
        .map(|text| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// A daemon configuration on `fake` whose volume definition fires at
/// `schedule`, with the recorder as pre and post hook.
fn daemon_config(fake: &FakeHandle, hooks: &Hooks, schedule: &str) -> String {
    format!(
        "{}\n[[definitions]]\nname = \"web\"\nprovider = \"do\"\ntarget = \"volume:{VOLUME}\"\n\
         schedule = \"{schedule}\"\nretention = 0\n{}",
        config_with_do_api(fake.url()).replace(
            "[daemon]\n",
            "[daemon]\nshutdown_grace = \"5s\"\ncatch_up_deadline = \"1h\"\nlog_level = \"debug,sqlx=warn\"\n"
        ),
        hooks.toml(&["pre_hook", "post_hook"])
    )
}

/// Wait (bounded) until `done` holds for the recorded order.
fn wait_order(hooks: &Hooks, env: &TestEnv, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let order = hooks.order();
        if done(&order) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: order {order:?}\n{}",
            daemon_logs(env)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_pre_and_post_runs_the_post_hook_once_after_restart() {
    let fake = fake_do().await;
    let env = TestEnv::base();
    let hooks = Hooks::new(&env);
    env.write_config(&daemon_config(&fake, &hooks, "* * * * * *"));
    env.ok(&["config", "apply"]);
    hooks.touch("hold-pre");
    let mut daemon = spawn_daemon(&env, 0);
    hooks.wait_held("pre", &mut daemon, &env);
    daemon.kill().expect("SIGKILL the daemon");
    let status = daemon.wait().expect("reap");
    assert!(
        status.code().is_none(),
        "the daemon exited by itself: {status}"
    );
    assert_eq!(fake.requests(VOLUME_CREATE), 0);
    // The orphaned pre hook may finish now; nothing more fires.
    hooks.remove("hold-pre");
    env.write_config(&daemon_config(&fake, &hooks, "0 0 1 1 *"));

    let mut daemon = spawn_daemon(&env, 1);
    wait_order(
        &hooks,
        &env,
        "the resumed run did not finish its hooks",
        |o| o.len() >= 4,
    );
    let db = crate::support::db::open(&env.db()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = db.history(Some("web"), 100).await.expect("history");
        if !runs.is_empty() && runs.iter().all(|r| r.state.is_final()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{runs:#?}\n{}",
            daemon_logs(&env)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::support::process::signal(&daemon, "-TERM");
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(30)).success(),
        "{}",
        daemon_logs(&env)
    );

    // The killed run's post hook ran once, before the resumed run froze
    // again; then the resumed run's own pair.
    assert_eq!(
        hooks.order(),
        ["pre", "post aborted", "pre", "post succeeded"],
        "{}",
        daemon_logs(&env)
    );
    assert_eq!(fake.requests(VOLUME_CREATE), 1);
    let runs = db.history(Some("web"), 100).await.expect("history");
    let made: Vec<_> = runs
        .iter()
        .filter(|r| r.state.as_str() == "succeeded")
        .collect();
    assert_eq!(made.len(), 1, "{runs:#?}");
    assert_eq!(made[0].hook_state.map(|h| h.as_str()), Some("done"));
    assert_eq!(made[0].consistency.map(|c| c.as_str()), Some("app"));
    assert_no_secret(&hooks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_pre_hook_kills_it_and_still_runs_the_post_hook() {
    let fake = fake_do().await;
    let env = TestEnv::base();
    let hooks = Hooks::new(&env);
    env.write_config(&daemon_config(&fake, &hooks, "* * * * * *"));
    env.ok(&["config", "apply"]);
    hooks.touch("hold-pre");
    let mut daemon = spawn_daemon(&env, 0);
    hooks.wait_held("pre", &mut daemon, &env);
    crate::support::process::signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", daemon_logs(&env));
    assert_eq!(
        hooks.order(),
        ["pre", "post aborted"],
        "{}",
        daemon_logs(&env)
    );
    assert_eq!(fake.requests(VOLUME_CREATE), 0);
    let db = crate::support::db::open(&env.db()).await;
    let runs = db.history(Some("web"), 100).await.expect("history");
    let left: Vec<_> = runs.iter().filter(|r| !r.state.is_final()).collect();
    assert_eq!(left.len(), 1, "the run stays resumable: {runs:#?}");
    assert_eq!(left[0].hook_state.map(|h| h.as_str()), Some("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erigones_post_hook_waits_for_the_snapshot_task_to_finish() {
    use snapsched_fake_api::erigones::{self as fake_es, route, FakeErigonesConfig};
    let es = fake_es::start(FakeErigonesConfig {
        api_key: DC1_KEY.1.to_owned(),
        ..FakeErigonesConfig::default()
    })
    .await
    .expect("fake Erigones");
    es.state.add_vm("db01", 1);
    let env = TestEnv::base();
    let hooks = Hooks::new(&env);
    let config = crate::support::BASE_CONFIG.replace(
        "api_url = \"http://127.0.0.1:9/api\"\n",
        &format!(
            "api_url = \"{}\"\npoll_interval = \"100ms\"\npoll_max_interval = \"200ms\"\n",
            es.base_url
        ),
    );
    assert!(config.contains(&es.base_url));
    env.write_config(&format!(
        "{config}\n[[definitions]]\nname = \"web\"\nprovider = \"dc1\"\ntarget = \"db01\"\n\
         schedule = \"0 3 * * *\"\nretention = 5\n{}",
        hooks.toml(&["pre_hook", "post_hook"])
    ));
    env.ok(&["config", "apply"]);
    let mut child = env
        .command(&["run", "web"])
        .env(DC1_KEY.0, DC1_KEY.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snapsched run");
    // The create task is accepted and being polled, the fake's clock stands
    // still: the snapshot is not taken yet, so the post hook must wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    while es.state.request_count(route::TASK_STATUS) < 3 {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "run ended early"
        );
        assert!(Instant::now() < deadline, "the task was never polled");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(es.state.request_count(route::CREATE_SNAPSHOT), 1);
    assert_eq!(hooks.order(), ["pre"]);
    es.state.advance(Duration::from_secs(60));
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert_eq!(hooks.order(), ["pre", "post succeeded"]);
    let post = hooks.env_of("post", 2);
    assert_eq!(
        post["SNAPSCHED_SNAPSHOT_ID"],
        post["SNAPSCHED_SNAPSHOT_NAME"]
    );
    assert_eq!(post["SNAPSCHED_PROVIDER"], "dc1");
    assert_eq!(last_run(&env)["consistency"], "app");
    assert_no_secret(&hooks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresumable_run_still_gets_the_post_hook_it_owes() {
    let fake = fake_do().await;
    let env = TestEnv::base();
    let hooks = Hooks::new(&env);
    let config = config_with_do_api(fake.url()).replace(
        "[daemon]\n",
        "[daemon]\nshutdown_grace = \"5s\"\nlog_level = \"debug,sqlx=warn\"\n",
    );
    env.write_config(&config);
    let argv = format!(
        r#"["/bin/sh", "{}", "{}"]"#,
        hooks.script.display(),
        hooks.dir.display()
    );
    let target = format!("volume:{VOLUME}");
    env.ok(&[
        "def",
        "add",
        "web",
        "--provider",
        "do",
        "--target",
        &target,
        "--schedule",
        "* * * * * *",
        "--retention",
        "3",
        "--pre-hook",
        &argv,
        "--post-hook",
        &argv,
    ]);
    hooks.touch("hold-pre");
    let mut daemon = spawn_daemon(&env, 0);
    hooks.wait_held("pre", &mut daemon, &env);
    daemon.kill().expect("SIGKILL the daemon");
    daemon.wait().expect("reap");
    hooks.remove("hold-pre");
    env.ok(&["def", "set", "web", "schedule=0 0 1 1 *"]);
    // The provider is gone from the configuration: the run cannot resume.
    let start = config.find("[providers.do]").expect("do section");
    let end = config.find("[providers.dc1]").expect("dc1 section");
    env.write_config(&format!("{}{}", &config[..start], &config[end..]));

    let mut daemon = spawn_daemon(&env, 1);
    let db = crate::support::db::open(&env.db()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs = db.history(Some("web"), 100).await.expect("history");
        if let Some(r) = runs.iter().find(|r| r.state.as_str() == "interrupted") {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{runs:#?}\n{}",
            daemon_logs(&env)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    crate::support::process::signal(&daemon, "-TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    assert_eq!(
        hooks.order(),
        ["pre", "post aborted"],
        "{}",
        daemon_logs(&env)
    );
    assert_eq!(run.hook_state.map(|h| h.as_str()), Some("done"));
    assert_eq!(fake.requests(VOLUME_CREATE), 0);
}
