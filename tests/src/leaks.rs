//! The leak audit's capture. With `KEYWARD_TEST_LEAK_DIR` set (`scripts/test` sets it), every test
//! process that starts an API or an AWS client logs everything at TRACE through keyward's own JSON
//! subscriber into `<dir>/log-<pid>.txt` (the gateway logs each error body there too), appends
//! panic messages to `<dir>/panic-<pid>.txt`, and writes every secret it planted or saw issued to
//! `<dir>/planted-<pid>.txt`. A test that reads its own logs ([`capture_logs`]) writes them there
//! too. `tests/tests/leak_audit.rs`, run after the suite, looks for each planted secret in each log
//! line and panic message. Without the variable, all of this is off.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, Once, OnceLock};

use aws_sdk_kms::operation::decrypt::DecryptOutput;
use aws_sdk_kms::operation::generate_data_key::GenerateDataKeyOutput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub const DIR_VAR: &str = "KEYWARD_TEST_LEAK_DIR";

/// Everything at TRACE but the stand-ins, which hand secrets out by design and are not keyward.
pub const FILTER: &str = "trace,keyward_sandbox=off,wiremock=off";

fn dir() -> Option<PathBuf> {
    std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// `<dir>/<name>-<pid>.txt`, opened for appending, when the capture is on.
pub(crate) fn append(name: &str) -> Option<File> {
    let dir = dir()?;
    std::fs::create_dir_all(&dir).ok()?;
    OpenOptions::new().create(true).append(true).open(dir.join(format!("{name}-{}.txt", std::process::id()))).ok()
}

static PLANTED: Mutex<Option<(File, HashSet<String>)>> = Mutex::new(None);
static LOG: OnceLock<Option<Mutex<File>>> = OnceLock::new();

/// The process's capture file, when the audit runs.
fn log_file() -> Option<&'static Mutex<File>> {
    LOG.get_or_init(|| append("log").map(Mutex::new)).as_ref()
}

/// Writes log lines to the capture file (nowhere without the audit).
#[derive(Clone, Copy)]
struct CaptureFile;

impl Write for CaptureFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(mut file) = log_file().and_then(|f| f.lock().ok()) {
            file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines for a test that reads its own logs and for the capture both.
#[derive(Clone)]
struct Both(crate::LogCapture);

impl Write for Both {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CaptureFile.write_all(buf)?;
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// keyward's subscriber at `directives` as this thread's default, writing into `capture` (and the
/// audit's capture): for a test that reads what it logged. The test runs on one thread (tokio's
/// current-thread runtime) so everything it serves logs through it.
pub fn capture_logs(capture: &crate::LogCapture, directives: &str) -> tracing::subscriber::DefaultGuard {
    init();
    let both = Both(capture.clone());
    let levels = keyward::telemetry::LogLevels::parse(directives).expect("filter directives");
    tracing::subscriber::set_default(keyward::telemetry::subscriber(move || both.clone(), levels))
}

/// Starts the capture once per process (a no-op without `KEYWARD_TEST_LEAK_DIR`).
pub fn init() {
    static START: Once = Once::new();
    START.call_once(|| {
        let (Some(_), Some(planted)) = (log_file(), append("planted")) else { return };
        if let Ok(mut slot) = PLANTED.lock() {
            *slot = Some((planted, HashSet::new()));
        }
        keyward::telemetry::install(
            || CaptureFile,
            keyward::telemetry::LogLevels::parse(FILTER).expect("filter directives"),
        );
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(mut file) = append("panic") {
                let _ = writeln!(file, "{info}");
            }
            previous(info);
        }));
        for secret in fixtures() {
            plant(&secret);
        }
    });
}

/// Records `secret` as one that must never appear in a log line or panic message.
pub fn plant(secret: &str) {
    let Ok(mut slot) = PLANTED.lock() else { return };
    let Some((file, seen)) = slot.as_mut() else { return };
    if secret.len() >= 8 && !secret.contains('\n') && seen.insert(secret.to_owned()) {
        let _ = writeln!(file, "{secret}");
    }
}

/// Adds `text`, what some other process logged (a function binary under test), to the capture.
pub fn capture(name: &str, text: &str) {
    if let Some(mut file) = append(&format!("log-{name}")) {
        let _ = file.write_all(text.as_bytes());
    }
}

/// Records what the stand-ins have issued so far (codes, tokens, signatures).
pub fn plant_issued() {
    for secret in keyward_sandbox::issued() {
        plant(&secret);
    }
}

/// The suite's fixed secrets: every magic provider key, both Stripe endpoint secrets, the Auth0 and
/// Google client secrets, and the signing secrets of the IAM principals.
fn fixtures() -> Vec<String> {
    use keyward_sandbox::providers::{Provider, Scenario, magic_key};
    let mut secrets: Vec<String> =
        Provider::ALL.iter().flat_map(|p| Scenario::ALL.iter().map(move |s| magic_key(*p, *s))).collect();
    secrets.extend(crate::stripe::ENDPOINT_SECRETS.iter().map(|s| (*s).to_owned()));
    secrets.push(keyward_sandbox::auth0::SANDBOX_CLIENT_SECRET.to_owned());
    secrets.push(keyward_sandbox::google::SANDBOX_CLIENT_SECRET.to_owned());
    secrets.push(keyward_sandbox::microsoft::SANDBOX_CLIENT_SECRET.to_owned());
    secrets.extend(
        [crate::api::NOTES_SERVICE, crate::api::CALENDAR_SERVICE, crate::api::BILLING_SERVICE, crate::api::STRANGER]
            .iter()
            .map(|p| p.secret.to_owned()),
    );
    secrets
}

/// An SDK interceptor for the functions' KMS client: plants the plaintext of every data key KMS
/// hands out or unwraps, in base64 and hex.
#[derive(Debug, Clone, Default)]
pub struct DataKeyRecorder;

impl Intercept for DataKeyRecorder {
    fn name(&self) -> &'static str {
        "DataKeyRecorder"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            let plaintext = output
                .downcast_ref::<GenerateDataKeyOutput>()
                .and_then(|o| o.plaintext())
                .or_else(|| output.downcast_ref::<DecryptOutput>().and_then(|o| o.plaintext()));
            if let Some(key) = plaintext {
                plant(&BASE64.encode(key.as_ref()));
                plant(&hex::encode(key.as_ref()));
            }
        }
        Ok(())
    }
}
