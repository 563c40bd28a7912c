//! Fake DigitalOcean API v2 (placeholder).
