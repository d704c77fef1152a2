//! `keyward-local`: runs the whole keyward API on localhost.
//!
//! Local mode (the default) keeps everything in one folder (`.keyward/`): the embedded store, the
//! local master key and the gateway's SigV4 credentials. Third-party services not configured are
//! answered by the sandbox stand-ins. `KEYWARD_MODE=aws` runs on DynamoDB and KMS where the standard
//! AWS variables point (moto, say); `--bootstrap` creates the table and key first.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use keyward::app::{AppState, AwsClients};
use keyward::config::{Config, LOCAL_AUDIENCE, Mode};
use keyward_local::sigv4::LOCAL_PRINCIPAL;
use keyward_local::{Credentials, DEFAULT_PORT, Gateway, RouteTable};
use keyward_sandbox::Sandbox;
use keyward_sandbox::providers::{Provider as SandboxProvider, Scenario};

const USAGE: &str = "\
usage: keyward-local [--port N] [--sandbox-port N] [--data-dir DIR] [--credentials FILE]
                     [--template FILE] [--bootstrap]
       keyward-local call METHOD PATH [--body JSON] [--url URL] [--credentials FILE]
                     (a SigV4-signed request to an /internal route, as an AWS SDK signs it)

  --port N          where the API listens on 127.0.0.1 (default 8700; 0 = any free port)
  --sandbox-port N  where the third-party stand-ins listen (default 8701; 0 = any free port)
  --data-dir DIR    local mode's folder: store, master key, credentials (default .keyward)
  --credentials F   SigV4 credentials for /internal routes (default DIR/credentials.json, created)
  --template F      the SAM template whose routes are served (default ./template.yaml)
  --bootstrap       with KEYWARD_MODE=aws: create the table and KMS key first";

struct Options {
    port: u16,
    sandbox_port: u16,
    data_dir: Option<PathBuf>,
    credentials: Option<PathBuf>,
    template: PathBuf,
    bootstrap: bool,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        port: DEFAULT_PORT,
        sandbox_port: keyward_sandbox::DEFAULT_PORT,
        data_dir: None,
        credentials: None,
        template: keyward_local::default_template_path(),
        bootstrap: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => options.port = value("--port")?.parse().map_err(|_| "--port must be a port number")?,
            "--sandbox-port" => {
                options.sandbox_port =
                    value("--sandbox-port")?.parse().map_err(|_| "--sandbox-port must be a port number")?;
            }
            "--data-dir" => options.data_dir = Some(value("--data-dir")?.into()),
            "--credentials" => options.credentials = Some(value("--credentials")?.into()),
            "--template" => options.template = value("--template")?.into(),
            "--bootstrap" => options.bootstrap = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() {
    keyward::telemetry::init();
    let mut args = std::env::args().skip(1).peekable();
    let result = if args.peek().map(String::as_str) == Some("call") { call(args.skip(1)).await } else { run().await };
    if let Err(e) = result {
        eprintln!("keyward-local: {e}");
        std::process::exit(2);
    }
}

/// `keyward-local call GET /internal/users/…/llm-keys`: signs the request with the local
/// credentials, as an internal service's AWS SDK would, sends it, and prints the answer. (curl 7's
/// `--aws-sigv4` signs percent-encoded paths, such as a user id's `%7C`, differently from the
/// SDKs, so the gateway refuses it, as API Gateway would.)
async fn call(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (Some(method), Some(path)) = (args.next(), args.next()) else { return Err(USAGE.to_owned()) };
    let (mut url, mut body, mut credentials) =
        (format!("http://127.0.0.1:{DEFAULT_PORT}"), String::new(), PathBuf::from(".keyward/credentials.json"));
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => url = value.trim_end_matches('/').to_owned(),
            "--body" => body = value,
            "--credentials" => credentials = value.into(),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let region = env("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned());
    let credentials = Credentials::load(&credentials).map_err(|e| format!("credentials: {e}"))?;
    let target = format!("{url}{path}");
    let method = method.to_ascii_uppercase();
    let headers = credentials.sign(&region, &method, &target, body.as_bytes(), std::time::SystemTime::now())?;
    let mut request = reqwest::Client::new()
        .request(method.parse().map_err(|_| format!("{method} is not an HTTP method"))?, &target)
        .body(body.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let response = request.send().await.map_err(|e| format!("{target}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    println!("{} {}\n{text}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if status.is_success() { Ok(()) } else { Err(format!("the API answered {}", status.as_u16())) }
}

async fn run() -> Result<(), String> {
    let options = parse_args(std::env::args().skip(1))?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut settings: HashMap<&str, String> = HashMap::new();

    let data_dir = options.data_dir.clone().or_else(|| env("KEYWARD_DATA_DIR").map(PathBuf::from));
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(".keyward"));
    settings.insert("KEYWARD_DATA_DIR", data_dir.display().to_string());

    // The sandbox answers for every third-party service whose endpoint is not configured.
    let sandbox = Sandbox::start(SocketAddr::from((Ipv4Addr::LOCALHOST, options.sandbox_port)))
        .await
        .map_err(|e| format!("cannot start the sandbox on port {}: {e}", options.sandbox_port))?;
    if env("KEYWARD_AUTH0_ISSUER").is_none() {
        settings.insert("KEYWARD_AUTH0_ISSUER", sandbox.auth0_issuer());
        if env("KEYWARD_AUTH0_AUDIENCE").is_none() {
            settings.insert("KEYWARD_AUTH0_AUDIENCE", LOCAL_AUDIENCE.to_owned());
        }
    }
    // The API's port is taken first (with `--port 0`, whichever is free): Auth0 and Google send
    // browsers back to it, so the callbacks and allowed origins name the port it really has.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let base = format!("http://127.0.0.1:{port}");
    if env("KEYWARD_AUTH0_CALLBACK_URL").is_none() {
        settings.insert("KEYWARD_AUTH0_CALLBACK_URL", format!("{base}/auth/callback"));
    }
    if env("KEYWARD_RETURN_ORIGINS").is_none() {
        settings.insert("KEYWARD_RETURN_ORIGINS", format!("{base},http://localhost:{port}"));
    }
    for (var, value) in keyward_local::sandbox_settings(sandbox.base_url(), &base) {
        if env(var).is_none() {
            settings.insert(var, value);
        }
    }

    let credentials_path = options.credentials.clone().unwrap_or_else(|| data_dir.join("credentials.json"));
    let credentials = match options.credentials {
        Some(_) => Credentials::load(&credentials_path),
        None => Credentials::load_or_create(&credentials_path),
    }
    .map_err(|e| format!("credentials: {e}"))?;
    if env("KEYWARD_INTERNAL_PRINCIPALS").is_none() {
        let grants =
            serde_json::json!({ LOCAL_PRINCIPAL: ["llm-keys:*", "google-oauth", "microsoft-oauth", "credits"] });
        settings.insert("KEYWARD_INTERNAL_PRINCIPALS", grants.to_string());
    }

    let aws_mode = env("KEYWARD_MODE").as_deref() == Some("aws");
    let aws = if aws_mode { Some(keyward::app::aws_config_loader().load().await) } else { None };
    match (&aws, options.bootstrap) {
        (Some(aws), true) => {
            let table = env("KEYWARD_TABLE_NAME").unwrap_or_else(|| "keyward-local".to_owned());
            let key_id = keyward_bootstrap::ensure(aws, &table).await.map_err(|e| format!("--bootstrap: {e}"))?;
            settings.insert("KEYWARD_TABLE_NAME", table);
            settings.insert("KEYWARD_KMS_KEY_ID", key_id);
        }
        (None, true) => return Err("--bootstrap needs KEYWARD_MODE=aws (local mode creates its store itself)".into()),
        _ => {}
    }

    let config = Config::from_lookup(|name| settings.get(name).cloned().or_else(|| env(name)))
        .map_err(|e| format!("configuration: {e}"))?;
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".to_owned());
    let template = std::fs::read_to_string(&options.template)
        .map_err(|e| format!("cannot read {}: {e}", options.template.display()))?;
    let routes = RouteTable::from_template(&template).map_err(|e| e.to_string())?;
    let state = Arc::new(
        AppState::with_aws(config, aws.as_ref().map(AwsClients::new)).map_err(|e| format!("cold start failed: {e}"))?,
    );

    let functions = keyward_local::functions(&state);
    let gateway = Gateway::start_on(listener, routes.clone(), functions, credentials, region.clone())
        .map_err(|e| e.to_string())?;
    print_banner(&gateway, &sandbox, &state, &routes, &credentials_path, &region);
    tokio::select! {
        () = gateway.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn print_banner(
    gateway: &Gateway,
    sandbox: &Sandbox,
    state: &AppState,
    routes: &RouteTable,
    credentials: &std::path::Path,
    region: &str,
) {
    let base = gateway.base_url();
    let backend = match &state.config.mode {
        Mode::Local { data_dir } => format!("local mode, embedded store in {}", data_dir.display()),
        Mode::Aws { table_name, .. } => format!("aws mode, DynamoDB table {table_name}"),
    };
    println!("keyward-local: the keyward API is at {base} ({backend})");
    let stand_ins = state.config.stand_ins();
    if !stand_ins.is_empty() {
        println!(
            "SANDBOX MODE: stand-ins at {} answer for {} — none of these reaches the real service",
            sandbox.base_url(),
            stand_ins.join(", ")
        );
    }
    println!("\nRoutes (from template.yaml; IAM = SigV4-signed, service execute-api, region {region}):");
    for route in routes.routes() {
        println!(
            "  {:<7} {:<45} {}{}",
            route.method,
            route.path,
            route.function,
            if route.iam { "  [IAM]" } else { "" }
        );
    }
    println!("\nTry it:");
    println!("  curl {base}/health/llm-keys");
    if stand_ins.contains(&"auth0") {
        let email = "you@example.com";
        println!(
            "  TOKEN=$(curl -s {}/auth0/oauth/token -d grant_type=password -d username={email} -d password={} -d audience={} | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
            sandbox.base_url(),
            keyward_sandbox::auth0::SANDBOX_PASSWORD,
            state.config.tokens.audience,
        );
        if stand_ins.contains(&"openai") {
            let key = keyward_sandbox::providers::magic_key(SandboxProvider::OpenAi, Scenario::Valid);
            println!(
                "  curl -X PUT -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"apiKey\":\"{key}\"}}' {base}/me/llm-keys/openai"
            );
        }
        println!("  curl -H \"Authorization: Bearer $TOKEN\" {base}/me/llm-keys");
        let user = keyward_sandbox::auth0::sandbox_subject(email);
        let user = user.replace('|', "%7C");
        // Signed as an AWS SDK signs (curl 7's --aws-sigv4 signs `%7C` differently and is refused).
        println!(
            "  cargo run -q -p keyward-local -- call GET /internal/users/{user}/llm-keys --url {base} --credentials {}",
            credentials.display()
        );
        println!("  (magic provider keys for every outcome: README, \"Sandbox keys\")");
    }
    println!("\nStop with Ctrl-C.");
}
