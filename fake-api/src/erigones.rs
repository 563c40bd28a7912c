//! Fake Erigones API (placeholder).
