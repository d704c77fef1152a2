//! The `keyward` binary against the local API in sandbox mode, as a person uses it: sign in with the
//! device flow (approved on the sandbox's activation page), store keys piped on stdin, list, test,
//! remove, a transparent refresh, and sign out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use keyward_tests::api::{Backend, LocalApi};
use keyward_tests::sign_in::{ADA, activate};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// Runs `keyward args…` for the session in `config`, with `stdin` piped in.
async fn keyward(config: &Path, args: &[&str], stdin: &str) -> Output {
    keyward_as(config, None, args, stdin).await
}

/// Runs `keyward args…` with `KEYWARD_TOKEN` set to `token` (none: unset).
async fn keyward_as(config: &Path, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let (config, args, stdin) =
        (config.to_owned(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), stdin.to_owned());
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(BIN);
        match &token {
            Some(token) => command.env("KEYWARD_TOKEN", token),
            None => command.env_remove("KEYWARD_TOKEN"),
        };
        let mut child = command
            .args(&args)
            .env("KEYWARD_CONFIG_DIR", &config)
            .env_remove("KEYWARD_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keyward");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("keyward output")
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn session_file(config: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(config.join("session.json")).expect("session file")).expect("session JSON")
}

/// A running `keyward login`: the process, the user code it printed, and its whole stderr when done.
struct LoginRun {
    child: Child,
    code: String,
    stderr: std::thread::JoinHandle<String>,
}

async fn start_login(api: &LocalApi, config: &Path) -> LoginRun {
    let mut child = Command::new(BIN)
        .args(["login", "--url", &api.base_url])
        .env("KEYWARD_CONFIG_DIR", config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyward login");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(code) = line.strip_prefix("and check that it shows the code ") {
                let _ = tx.send(code.trim().to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let code = tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("keyward login printed a user code");
    LoginRun { child, code, stderr }
}

impl LoginRun {
    async fn finish(self) -> (Output, String) {
        let output =
            tokio::task::spawn_blocking(move || self.child.wait_with_output()).await.expect("join").expect("login");
        (output, self.stderr.join().expect("stderr reader"))
    }
}

/// `keyward login`, approving the code it prints the way a person would.
async fn login(api: &LocalApi, config: &Path) -> (String, String) {
    let run = start_login(api, config).await;
    activate(api, &run.code, "approve").await;
    let (output, stderr) = run.finish().await;
    assert!(output.status.success(), "login failed: {stderr}");
    (text(&output.stdout), stderr)
}

#[tokio::test]
async fn a_person_signs_in_stores_tests_and_removes_keys_then_signs_out() {
    let api = LocalApi::start(Backend::Embedded).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("keyward");

    // Not signed in yet: exit code 3, and a hint.
    let output = keyward(&config, &["whoami"], "").await;
    assert_eq!(output.status.code(), Some(3));
    assert!(text(&output.stderr).contains("keyward login"), "{}", text(&output.stderr));

    let (stdout, stderr) = login(&api, &config).await;
    assert!(stdout.contains(&format!("as {ADA}")), "{stdout}");
    assert!(stderr.contains("To sign in, open http://127.0.0.1:"), "{stderr}");
    // The session handle lives in a file only its owner can read, in a folder only its owner can list.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config.join("session.json")), 0o600);
    assert_eq!(mode(&config), 0o700);
    let first_handle = session_file(&config)["refreshToken"].as_str().unwrap().to_owned();

    let output = keyward(&config, &["whoami"], "").await;
    assert!(output.status.success());
    assert!(text(&output.stdout).starts_with(ADA), "{}", text(&output.stdout));

    // A key piped on stdin is checked with the provider, stored, and never echoed whole.
    let output = keyward(&config, &["keys", "set", "openai"], "sk-proj-sandbox-valid\n").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Stored your OpenAI key"), "{stdout}");
    assert!(!stdout.contains("sk-proj-sandbox-valid"), "{stdout}");

    // A refused key: the friendly message, exit code 1, nothing stored.
    let output = keyward(&config, &["keys", "set", "anthropic"], "sk-ant-api03-sandbox-no-credits").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("Insufficient Anthropic API credits"), "{}", text(&output.stderr));

    let output = keyward(&config, &["keys", "list"], "").await;
    let listing = text(&output.stdout);
    assert!(output.status.success());
    assert!(listing.contains("openai") && listing.contains("valid"), "{listing}");
    assert!(!listing.contains("anthropic"), "{listing}");

    let output = keyward(&config, &["keys", "test", "openai"], "").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("The OpenAI key works."));

    // An expired access token is refreshed on the way: the handle rotates and the file keeps 0600.
    let mut stored = session_file(&config);
    stored["expiresAt"] = 0.into();
    std::fs::write(config.join("session.json"), stored.to_string()).unwrap();
    let output = keyward(&config, &["keys", "list"], "").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rotated = session_file(&config);
    assert_ne!(rotated["refreshToken"].as_str().unwrap(), first_handle);
    assert!(rotated["expiresAt"].as_i64().unwrap() > 0);
    assert_eq!(mode(&config.join("session.json")), 0o600);

    let output = keyward(&config, &["keys", "rm", "openai"], "").await;
    assert!(output.status.success());
    let output = keyward(&config, &["keys", "list"], "").await;
    assert!(text(&output.stdout).contains("No keys stored"), "{}", text(&output.stdout));

    // Signing out ends the session at keyward too: the old handle no longer refreshes.
    let handle = session_file(&config)["refreshToken"].as_str().unwrap().to_owned();
    let output = keyward(&config, &["logout"], "").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!config.join("session.json").exists());
    let response = api
        .client
        .post(api.url("/auth/refresh"))
        .json(&serde_json::json!({ "refreshToken": handle }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(keyward(&config, &["keys", "list"], "").await.status.code(), Some(3));
}

#[tokio::test]
async fn a_key_is_never_taken_from_the_command_line() {
    let home = tempfile::tempdir().unwrap();
    let output = keyward(home.path(), &["keys", "set", "openai", "sk-proj-sandbox-valid"], "").await;
    assert_eq!(output.status.code(), Some(2), "argv keys are a usage error");
    assert!(!text(&output.stderr).contains("sk-proj-sandbox-valid"), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("never from the command line"), "{}", text(&output.stderr));
    // The providers are the API's list (`GET /llm-providers`), never a copy in the CLI.
    let api = LocalApi::start(Backend::Embedded).await;
    let output = keyward(home.path(), &["--url", &api.base_url, "keys", "set", "mistral"], "").await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("unknown provider `mistral`") && stderr.contains("openrouter"), "{stderr}");
}

#[tokio::test]
async fn a_denied_sign_in_fails_with_a_clear_message_and_stores_nothing() {
    let api = LocalApi::start(Backend::Embedded).await;
    let home = tempfile::tempdir().unwrap();
    let run = start_login(&api, home.path()).await;
    activate(&api, &run.code, "deny").await;
    let (output, stderr) = run.finish().await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("sign-in was denied"), "{stderr}");
    assert!(!home.path().join("session.json").exists());
}

/// RFC 8628 `slow_down`: the CLI waits the interval the server names from then on. The stand-in
/// answers pending, then slow_down with 3 s, then pending, then the tokens.
#[tokio::test]
async fn login_polls_at_the_interval_and_slows_down_when_told() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/device/start"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "deviceCode": "dc-1", "userCode": "ABCD-EFGH", "verificationUri": "http://127.0.0.1/activate",
            "verificationUriComplete": null, "expiresIn": 600, "interval": 1
        })))
        .mount(&server)
        .await;
    let polls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&polls);
    Mock::given(method("POST"))
        .and(path("/auth/device/poll"))
        .respond_with(move |_: &wiremock::Request| {
            let mut seen = seen.lock().unwrap();
            seen.push(Instant::now());
            match seen.len() {
                1 | 3 => ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "authorization_pending", "interval": 1})),
                2 => ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "slow_down", "interval": 3})),
                _ => ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "accessToken": "at-1", "idToken": null, "expiresIn": 3600, "tokenType": "Bearer", "refreshToken": "kw-handle-1"
                })),
            }
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"id": "auth0|x", "email": "grace@example.com"})),
        )
        .mount(&server)
        .await;

    let home = tempfile::tempdir().unwrap();
    let output = keyward(home.path(), &["login", "--no-browser", "--url", &server.uri()], "").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("as grace@example.com"));
    let polls = polls.lock().unwrap();
    assert_eq!(polls.len(), 4);
    // Sleeping never ends early, so these lower bounds hold on any machine, however loaded.
    assert!(polls[1] - polls[0] >= std::time::Duration::from_secs(1));
    assert!(polls[2] - polls[1] >= std::time::Duration::from_secs(3), "slow_down was not honoured");
    assert!(polls[3] - polls[2] >= std::time::Duration::from_secs(3), "the slower interval did not stick");
}

/// `keyward tokens` makes, lists and revokes tokens with a sign-in; with `KEYWARD_TOKEN` set, every
/// command acts as the token (no session needed), within its scopes, and a revoked one is refused.
#[tokio::test]
async fn tokens_are_made_with_a_sign_in_and_scripts_act_with_them() {
    let api = LocalApi::start(Backend::Embedded).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("keyward");
    login(&api, &config).await;
    let output = keyward(&config, &["tokens", "create", "ci", "--scope", "keys:read", "--days", "7"], "").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let token = text(&output.stdout).trim().to_owned();
    assert!(token.starts_with("kw_pat_") && token.len() == 43, "{token}");
    assert!(text(&output.stderr).contains("shown this once"), "{}", text(&output.stderr));
    let listed = text(&keyward(&config, &["tokens", "list"], "").await.stdout);
    assert!(listed.contains("ci") && listed.contains("keys:read") && !listed.contains(&token), "{listed}");
    let id = listed.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    // A script: no session at all, only the token.
    let script = tempfile::tempdir().unwrap();
    let url = ["--url", api.base_url.as_str()];
    let as_token = |args: &[&str]| {
        let args: Vec<String> = url.iter().chain(args).map(|a| (*a).to_owned()).collect();
        let (dir, token) = (script.path().to_owned(), token.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            keyward_as(&dir, Some(&token), &args, "").await
        }
    };
    let output = as_token(&["keys", "list"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = as_token(&["keys", "rm", "openai"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("keys:write"), "{}", text(&output.stderr));
    let output = as_token(&["tokens", "create", "more", "--scope", "keys:read", "--days", "1"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("sign-in"), "{}", text(&output.stderr));

    let output = keyward(&config, &["tokens", "revoke", &id], "").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = as_token(&["keys", "list"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("revoked or expired"), "{}", text(&output.stderr));
}
