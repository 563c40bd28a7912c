//! Stateful fake DigitalOcean and Erigones APIs for snapsched's tests and
//! its no-account demo. They listen on loopback only.

pub mod digitalocean;
pub mod erigones;
