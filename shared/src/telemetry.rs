//! Structured JSON logs: one line per event, with the Lambda request id and the route of the
//! request being served on every line logged inside [`request_span`].

use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter from `RUST_LOG` (finest control) or `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging
/// controls), else `info`.
pub fn filter_from_env() -> EnvFilter {
    let directive = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|level| lambda_level(&level).to_owned()))
        .unwrap_or_else(|| "info".to_owned());
    EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Lambda's level names (TRACE…FATAL) as tracing directives.
fn lambda_level(level: &str) -> &'static str {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    }
}

/// Installs the JSON subscriber for the process; call once, first thing in `main`.
pub fn init() {
    install(std::io::stdout, filter_from_env());
}

/// Installs the JSON subscriber writing to `writer` (tests capture logs this way).
pub fn install<W>(writer: W, filter: EnvFilter)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .try_init();
}

/// The span every request is served in: its fields appear on each log line of the request.
/// `route` is API Gateway's route template (`PUT /me/llm-keys/{provider}`), never a raw path,
/// so no user id or token reaches the log through it.
pub fn request_span(request_id: &str, route: &str) -> Span {
    tracing::info_span!("request", request_id = %request_id, route = %route)
}

#[cfg(test)]
mod tests {
    use super::lambda_level;

    #[test]
    fn lambda_levels_map_to_tracing() {
        assert_eq!(lambda_level("TRACE"), "trace");
        assert_eq!(lambda_level("fatal"), "error");
        assert_eq!(lambda_level("nonsense"), "info");
    }
}
