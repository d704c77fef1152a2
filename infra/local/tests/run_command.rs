//! The README's run command, as a newcomer runs it: the built `keyward-local` binary starts, prints
//! its base URL, and answers on localhost — on embedded defaults, and with `KEYWARD_MODE=aws
//! --bootstrap` against moto.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use keyward_sandbox::providers::{Provider, Scenario};

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
    for (var, _) in keyward_local::sandbox_settings("", "") {
        command.env_remove(var);
    }
    let (_server, url, banner) = start(&mut command);

    let health = health(&url);
    assert_eq!(health["mode"], "local");
    assert_eq!(health["store"], "embedded");
    assert_eq!(
        health["sandbox"],
        serde_json::json!([
            "auth0",
            "google-oauth",
            "microsoft-oauth",
            "gemini",
            "openai",
            "anthropic",
            "perplexity",
            "zai",
            "zai-china",
            "openrouter",
            "github"
        ]),
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

    // And the internal route's, as an internal service would call it (this build's binary for
    // `cargo run -q -p keyward-local --`): the key just stored, fetched with a SigV4 signature.
    let internal = banner
        .iter()
        .map(|l| l.trim_start())
        .find(|l| l.contains(" call GET /internal/"))
        .unwrap_or_else(|| panic!("an internal-route command: {banner:#?}"));
    let command = internal.replace("cargo run -q -p keyward-local --", env!("CARGO_BIN_EXE_keyward-local"));
    let output =
        Command::new("bash").args(["-euo", "pipefail", "-c", &command]).current_dir(dir.path()).output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_str(printed.lines().nth(1).unwrap_or_default()).unwrap();
    assert_eq!(answer["keys"]["openai"], keyward_sandbox::providers::magic_key(Provider::OpenAi, Scenario::Valid));
}

/// With `--port 0` the API takes whichever port is free, and web sign-in comes back to that port:
/// the callback Auth0 is given and the return origin are the real one, not the default 8700.
#[test]
fn web_sign_in_returns_to_the_port_it_really_has() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward-local"));
    command.current_dir(dir.path()).env_remove("KEYWARD_MODE").env_remove("KEYWARD_AUTH0_ISSUER");
    command.env_remove("KEYWARD_AUTH0_CALLBACK_URL").env_remove("KEYWARD_RETURN_ORIGINS");
    for (var, _) in keyward_local::sandbox_settings("", "") {
        command.env_remove(var);
    }
    let (_server, url, _) = start(&mut command);
    assert!(!url.ends_with(":8700"), "{url}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let location = |r: &reqwest::Response| url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let login = client.get(format!("{url}/auth/login")).query(&[("returnTo", format!("{url}/"))]).send().await;
        let login = login.unwrap();
        assert_eq!(login.status(), 302, "{url}/ is an allowed return origin");
        let mut authorize = location(&login);
        let redirect_uri = authorize.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1.into_owned();
        assert_eq!(redirect_uri, format!("{url}/auth/callback"));
        let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        authorize.query_pairs_mut().append_pair("login_hint", "ada@example.com");
        let callback = location(&client.get(authorize).send().await.unwrap());
        assert!(callback.as_str().starts_with(&format!("{url}/auth/callback?")), "{callback}");
        let signed_in = client.get(callback).header("cookie", cookie).send().await.unwrap();
        assert_eq!((signed_in.status().as_u16(), location(&signed_in).as_str()), (302, format!("{url}/").as_str()));
    });
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
