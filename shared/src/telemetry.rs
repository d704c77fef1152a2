//! Structured JSON logs: one line per event, with the Lambda request id and the route of the
//! request being served on every line logged inside [`request_span`].

use tracing::Span;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// The filter from `RUST_LOG` (finest control) or `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging
/// controls), read through `lookup`, else `info`.
///
/// `RUST_LOG` takes `target=level` directives (`warn,keyward=debug`), not `EnvFilter`'s span and
/// field matchers: those bring a regex engine, the largest piece of the logging code in every
/// binary, for filters a Lambda function's logs have no use for (BENCHMARKS.md). A directive that
/// does not parse leaves the level at `info`.
fn filter_from(lookup: impl Fn(&str) -> Option<String>) -> Targets {
    let directive = lookup("RUST_LOG")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| lookup("AWS_LAMBDA_LOG_LEVEL").map(|level| lambda_level(&level).to_owned()))
        .unwrap_or_else(|| "info".to_owned());
    directive.parse().unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
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
    install(std::io::stdout, filter_from(|name| std::env::var(name).ok()));
}

/// Installs the JSON subscriber writing to `writer` (tests capture logs this way).
pub fn install<W>(writer: W, filter: Targets)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let json_lines = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true);
    let _ = tracing_subscriber::registry().with(json_lines.with_filter(filter)).try_init();
}

/// The span every request is served in: its fields appear on each log line of the request.
/// `route` is API Gateway's route template (`PUT /me/llm-keys/{provider}`), never a raw path,
/// so no user id or token reaches the log through it.
pub fn request_span(request_id: &str, route: &str) -> Span {
    tracing::info_span!("request", request_id = %request_id, route = %route)
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::{filter_from, lambda_level};

    #[test]
    fn lambda_levels_map_to_tracing() {
        assert_eq!(lambda_level("TRACE"), "trace");
        assert_eq!(lambda_level("fatal"), "error");
        assert_eq!(lambda_level("nonsense"), "info");
    }

    fn filter(vars: &[(&str, &str)]) -> tracing_subscriber::filter::Targets {
        filter_from(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn rust_log_directives_set_levels_per_target() {
        let targets = filter(&[("RUST_LOG", "warn,keyward::store=debug"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")]);
        assert!(targets.would_enable("keyward::store::dynamo", &Level::DEBUG));
        assert!(!targets.would_enable("keyward::store::dynamo", &Level::TRACE));
        assert!(!targets.would_enable("keyward::auth", &Level::INFO));
        assert!(targets.would_enable("hyper_util::client", &Level::WARN));
    }

    #[test]
    fn lambdas_log_level_applies_without_rust_log_and_info_is_the_default() {
        let debug = filter(&[("RUST_LOG", " "), ("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]);
        assert!(debug.would_enable("keyward::auth", &Level::DEBUG));
        assert!(!debug.would_enable("keyward::auth", &Level::TRACE));
        for targets in [filter(&[]), filter(&[("RUST_LOG", "keyward=[{span}]=nonsense")])] {
            assert!(targets.would_enable("keyward::auth", &Level::INFO));
            assert!(!targets.would_enable("keyward::auth", &Level::DEBUG));
        }
    }
}
