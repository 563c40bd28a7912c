//! Every command's `--json` has exactly the keys docs/json.md lists for it:
//! the page is the contract scripts rely on, and this keeps it true.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::fake::add_web;
use crate::support::TestEnv;

/// The documented key sets, by the name after "```keys".
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let page = include_str!("../../docs/json.md");
    let mut out = BTreeMap::new();
    let mut rest = page;
    while let Some(at) = rest.find("```keys ") {
        let block = &rest[at + 8..];
        let (name, body) = block.split_once('\n').expect("a block name line");
        let end = body.find("```").expect("the block ends");
        let keys = body[..end].split_whitespace().map(str::to_owned).collect();
        out.insert(name.trim().to_owned(), keys);
        rest = &body[end..];
    }
    out
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// The first element of an array (which must not be empty), or the value.
fn first(v: &Value) -> &Value {
    match v {
        Value::Array(items) => items.first().unwrap_or_else(|| panic!("empty array")),
        other => other,
    }
}

#[test]
fn every_commands_json_has_the_documented_keys() {
    let docs = documented();
    let env = TestEnv::base();
    add_web(&env, "fake", "vm1");
    let run = env.json(&["run", "web", "--wait"]);
    let outputs: Vec<(&str, Value)> = vec![
        ("def show", env.json(&["def", "show", "web"])),
        ("def show", env.json(&["def", "list"])),
        ("history", run),
        ("history", env.json(&["history"])),
        ("status", env.json(&["status"])),
        ("snapshots", env.json(&["snapshots", "web"])),
        ("nodes", env.json(&["nodes"])),
        ("prune", env.json(&["prune", "web", "--dry-run"])),
    ];
    let (_, check, _) = env.run(&["check", "--json"]);
    let check: Value = serde_json::from_str(&check).expect("check --json");
    let mut checked = BTreeSet::new();
    for (name, value) in outputs.iter().chain([("check", check)].iter()) {
        let want = docs
            .get(*name)
            .unwrap_or_else(|| panic!("docs/json.md has no `keys {name}` block"));
        let got = keys(first(value));
        assert_eq!(
            &got,
            want,
            "`{name}` JSON differs from docs/json.md: undocumented {:?}, missing {:?}",
            got.difference(want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        );
        checked.insert(name.to_string());
    }
    let documented: BTreeSet<String> = docs.keys().cloned().collect();
    assert_eq!(checked, documented, "a documented shape is not checked");
}
