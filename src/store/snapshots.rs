//! Snapshot records (filled in with retention).
