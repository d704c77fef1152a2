//! Lambda entry point of `device-auth`: telemetry, the application state once per cold start, then serve.

// One thread: Lambda hands an execution environment one request at a time, so worker threads would
// only add to every cold start (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    keyward::telemetry::init();
    let state = keyward::app::AppState::from_env_or_exit();
    lambda_http::run(keyward::app::service(state, device_auth::handle)).await
}
