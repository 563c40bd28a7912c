//! Checks JSON bodies and query strings against DigitalOcean's OpenAPI
//! subset (`fake-api/spec/`).
//!
//! OpenAPI 3.0 schemas are not quite JSON Schema (`nullable`,
//! `discriminator`), so this is a small validator for exactly the keywords
//! the subset uses: `type`, `nullable`, `properties`, `required`, `items`,
//! `allOf`, `anyOf`, `oneOf`, `enum`, `format` (date-time, uuid),
//! `minimum`, `maximum`, `maxLength`. `pattern` and `multipleOf` are not
//! checked. A `oneOf` with a `discriminator` needs one alternative that
//! declares every property of the value, not exactly one that fits
//! (the discriminator's mapping names files the inlined subset lacks).
//!
//! It is stricter than the spec in one way, on purpose: an object may only
//! carry properties that its schema declares (unless a branch of the schema
//! is unconstrained), so neither side can invent fields.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;

static SPEC_TEXT: &str = include_str!("../../spec/digitalocean-openapi-subset.json");

/// The parsed specification.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(SPEC_TEXT).unwrap_or(Value::Null))
}

fn operation(method: &str, path: &str) -> Result<&'static Value, String> {
    spec()
        .get("paths")
        .and_then(|p| p.get(path))
        .and_then(|p| p.get(method.to_ascii_lowercase()))
        .ok_or_else(|| format!("{method} {path} is not in the DigitalOcean API specification"))
}

/// Problems with a request to `path` (an OpenAPI path template).
pub fn check_request(method: &str, path: &str, query: &str, body: Option<&Value>) -> Vec<String> {
    let mut errs = Vec::new();
    let op = match operation(method, path) {
        Ok(op) => op,
        Err(e) => return vec![e],
    };
    let params = op
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(param) = params.iter().find(|p| {
            p.get("in") == Some(&Value::from("query")) && p.get("name") == Some(&Value::from(k))
        }) else {
            errs.push(format!(
                "{method} {path}: query parameter {k} is not in the specification"
            ));
            continue;
        };
        let schema = param.get("schema").cloned().unwrap_or(Value::Null);
        let value = match schema.get("type").and_then(Value::as_str) {
            Some("integer") | Some("number") => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v)),
            Some("boolean") => v
                .parse::<bool>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v)),
            _ => Value::from(v),
        };
        check(&schema, &value, &format!("{method} {path}?{k}"), &mut errs);
    }
    let req_body = op.get("requestBody");
    let schema = req_body.and_then(|b| b.pointer("/content/application~1json/schema"));
    match (schema, body) {
        (Some(s), Some(b)) => check(s, b, &format!("{method} {path} request"), &mut errs),
        (Some(_), None) if req_body.and_then(|b| b.get("required")) == Some(&Value::Bool(true)) => {
            errs.push(format!("{method} {path}: request body is required"))
        }
        (None, Some(b)) if !b.is_null() => errs.push(format!(
            "{method} {path}: the specification takes no request body"
        )),
        _ => {}
    }
    errs
}

/// Problems with a response of `status` to a request to `path`.
pub fn check_response(method: &str, path: &str, status: u16, body: Option<&Value>) -> Vec<String> {
    let mut errs = Vec::new();
    let op = match operation(method, path) {
        Ok(op) => op,
        Err(e) => return vec![e],
    };
    let Some(resp) = op
        .get("responses")
        .and_then(|r| r.get(status.to_string()).or_else(|| r.get("default")))
    else {
        return vec![format!(
            "{method} {path}: status {status} is not in the specification"
        )];
    };
    let schema = resp.pointer("/content/application~1json/schema");
    let at = format!("{method} {path} {status} response");
    match (schema, body) {
        (Some(s), Some(b)) => check(s, b, &at, &mut errs),
        (Some(_), None) => errs.push(format!("{at}: a JSON body is required")),
        (None, Some(_)) => errs.push(format!("{at}: the specification has no body here")),
        (None, None) => {}
    }
    errs
}

/// Validate `v` against `schema`, appending problems (each prefixed with
/// the JSON path) to `errs`.
pub fn check(schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    check_inner(schema, v, at, errs, true);
}

fn check_inner(schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>, strict_here: bool) {
    let Some(s) = schema.as_object() else { return };
    if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            errs.push(format!("{at}: expected {t}, got {}", kind(v)));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!(
                "{at}: {v} is not one of {}",
                Value::from(e.clone())
            ));
        }
    }
    if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
        let ok = match f {
            "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            _ => true,
        };
        if !ok {
            errs.push(format!("{at}: {text:?} is not a valid {f}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errs.push(format!("{at}: {n} is below the minimum {min}"));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errs.push(format!("{at}: {n} is above the maximum {max}"));
            }
        }
    }
    if let (Some(max), Some(text)) = (s.get("maxLength").and_then(Value::as_u64), v.as_str()) {
        if text.chars().count() as u64 > max {
            errs.push(format!("{at}: longer than {max} characters"));
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                if let Some(x) = obj.get(k) {
                    check_inner(sub, x, &format!("{at}.{k}"), errs, true);
                }
            }
        }
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    errs.push(format!("{at}: missing required property {k}"));
                }
            }
        }
        if strict_here {
            if let Some(declared) = declared_properties(schema) {
                for k in obj.keys() {
                    if !declared.contains(k.as_str()) {
                        errs.push(format!("{at}: property {k} is not in the specification"));
                    }
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check_inner(items, x, &format!("{at}[{i}]"), errs, true);
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check_inner(sub, v, at, errs, false);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let passing = any.iter().filter(|sub| passes(sub, v, at)).count();
        if passing == 0 {
            errs.push(format!("{at}: matches none of the anyOf alternatives"));
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let passing = one.iter().filter(|sub| passes(sub, v, at)).count();
        if s.contains_key("discriminator") {
            // The discriminator picks the branch, so several may fit. Its
            // mapping names files the inlined subset no longer has, so the
            // value must fit some branch exactly instead: every property
            // it carries declared there.
            if !one.iter().any(|sub| fits_exactly(sub, v, at)) {
                errs.push(format!("{at}: fits none of the oneOf alternatives exactly"));
            }
        } else if passing != 1 {
            errs.push(format!(
                "{at}: matches {passing} of the oneOf alternatives, not exactly one"
            ));
        }
    }
}

fn fits_exactly(schema: &Value, v: &Value, at: &str) -> bool {
    let mut e = Vec::new();
    check_inner(schema, v, at, &mut e, true);
    e.is_empty()
}

fn passes(schema: &Value, v: &Value, at: &str) -> bool {
    let mut e = Vec::new();
    check_inner(schema, v, at, &mut e, false);
    e.is_empty()
}

/// Property names a schema declares at its top level, through `allOf`,
/// `anyOf` and `oneOf`; `None` when some branch allows anything.
fn declared_properties(schema: &Value) -> Option<BTreeSet<&str>> {
    let s = schema.as_object()?;
    let mut out = BTreeSet::new();
    let mut constrained = false;
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        constrained = true;
        out.extend(props.keys().map(String::as_str));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            for b in branches {
                let only_required = b
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "required"));
                if only_required {
                    continue;
                }
                out.extend(declared_properties(b)?);
                constrained = true;
            }
        }
    }
    constrained.then_some(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_parses_and_has_the_paths_we_use() {
        for (m, p) in [
            ("post", "/v2/droplets/{droplet_id}/actions"),
            ("get", "/v2/actions/{action_id}"),
            ("get", "/v2/actions"),
            ("get", "/v2/droplets/{droplet_id}/snapshots"),
            ("post", "/v2/volumes/{volume_id}/snapshots"),
            ("get", "/v2/volumes/{volume_id}/snapshots"),
            ("delete", "/v2/snapshots/{snapshot_id}"),
            ("post", "/v2/tags/{tag_id}/resources"),
            ("delete", "/v2/tags/{tag_id}/resources"),
            ("post", "/v2/tags"),
            ("get", "/v2/droplets"),
            ("post", "/v2/droplets/actions"),
            ("get", "/v2/images/{image_id}"),
            ("post", "/v2/images/{image_id}/actions"),
            ("get", "/v2/images/{image_id}/actions"),
            ("get", "/v2/images/{image_id}/actions/{action_id}"),
        ] {
            assert!(operation(m, p).is_ok(), "{m} {p}");
        }
    }

    #[test]
    fn volume_snapshot_request_needs_a_name_and_no_stray_fields() {
        let p = "/v2/volumes/{volume_id}/snapshots";
        assert!(
            check_request("POST", p, "", Some(&json!({"name": "a", "tags": ["x"]}))).is_empty()
        );
        assert!(check_request("POST", p, "", Some(&json!({"name": "a", "tags": null}))).is_empty());
        assert!(!check_request("POST", p, "", Some(&json!({"tags": []}))).is_empty());
        assert!(!check_request("POST", p, "", Some(&json!({"name": 5}))).is_empty());
        assert!(
            !check_request("POST", p, "", Some(&json!({"name": "a", "colour": "red"}))).is_empty()
        );
        assert!(!check_request("POST", p, "", None).is_empty());
    }

    #[test]
    fn query_parameters_are_checked() {
        let p = "/v2/droplets/{droplet_id}/snapshots";
        assert!(check_request("GET", p, "per_page=200&page=3", None).is_empty());
        assert!(!check_request("GET", p, "per_page=500", None).is_empty());
        assert!(!check_request("GET", p, "perpage=5", None).is_empty());
    }

    #[test]
    fn droplet_snapshot_listing_is_checked() {
        let p = "/v2/droplets/{droplet_id}/snapshots";
        let good = json!({
            "snapshots": [{"id": 7, "name": "n", "created_at": "2020-07-28T16:47:44Z",
                "regions": ["nyc3"], "min_disk_size": 25, "size_gigabytes": 2.34, "type": "snapshot"}],
            "links": {"pages": {"next": "x", "last": "y"}},
            "meta": {"total": 1}
        });
        assert_eq!(
            check_response("GET", p, 200, Some(&good)),
            Vec::<String>::new()
        );
        let mut string_id = good.clone();
        string_id["snapshots"][0]["id"] = json!("7");
        assert!(!check_response("GET", p, 200, Some(&string_id)).is_empty());
        let mut no_meta = good.clone();
        no_meta.as_object_mut().unwrap().remove("meta");
        assert!(!check_response("GET", p, 200, Some(&no_meta)).is_empty());
        let mut bad_time = good;
        bad_time["snapshots"][0]["created_at"] = json!("yesterday");
        assert!(!check_response("GET", p, 200, Some(&bad_time)).is_empty());
    }

    #[test]
    fn the_account_actions_listing_is_checked() {
        let p = "/v2/actions";
        assert!(check_request("GET", p, "per_page=200", None).is_empty());
        assert!(!check_request("GET", p, "per_page=201", None).is_empty());
        let good = json!({
            "actions": [{"id": 7, "status": "in-progress", "type": "snapshot",
                "started_at": "2020-07-28T16:47:44Z", "completed_at": null,
                "resource_id": 3, "resource_type": "droplet", "region_slug": "nyc3"}],
            "links": {"pages": {"next": "x", "last": "y"}},
            "meta": {"total": 1}
        });
        assert_eq!(
            check_response("GET", p, 200, Some(&good)),
            Vec::<String>::new()
        );
        let mut bad_status = good.clone();
        bad_status["actions"][0]["status"] = json!("running");
        assert!(!check_response("GET", p, 200, Some(&bad_status)).is_empty());
        let mut no_meta = good;
        no_meta.as_object_mut().unwrap().remove("meta");
        assert!(!check_response("GET", p, 200, Some(&no_meta)).is_empty());
    }

    #[test]
    fn error_bodies_and_unlisted_statuses_fall_back_to_default() {
        let p = "/v2/actions/{action_id}";
        assert!(check_response(
            "GET",
            p,
            404,
            Some(&json!({"id": "not_found", "message": "m"}))
        )
        .is_empty());
        assert!(check_response(
            "GET",
            p,
            503,
            Some(&json!({"id": "x", "message": "m", "request_id": "r"}))
        )
        .is_empty());
        assert!(!check_response("GET", p, 404, Some(&json!({"message": "m"}))).is_empty());
        assert!(!check_response(
            "DELETE",
            "/v2/snapshots/{snapshot_id}",
            204,
            Some(&json!({}))
        )
        .is_empty());
    }
    #[test]
    fn the_tag_action_request_is_checked_through_its_discriminator() {
        let p = "/v2/droplets/actions";
        let snapshot = json!({"type": "snapshot", "name": "web-1"});
        assert_eq!(
            check_request("POST", p, "tag_name=web", Some(&snapshot)),
            Vec::<String>::new()
        );
        assert!(check_request(
            "POST",
            p,
            "tag_name=web",
            Some(&json!({"type": "power_on"}))
        )
        .is_empty());
        assert!(!check_request(
            "POST",
            p,
            "tag_name=web",
            Some(&json!({"type": "snapshot", "colour": 1}))
        )
        .is_empty());
        assert!(
            !check_request("POST", p, "tag_name=web", Some(&json!({"type": "explode"}))).is_empty()
        );
        assert!(!check_request("POST", p, "tag_name=web", Some(&json!({"name": "x"}))).is_empty());
        assert!(!check_request("POST", p, "tags=web", Some(&snapshot)).is_empty());
        let answer = json!({"actions": [{"id": 7, "status": "in-progress", "type": "snapshot",
            "started_at": "2020-07-28T16:47:44Z", "completed_at": null,
            "resource_id": 3, "resource_type": "droplet", "region_slug": "nyc3"}]});
        assert_eq!(
            check_response("POST", p, 201, Some(&answer)),
            Vec::<String>::new()
        );
        let mut bad = answer;
        bad["actions"][0]["resource_id"] = json!("3");
        assert!(!check_response("POST", p, 201, Some(&bad)).is_empty());
    }

    #[test]
    fn the_droplet_listing_needs_every_required_droplet_property() {
        let p = "/v2/droplets";
        assert!(check_request("GET", p, "tag_name=web&per_page=200&page=2", None).is_empty());
        assert!(!check_request("GET", p, "tag=web", None).is_empty());
        let answer =
            json!({"droplets": [{"id": 3, "name": "web-01"}], "links": {}, "meta": {"total": 1}});
        let errs = check_response("GET", p, 200, Some(&answer));
        assert!(
            errs.iter()
                .any(|e| e.contains("missing required property snapshot_ids")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("missing required property tags")),
            "{errs:#?}"
        );
    }
}
