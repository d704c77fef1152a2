//! Structured JSON logs: one line per event, with the Lambda request id and the route of the
//! request being served on every line logged inside [`request_span`].

use tracing::Span;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// keyward's own crates (`keyward` also covers `keyward_local`, `keyward_sandbox`…, as a target
/// prefix): the configured level applies to them.
const OWN_TARGETS: [&str; 7] =
    ["keyward", "login_callback", "device_auth", "llm_keys", "internal_keys", "oauth_refresh", "stripe_webhook"];

/// The finest level any other crate may log at. Below it, third-party crates log whole payloads:
/// `lambda_runtime` the raw invocation event (bearer tokens, cookies, key bodies), hyper and h2
/// their frames, the AWS SDK its signed requests and responses.
const THIRD_PARTY_CAP: LevelFilter = LevelFilter::INFO;

/// Which targets log at which level: what the operator asked for, with every target outside
/// [`OWN_TARGETS`] capped at [`THIRD_PARTY_CAP`], whatever was asked.
#[derive(Debug, Clone)]
pub struct LogLevels(Targets);

impl LogLevels {
    /// From `RUST_LOG` (finest control) or `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging
    /// controls), read through `lookup`, else `info`.
    ///
    /// `RUST_LOG` takes `target=level` directives (`warn,keyward=debug`), not `EnvFilter`'s span and
    /// field matchers: those bring a regex engine, the largest piece of the logging code in every
    /// binary, for filters a Lambda function's logs have no use for (BENCHMARKS.md). A directive that
    /// does not parse leaves the level at `info`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let directives = lookup("RUST_LOG")
            .filter(|v| !v.trim().is_empty())
            .or_else(|| lookup("AWS_LAMBDA_LOG_LEVEL").map(|level| lambda_level(&level).to_owned()))
            .unwrap_or_else(|| "info".to_owned());
        Self::parse(&directives).unwrap_or_else(|_| Self::capped(&Targets::new().with_default(LevelFilter::INFO)))
    }

    /// `target=level` directives, e.g. `trace,keyward_sandbox=off`.
    pub fn parse(directives: &str) -> Result<Self, tracing_subscriber::filter::ParseError> {
        Ok(Self::capped(&directives.parse()?))
    }

    fn capped(asked: &Targets) -> Self {
        let default = asked.default_level().unwrap_or(LevelFilter::OFF);
        let mut targets = Targets::new().with_default(default.min(THIRD_PARTY_CAP));
        for own in OWN_TARGETS {
            // The most specific directive the operator gave for this crate, or the default.
            let level = asked.iter().filter(|(t, _)| own.starts_with(t)).max_by_key(|(t, _)| t.len()).map(|(_, l)| l);
            targets = targets.with_target(own, level.unwrap_or(default));
        }
        for (target, level) in asked.iter() {
            let own = OWN_TARGETS.iter().any(|o| target.starts_with(o));
            targets = targets.with_target(target, if own { level } else { level.min(THIRD_PARTY_CAP) });
        }
        Self(targets)
    }

    /// Whether an event of `level` from `target` is logged.
    pub fn enables(&self, target: &str, level: tracing::Level) -> bool {
        self.0.would_enable(target, &level)
    }
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
    install(std::io::stdout, LogLevels::from_lookup(|name| std::env::var(name).ok()));
}

/// Installs the JSON subscriber writing to `writer` for the whole process (once; later calls keep
/// the first).
pub fn install<W>(writer: W, levels: LogLevels)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = subscriber(writer, levels).try_init();
}

/// keyward's JSON subscriber writing to `writer`: what [`install`] installs, and what a test that
/// reads its own logs sets as its thread's default.
pub fn subscriber<W>(writer: W, levels: LogLevels) -> impl tracing::Subscriber + Send + Sync + 'static
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
    tracing_subscriber::registry().with(json_lines.with_filter(levels.0))
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

    use super::{LogLevels, lambda_level};

    #[test]
    fn lambda_levels_map_to_tracing() {
        assert_eq!(lambda_level("TRACE"), "trace");
        assert_eq!(lambda_level("fatal"), "error");
        assert_eq!(lambda_level("nonsense"), "info");
    }

    fn levels(vars: &[(&str, &str)]) -> LogLevels {
        LogLevels::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn rust_log_directives_set_levels_per_target() {
        let levels = levels(&[("RUST_LOG", "warn,keyward::store=debug"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")]);
        assert!(levels.enables("keyward::store::dynamo", Level::DEBUG));
        assert!(!levels.enables("keyward::store::dynamo", Level::TRACE));
        assert!(!levels.enables("keyward::auth", Level::INFO));
        assert!(levels.enables("hyper_util::client", Level::WARN));
        assert!(!levels.enables("hyper_util::client", Level::INFO));
    }

    #[test]
    fn lambdas_log_level_applies_without_rust_log_and_info_is_the_default() {
        let debug = levels(&[("RUST_LOG", " "), ("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]);
        assert!(debug.enables("keyward::auth", Level::DEBUG));
        assert!(debug.enables("llm_keys", Level::DEBUG));
        assert!(!debug.enables("keyward::auth", Level::TRACE));
        for levels in [levels(&[]), levels(&[("RUST_LOG", "keyward=[{span}]=nonsense")])] {
            assert!(levels.enables("keyward::auth", Level::INFO));
            assert!(!levels.enables("keyward::auth", Level::DEBUG));
        }
    }

    #[test]
    fn third_party_targets_stay_at_info_whatever_the_level() {
        let third_party = [
            "lambda_runtime::layers::api_response",
            "lambda_runtime_api_client",
            "lambda_http",
            "hyper",
            "hyper_util::client::legacy",
            "h2::codec",
            "reqwest::connect",
            "rustls::client",
            "aws_smithy_runtime::client",
            "aws_sdk_kms",
            "aws_config",
            "aws_sigv4::http_request",
        ];
        let cases = [
            levels(&[("AWS_LAMBDA_LOG_LEVEL", "TRACE")]),
            levels(&[("RUST_LOG", "trace")]),
            levels(&[("RUST_LOG", "info,lambda_runtime=trace,hyper=trace,aws_sigv4=debug,h2=trace")]),
        ];
        for levels in &cases {
            for target in third_party {
                assert!(levels.enables(target, Level::INFO), "{target} still logs at INFO");
                assert!(!levels.enables(target, Level::DEBUG), "{target} never logs below INFO");
            }
        }
        let trace = &cases[0];
        for own in ["keyward::http", "login_callback", "stripe_webhook", "keyward_local::gateway"] {
            assert!(trace.enables(own, Level::TRACE), "{own} follows the level");
        }
        let quiet = levels(&[("RUST_LOG", "trace,keyward_sandbox=off")]);
        assert!(!quiet.enables("keyward_sandbox::auth0", Level::ERROR), "own directives are kept");
        let errors = levels(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR")]);
        assert!(!errors.enables("lambda_runtime", Level::INFO), "a cap never raises a level");
    }
}
