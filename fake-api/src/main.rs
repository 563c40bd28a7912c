//! `snapsched-fake-api digitalocean|erigones`: run a fake API standalone.

fn main() {}
