//! A full disk under a SQLite store: writes fail while it is full and work
//! again once space returns, with no connection left unusable. Needs a
//! small tmpfs, so it runs only where `mount` works (as root); elsewhere,
//! and on the PostgreSQL pass, it says so and passes.

use std::path::Path;
use std::process::Command;

use chrono::{Duration, Utc};
use snapsched::domain::definition::Source;
use snapsched::domain::{Claim, Trigger};
use snapsched::store::Backend;

use crate::support::{db, fixtures};

/// A tmpfs of `size` mounted on `dir` for the guard's lifetime.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// Fill the file system of `path` until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_work_again_once_a_full_disk_has_space() {
    if db::backend() != Backend::Sqlite {
        eprintln!(
            "disk_full: skipped on {:?} (a SQLite file test)",
            db::backend()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let Some(_mnt) = Tmpfs::mount(dir.path(), "4m") else {
        eprintln!("disk_full: skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let store = db::open(&dir.path().join("s.db")).await;
    let spec = fixtures::spec("fake", "web01", "web").build();
    store
        .insert_definition(&spec, Source::Cli, None, Utc::now())
        .await
        .expect("definition");
    let filler = dir.path().join("filler");
    fill(&filler);
    let base = Utc::now();
    let mut failed = 0;
    let mut first_error = String::new();
    for i in 0..200 {
        // Each claim writes a row; with the disk full, the store refuses.
        let slot = base + Duration::seconds(i);
        match store
            .claim_run(&spec.identity, slot, Trigger::Schedule, slot)
            .await
        {
            Ok(Claim::Claimed(run)) => {
                // Keep the definition free for the next claim.
                let _ = store
                    .update_run(
                        &run,
                        snapsched::store::runs::Update {
                            state: Some(snapsched::domain::RunState::Failed),
                            ..Default::default()
                        },
                        slot,
                    )
                    .await;
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                failed += 1;
                if first_error.is_empty() {
                    first_error = e.to_string();
                }
            }
        }
    }
    assert!(failed > 0, "the full disk refused nothing");
    assert!(first_error.contains("full"), "{first_error}");

    std::fs::remove_file(&filler).expect("space returns");
    let slot = base + Duration::hours(1);
    let mut last = None;
    for _ in 0..8 {
        match store
            .claim_run(&spec.identity, slot, Trigger::Schedule, slot)
            .await
        {
            Ok(claim) => {
                last = None;
                assert!(matches!(claim, Claim::Claimed(_)), "{claim:?}");
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    assert!(
        last.is_none(),
        "the store stays unwritable after space returned: {last:?}"
    );
    store.close().await;
}
