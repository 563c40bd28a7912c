//! Who may open a SQLite store from the CLI.
//!
//! The service runs as its own user and owns its store. Root could open it
//! for writing, but SQLite would then create the `-wal` and `-shm` files as
//! root, and the service, which may not open them, would fail at its next
//! start. So a CLI command that changes the store, run as root on a store
//! that belongs to another user, is refused with the command to run
//! instead. Read commands open the store read-only, create nothing, and are
//! not checked.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Uid, User};

use super::{CliError, CliResult};

/// Refuse to open the SQLite store at `path` as root when another user owns
/// it (see the module documentation). A store that does not exist yet, or a
/// directory we may not look into, passes: opening it gives its own error.
pub fn check(path: &Path) -> CliResult {
    check_as(path, Uid::effective())
}

fn check_as(path: &Path, me: Uid) -> CliResult {
    // The directory decides: it is where SQLite creates the journal files.
    let Some(meta) = path
        .symlink_metadata()
        .ok()
        .or_else(|| path.parent().and_then(|d| d.metadata().ok()))
    else {
        return Ok(());
    };
    let owner = Uid::from_raw(meta.uid());
    if !me.is_root() || owner.is_root() || owner == me {
        return Ok(());
    }
    let who = match User::from_uid(owner) {
        Ok(Some(user)) => user.name,
        _ => format!("#{owner}"),
    };
    Err(CliError::usage(format!(
        "the store {} belongs to user {who} (uid {owner}), the service's user; as root this command would leave files there the service cannot open. Run it as that user: sudo -u {who} snapsched … (or pass --database for another store)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::chown;

    #[test]
    fn root_is_refused_on_another_users_store_and_told_whose_it_is() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("snapsched.db");
        std::fs::write(&db, b"").unwrap();
        let mine = Uid::from_raw(dir.path().metadata().unwrap().uid());
        // Owned by the caller: fine, as root or not.
        check_as(&db, mine).expect("own store");
        if !Uid::effective().is_root() {
            // Only root can hand the file to another user; the refusal
            // itself is a pure decision, so check it on the metadata we have.
            let err = check_as(&db, Uid::from_raw(0)).map(|()| "accepted");
            assert_eq!(mine.is_root(), err.is_ok(), "{err:?}");
            return;
        }
        chown(&db, Some(65534), None).unwrap();
        let err = check_as(&db, Uid::from_raw(0)).expect_err("root on nobody's store");
        let msg = err.to_string();
        assert!(
            msg.contains("sudo -u") && msg.contains("uid 65534"),
            "{msg}"
        );
        assert!(msg.contains(&db.display().to_string()), "{msg}");
        // Not root: no refusal here (the open itself says permission denied).
        check_as(&db, Uid::from_raw(1000)).expect("not root");
        // A store not created yet is judged by its directory.
        let fresh = dir.path().join("new.db");
        check_as(&fresh, Uid::from_raw(0)).expect("directory is root's");
        chown(dir.path(), Some(65534), None).unwrap();
        check_as(&fresh, Uid::from_raw(0)).expect_err("directory is nobody's");
    }
}
