//! `def rm --delete-snapshots` asks on a terminal: the binary runs on a
//! pseudo-terminal (tests/tools/pty_answer.py) against the fake DigitalOcean
//! API, and only a "y" deletes anything.

use std::process::Command;

use crate::support::fake::{volume_web, DO_TOKEN as TOKEN};
use crate::support::process::{bin, outcome};
use crate::support::TestEnv;

/// `def rm web --delete-snapshots` on a terminal, answering `answer`.
fn rm_answering(env: &TestEnv, answer: &str) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/pty_answer.py");
    let (code, out, err) = outcome(
        Command::new("python3")
            .arg(script)
            .args(["[y/N]", answer, "--"])
            .arg(bin())
            .arg("--config")
            .arg(&env.config)
            .args(["def", "rm", "web", "--delete-snapshots"])
            .env(TOKEN.0, TOKEN.1)
            .env("NO_COLOR", "1")
            .output()
            .expect("python3 runs"),
    );
    assert!(!err.contains("pty_answer: timed out"), "{err}\n{out}");
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_yes_at_the_terminal_prompt_deletes_snapshots() {
    let (fake, env) = volume_web().await;
    let env_ref = &env;
    tokio::task::block_in_place(|| {
        let (code, _, err) = env_ref.run_env(&["run", "web", "--wait"], &[TOKEN]);
        assert_eq!(code, 0, "{err}");
    });
    assert_eq!(fake.snapshots().len(), 1);

    for no in ["n", ""] {
        let (code, out) = tokio::task::block_in_place(|| rm_answering(env_ref, no));
        assert_eq!(code, 2, "answer {no:?}: {out}");
        assert!(
            out.contains("Delete every snapshot of")
                && out.contains("not confirmed; nothing was deleted"),
            "answer {no:?}: {out}"
        );
        assert_eq!(
            fake.snapshots().len(),
            1,
            "answer {no:?} deleted a snapshot"
        );
        assert_eq!(tokio::task::block_in_place(|| env_ref.list()).len(), 1);
    }

    let (code, out) = tokio::task::block_in_place(|| rm_answering(env_ref, "y"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("removed"), "{out}");
    assert!(fake.snapshots().is_empty(), "{:?}", fake.snapshots());
    assert!(tokio::task::block_in_place(|| env_ref.list()).is_empty());
}
