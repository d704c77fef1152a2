//! Every log line written while a request is served is JSON and carries the request id and the route.

use std::sync::Arc;

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::config::Config;
use keyward_tests::LogCapture;
use lambda_http::Service;
use serde_json::Value;

async fn noisy() -> Answer {
    // keyward's own target: a test crate's would be capped at INFO like any third party's.
    tracing::debug!(target: "keyward_tests", "looking things up");
    tracing::info!(target: "keyward_tests", provider = "openai", "validated");
    tracing::warn!(target: "keyward_tests", "provider slow");
    Err(keyward::http::ApiError::Internal("simulated".into()))
}

#[tokio::test]
async fn every_line_of_a_request_has_its_id_and_route() {
    let capture = LogCapture::default();
    let _logs = keyward_tests::leaks::capture_logs(&capture, "debug");

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let config = Config::from_lookup(|k| (k == "KEYWARD_DATA_DIR").then(|| data_dir.clone())).unwrap();
    let state = Arc::new(AppState::with_aws(config, None).unwrap());
    let event =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/llm-keys/health.json")).unwrap();
    let request_id = serde_json::from_str::<Value>(&event).unwrap()["requestContext"]["requestId"].clone();
    let request = lambda_http::request::from_str(&event).unwrap();

    capture.clear();
    let routes = Routes::new("telemetry").public("GET /health/llm-keys", |_, _| Box::pin(noisy()));
    let mut service = keyward::app::service(state, Arc::new(routes));
    let response = service.call(request).await.unwrap();
    assert_eq!(response.status(), 500);

    let logs = capture.text();
    let lines: Vec<Value> = logs.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    // debug, info, warn, the internal error's own line, and the wrapper's "served" line.
    assert!(lines.len() >= 5, "{logs}");
    for line in &lines {
        assert_eq!(line["span"]["request_id"], request_id, "{line}");
        assert_eq!(line["span"]["route"], "GET /health/llm-keys", "{line}");
    }
    let served = lines.iter().find(|l| l["message"] == "served").expect("a served line");
    assert_eq!(served["status"], 500);
    assert!(lines.iter().any(|l| l["level"] == "ERROR" && l["reason"] == "simulated"));
}
