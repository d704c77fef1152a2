//! Every file in `events/` is a real-shaped API Gateway HTTP API (v2) event for one route (or a
//! Stripe event payload), and `events/catalog.json` documents the status each gets. This feeds
//! them, in the catalog's order, to their functions in-process on one local-mode state, with a
//! sandbox access token where an event says `REPLACE_WITH_ACCESS_TOKEN`, and Stripe payloads signed
//! afresh.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use keyward_tests::api::{Backend, LocalApi};
use keyward_tests::sign_in::ADA;
use lambda_http::Body;
use serde::Deserialize;
use serde_json::Value;

/// The local sandbox's Stripe endpoint secret, so `stripe-webhook/webhook.json` fails only for age.
const SANDBOX_WEBHOOK_SECRET: &str = "whsec_keyward_sandbox_0123456789abcdef";
const TOKEN_PLACEHOLDER: &str = "REPLACE_WITH_ACCESS_TOKEN";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Documented {
    event: String,
    status: u16,
    /// The content type when it is not the usual one (JSON, or problem+json for errors).
    content_type: Option<String>,
}

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// Every `.json` file under `events/`, relative, except the catalog itself.
fn event_files(dir: &Path, prefix: &str, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            event_files(&path, &format!("{prefix}{name}/"), found);
        } else if name.ends_with(".json") && !(prefix.is_empty() && name == "catalog.json") {
            found.insert(format!("{prefix}{name}"));
        }
    }
}

fn catalog() -> Vec<Documented> {
    serde_json::from_str(&std::fs::read_to_string(events_dir().join("catalog.json")).unwrap()).unwrap()
}

fn read_event(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(events_dir().join(name)).unwrap()).unwrap()
}

/// The webhook route's event carrying `payload`, signed now with the sandbox secret.
fn signed_delivery(payload: &str) -> Value {
    let mut event = read_event("stripe-webhook/webhook.json");
    let t = keyward_tests::stripe::now();
    event["headers"]["stripe-signature"] =
        format!("t={t},v1={}", keyward_tests::stripe::v1(SANDBOX_WEBHOOK_SECRET, t, payload.as_bytes())).into();
    event["headers"]["content-length"] = payload.len().to_string().into();
    event["body"] = payload.into();
    event
}

#[test]
fn every_event_file_is_documented_once() {
    let mut files = BTreeSet::new();
    event_files(&events_dir(), "", &mut files);
    let documented: Vec<String> = catalog().into_iter().map(|d| d.event).collect();
    let unique: BTreeSet<String> = documented.iter().cloned().collect();
    assert_eq!(unique.len(), documented.len(), "an event is documented twice");
    assert_eq!(unique, files, "events/catalog.json and the files in events/ differ");
}

/// One event per route of `template.yaml`, in the folder of the function that serves it.
#[test]
fn every_route_has_its_event() {
    let template = std::fs::read_to_string(keyward_local::default_template_path()).unwrap();
    let routes = keyward_local::template::RouteTable::from_template(&template).unwrap();
    let mut uncovered: BTreeSet<String> = routes.routes().iter().map(|r| r.key()).collect();
    for documented in catalog().iter().filter(|d| !d.event.starts_with("stripe/")) {
        let event = read_event(&documented.event);
        let key = event["routeKey"].as_str().unwrap();
        let route = routes.routes().iter().find(|r| r.key() == key).unwrap_or_else(|| panic!("{key}: no such route"));
        assert!(
            documented.event.starts_with(&format!("{}/", route.function)),
            "{} is not {key}'s function",
            documented.event
        );
        assert_eq!(event["requestContext"]["routeKey"], key, "{}", documented.event);
        assert_eq!(route.iam, event["requestContext"]["authorizer"]["iam"].is_object(), "{}", documented.event);
        uncovered.remove(key);
    }
    assert!(uncovered.is_empty(), "routes without a sample event: {uncovered:?}");
}

#[tokio::test]
async fn every_event_gets_its_documented_status() {
    let api =
        LocalApi::start_with(Backend::Embedded, &[("KEYWARD_STRIPE_WEBHOOK_SECRET", SANDBOX_WEBHOOK_SECRET)]).await;
    let token = api.user_token(ADA).await;
    let functions = keyward_local::functions(&api.state);
    for documented in catalog() {
        let (function, event) = match documented.event.strip_prefix("stripe/") {
            Some(_) => {
                let payload = std::fs::read_to_string(events_dir().join(&documented.event)).unwrap();
                ("stripe-webhook", signed_delivery(&payload))
            }
            None => {
                let text = std::fs::read_to_string(events_dir().join(&documented.event)).unwrap();
                let function = documented.event.split('/').next().unwrap();
                (function, serde_json::from_str(&text.replace(TOKEN_PLACEHOLDER, &token)).unwrap())
            }
        };
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = functions[function](request).await;
        let body = match response.body() {
            Body::Text(text) => text.clone(),
            Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => String::new(),
        };
        assert_eq!(response.status(), documented.status, "{}: {body}", documented.event);
        let usual = if response.status().is_client_error() { "application/problem+json" } else { "application/json" };
        if !body.is_empty() {
            let expected = documented.content_type.as_deref().unwrap_or(usual);
            assert_eq!(response.headers()["content-type"], expected, "{}", documented.event);
        }
    }
}
