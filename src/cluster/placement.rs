//! Which live node should claim a definition's slot.
//!
//! Every node schedules every definition; the unique (identity, slot) row
//! decides who runs it. Left at that, the fastest node would claim almost
//! everything. Rendezvous (highest-random-weight) hashing names one preferred
//! node per definition among the live ones: it claims at the slot, the others
//! only after a grace period, when the preferred node may be dead. When a
//! node joins or leaves, only the definitions it wins or held move.
//!
//! The hash is the one `H` schedule fields use (FNV-1a and a SplitMix64
//! finaliser, spelled out), so nodes built by different Rust releases agree.

use crate::domain::schedule::hash::{fnv1a, splitmix64};

/// The preferred node for `key` among `nodes` (node ids), or `None` when the
/// list is empty.
pub fn preferred<'a>(key: &str, nodes: &'a [String]) -> Option<&'a str> {
    let key_hash = fnv1a(key.as_bytes());
    nodes
        .iter()
        .max_by_key(|node| (splitmix64(key_hash ^ fnv1a(node.as_bytes())), node.as_str()))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn no_nodes_no_preference() {
        assert_eq!(preferred("web/1", &[]), None);
    }

    #[test]
    fn the_choice_does_not_depend_on_list_order() {
        let mut list = nodes(5);
        let before: Vec<_> = (0..200)
            .map(|i| preferred(&format!("def-{i}"), &list).map(str::to_owned))
            .collect();
        list.reverse();
        let after: Vec<_> = (0..200)
            .map(|i| preferred(&format!("def-{i}"), &list).map(str::to_owned))
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn keys_spread_evenly_over_three_nodes() {
        let list = nodes(3);
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            let p = preferred(&format!("do/droplet:{i}/1/daily"), &list).expect("a node");
            counts[list.iter().position(|n| n == p).expect("listed")] += 1;
        }
        for c in counts {
            assert!((9_000..=11_000).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_keys() {
        let all = nodes(4);
        let without: Vec<String> = all.iter().filter(|n| *n != "node-2").cloned().collect();
        for i in 0..5_000 {
            let key = format!("k{i}");
            let before = preferred(&key, &all).expect("a node");
            let after = preferred(&key, &without).expect("a node");
            if before != "node-2" {
                assert_eq!(before, after, "key {key} moved although its node stayed");
            }
        }
    }
}
