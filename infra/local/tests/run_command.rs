//! The README's run command, as a newcomer runs it: the built `keyward-local` binary starts, prints
//! its base URL, and answers on localhost — on embedded defaults, and with `KEYWARD_MODE=aws
//! --bootstrap` against moto.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the base URL it printed.
fn start(command: &mut Command) -> (Server, String, Vec<String>) {
    let child = command
        .args(["--port", "0", "--sandbox-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn keyward-local");
    let mut server = Server(child);
    let stdout = server.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        let done = line.starts_with("Stop with Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    // Keep reading the server's log lines so its writes never hit a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let url = banner
        .iter()
        .find_map(|l| l.strip_prefix("keyward-local: the keyward API is at "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no base URL in the banner: {banner:#?}"))
        .to_owned();
    (server, url, banner)
}

fn health(url: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::get(format!("{url}/health/llm-keys")).await.expect("GET /health/llm-keys");
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON health")
    })
}

#[test]
fn runs_the_whole_api_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join(".keyward");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward-local"));
    command.current_dir(dir.path()).env_remove("KEYWARD_MODE").env_remove("KEYWARD_AUTH0_ISSUER");
    for setting in
        keyward::providers::ProviderEndpoints::SETTINGS.iter().chain(&keyward::config::GoogleEndpoints::SETTINGS)
    {
        command.env_remove(setting.var);
    }
    let (_server, url, banner) = start(&mut command);

    let health = health(&url);
    assert_eq!(health["mode"], "local");
    assert_eq!(health["store"], "embedded");
    assert_eq!(
        health["sandbox"],
        serde_json::json!(["auth0", "google-oauth", "openai", "anthropic", "gemini", "perplexity", "zai", "zai-china"]),
        "sandbox mode is labelled"
    );
    assert!(banner.iter().any(|l| l.starts_with("SANDBOX MODE")), "{banner:#?}");
    assert!(banner.iter().any(|l| l.contains("/internal/users/{uid}/llm-keys") && l.ends_with("[IAM]")));
    assert!(banner.iter().any(|l| l.trim_start().starts_with("curl ")), "a try-it list");

    // Everything lives in the one default folder; the secrets are the owner's alone.
    for file in ["keyward.sqlite3", "master.key", "credentials.json"] {
        assert!(data_dir.join(file).exists(), "{file} in .keyward/");
    }
    let folder = std::fs::metadata(&data_dir).unwrap().permissions().mode();
    assert_eq!(folder & 0o777, 0o700, ".keyward/ is the owner's alone");
    for secret in ["master.key", "credentials.json"] {
        let mode = std::fs::metadata(data_dir.join(secret)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    let credentials = std::fs::read_to_string(data_dir.join("credentials.json")).unwrap();
    let secret = serde_json::from_str::<serde_json::Value>(&credentials).unwrap()["credentials"][0]["secretAccessKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!banner.concat().contains(&secret), "the banner never prints the secret key");

    // The banner's try-it commands work as printed: sign in, store a sandbox key, list it.
    let try_it: Vec<&str> = banner
        .iter()
        .map(|l| l.trim_start())
        .filter(|l| {
            l.starts_with("TOKEN=")
                || l.starts_with("curl -X PUT")
                || l.contains("/me/llm-keys\"")
                || l.ends_with("/me/llm-keys")
        })
        .collect();
    assert_eq!(try_it.len(), 3, "{banner:#?}");
    let output = Command::new("bash").args(["-euo", "pipefail", "-c", &try_it.join("\n")]).output().expect("run bash");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // curl prints each body without a newline: read them as a stream of JSON values.
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON answers");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!((answers[0]["provider"].as_str(), answers[0]["status"].as_str()), (Some("openai"), Some("valid")));
    assert_eq!(answers[1]["keys"][0]["preview"], "sk-p…alid");
}

#[test]
fn runs_in_aws_mode_against_moto_with_bootstrap() {
    let moto = std::env::var("KEYWARD_TEST_MOTO_URL")
        .expect("KEYWARD_TEST_MOTO_URL is not set: run the tests with `scripts/test`, which starts moto");
    let dir = tempfile::tempdir().unwrap();
    let table = format!("keyward-local-{}", std::process::id());
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward-local"));
    command
        .current_dir(dir.path())
        .arg("--bootstrap")
        .env("KEYWARD_MODE", "aws")
        .env("KEYWARD_TABLE_NAME", &table)
        .env("AWS_ENDPOINT_URL", &moto)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("KEYWARD_KMS_KEY_ID")
        .env_remove("KEYWARD_AUTH0_ISSUER");
    let (_server, url, banner) = start(&mut command);
    let health = health(&url);
    assert_eq!(health["mode"], "aws");
    assert_eq!(health["store"], "dynamodb");
    assert!(banner.iter().any(|l| l.contains(&format!("DynamoDB table {table}"))), "{banner:#?}");
}
