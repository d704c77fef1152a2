//! `keyward-bench`: runs every release-built function under a Lambda Runtime API emulator, beside a
//! bare `lambda_runtime` hello function (the floor), and prints BENCHMARKS.md's tables.
//!
//! `scripts/bench` builds the binaries, starts moto and calls this; see BENCHMARKS.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use keyward::auth::UserCaller;
use keyward::auth::personal_token::TokenFormat;
use keyward::crypto::{Envelope, KmsKeyProvider};
use keyward::model::{Provider, SystemClock, UserId};
use keyward::providers::preview;
use keyward::secret::ApiKey;
use keyward::store::{
    Actor, AuditAction, AuditEntry, DynamoTable, KeyStatus, NewLlmKey, Store, create_table, llm_key_context, now_epoch,
};
use keyward::use_cases::access_tokens::{NewToken, PersonalTokenSettings, PersonalTokens};
use keyward_sandbox::aws_proxy::AwsProxy;
use keyward_sandbox::lambda_runtime::{Answer, Emulator};

const FUNCTIONS: [&str; 6] =
    ["login-callback", "device-auth", "llm-keys", "internal-keys", "oauth-refresh", "stripe-webhook"];
const HELLO: &str = "bench-hello";
/// The user of `events/internal-keys/fetch.json`, and the role it signs as.
const USER: &str = "auth0|b5fc85e55755f9e0d030a10a";
const CALLER_ROLE: &str = "arn:aws:iam::111122223333:role/notes-service";

struct Args {
    bin_dir: PathBuf,
    events: PathBuf,
    moto: String,
    /// A second moto, for the audit partitions ([`data_path`]'s second run).
    audit_moto: String,
    warm: usize,
}

fn args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        bin_dir: "target/release".into(),
        events: "events".into(),
        moto: String::new(),
        audit_moto: String::new(),
        warm: 1000,
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--bin-dir" => parsed.bin_dir = value.into(),
            "--events" => parsed.events = value.into(),
            "--moto" => parsed.moto = value,
            "--audit-moto" => parsed.audit_moto = value,
            "--warm" => parsed.warm = value.parse().expect("--warm N"),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(!parsed.moto.is_empty(), "--moto URL is required (scripts/bench starts one)");
    assert!(!parsed.audit_moto.is_empty(), "--audit-moto URL is required (scripts/bench starts a second moto)");
    parsed
}

/// A function process that is killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Peak resident set (VmHWM) so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One function's figures.
struct Run {
    init: Duration,
    /// Every cold start's init, in the order of the rounds (`init` is their median).
    inits: Vec<Duration>,
    first: Duration,
    warm: Vec<Duration>,
    peak_rss_kib: u64,
    size: u64,
    /// AWS calls of the cold start plus first invocation, and per warm invocation.
    cold_calls: BTreeMap<String, usize>,
    warm_calls: BTreeMap<String, usize>,
    /// Time the warm invocations' AWS calls spent upstream, by operation.
    warm_upstream: BTreeMap<String, Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn mean(durations: &[Duration]) -> Duration {
    durations.iter().sum::<Duration>() / durations.len().max(1) as u32
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Runs `binary` under the emulator with `env`, feeding `event` once cold and `warm` times warm.
async fn run(binary: &Path, env: &[(String, String)], event: &[u8], warm: usize, counts: Option<&AwsProxy>) -> Run {
    let mut emulator = Emulator::start().await.expect("start the runtime emulator");
    if let Some(c) = counts {
        c.take_counts();
        c.take_upstream_time();
    }
    let spawned = Instant::now();
    let child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", emulator.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", binary.file_name().and_then(|n| n.to_str()).unwrap_or("f"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let process = Process(child);
    let ready = emulator
        .first_next(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{} never asked for an event", binary.display()));
    let init = ready - spawned;
    let (first, answer) = emulator.invoke(event).await.expect("first invocation");
    check(binary, &answer);
    let cold_calls = counts.map(AwsProxy::take_counts).unwrap_or_default();
    counts.map(AwsProxy::take_upstream_time);
    let mut latencies = Vec::with_capacity(warm);
    for _ in 0..warm {
        let (took, answer) = emulator.invoke(event).await.expect("warm invocation");
        check(binary, &answer);
        latencies.push(took);
    }
    let warm_calls = counts.map(AwsProxy::take_counts).unwrap_or_default();
    let warm_upstream = counts.map(AwsProxy::take_upstream_time).unwrap_or_default();
    latencies.sort();
    Run {
        init,
        inits: vec![init],
        first,
        warm: latencies,
        peak_rss_kib: process.peak_rss_kib(),
        size: std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0),
        cold_calls,
        warm_calls,
        warm_upstream,
    }
}

/// Cold starts per binary: init and first-invocation figures are the median of these.
const COLD_STARTS: usize = 101;

/// A binary to measure and what to feed it.
struct Subject<'a> {
    binary: PathBuf,
    env: &'a [(String, String)],
    event: Vec<u8>,
    counts: Option<&'a AwsProxy>,
}

/// Each subject's [`run`], then `COLD_STARTS - 1` more cold starts (init and first invocation only)
/// in rounds of one start per subject, so that the host's drift during a run weighs on the floor
/// and the functions alike. Each result's init and first invocation are the medians of its starts.
async fn runs(subjects: &[Subject<'_>], warm: usize) -> Vec<Run> {
    let mut results = Vec::with_capacity(subjects.len());
    for s in subjects {
        results.push(run(&s.binary, s.env, &s.event, warm, s.counts).await);
    }
    let mut firsts: Vec<Vec<Duration>> = results.iter().map(|r| vec![r.first]).collect();
    for _ in 1..COLD_STARTS {
        for ((s, result), firsts) in subjects.iter().zip(&mut results).zip(&mut firsts) {
            let again = run(&s.binary, s.env, &s.event, 0, s.counts).await;
            result.inits.push(again.init);
            firsts.push(again.first);
        }
    }
    for (result, mut firsts) in results.iter_mut().zip(firsts) {
        let mut inits = result.inits.clone();
        inits.sort();
        firsts.sort();
        result.init = percentile(&inits, 0.5);
        result.first = percentile(&firsts, 0.5);
    }
    results
}

/// The quartiles (first, median, third) of `run`'s init over `floor`'s in the same round: each
/// pair was started moments apart, so the host's drift during a run cancels out of the ratio.
fn init_ratio(run: &Run, floor: &Run) -> [f64; 3] {
    let mut ratios: Vec<f64> =
        run.inits.iter().zip(&floor.inits).map(|(r, f)| r.as_secs_f64() / f.as_secs_f64()).collect();
    ratios.sort_by(f64::total_cmp);
    [0.25, 0.5, 0.75].map(|q| ratios.get((ratios.len() as f64 * q) as usize).copied().unwrap_or(f64::NAN))
}

/// Every answer must be the API Gateway response the event documents as a success.
fn check(binary: &Path, answer: &Answer) {
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let status = body["statusCode"].as_u64().unwrap_or(0);
    assert!(answer.ok && status == 200, "{}: {}", binary.display(), String::from_utf8_lossy(&answer.body));
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A table and KMS key on moto with one sealed OpenAI key for [`USER`]; returns (table, key id).
async fn seed(sdk: &aws_config::SdkConfig) -> (String, String) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let kms = aws_sdk_kms::Client::new(sdk);
    let table = format!("keyward-bench-{}", std::process::id());
    create_table(&dynamodb, &table).await.expect("create the table");
    let key = kms.create_key().send().await.expect("create a KMS key");
    let key_id = key.key_metadata().map(|m| m.key_id().to_owned()).expect("key id");
    let store = Store::new(Arc::new(DynamoTable::new(dynamodb, &table)));
    let envelope = envelope(sdk, &key_id, &store);
    seal_key(&store, &envelope, &UserId::parse(USER).expect("user id")).await;
    (table, key_id)
}

/// The envelope the functions build over `store` and the KMS key.
fn envelope(sdk: &aws_config::SdkConfig, key_id: &str, store: &Store) -> Envelope {
    Envelope::new(
        Arc::new(KmsKeyProvider::new(aws_sdk_kms::Client::new(sdk), key_id)),
        Arc::new(store.clone()),
        Duration::from_secs(300),
        Arc::new(SystemClock),
    )
}

/// Stores a sealed OpenAI key for `user`, with its audit entry.
async fn seal_key(store: &Store, envelope: &Envelope, user: &UserId) {
    let plaintext = "sk-proj-bench-0123456789abcdefghijklmnopqrstuvwxyz";
    let sealed = envelope.seal(plaintext.as_bytes(), &llm_key_context(user, Provider::OpenAi)).await.expect("seal");
    let new = NewLlmKey {
        provider: Provider::OpenAi,
        sealed,
        preview: preview(&ApiKey::new(plaintext)),
        status: KeyStatus::Valid,
        test: None,
        zai_region: None,
    };
    let entry = AuditEntry {
        at: now_epoch(),
        actor: Actor::System,
        action: AuditAction::LlmKeyPut,
        target: Some(Provider::OpenAi.slug().into()),
        outcome: "seeded".into(),
    };
    store.llm_keys().put_audited(user, &new, now_epoch(), &entry).await.expect("store the key");
}

async fn sdk_for(endpoint: &str) -> aws_config::SdkConfig {
    // keyward's own loader, so that the floor goes through the functions' HTTP client.
    keyward::app::aws_config_loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await
}

fn calls(counts: &BTreeMap<String, usize>, per: usize) -> String {
    if counts.is_empty() {
        return "0".into();
    }
    counts
        .iter()
        .map(|(op, n)| if per > 1 { format!("{op} {:.2}", *n as f64 / per as f64) } else { format!("{op} {n}") })
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() {
    let args = args();
    // Every AWS call of every process goes through the counting proxy in front of moto.
    let proxy = AwsProxy::start(&args.moto).await.expect("start the proxy");
    let endpoint = proxy.url();
    let sdk = sdk_for(&endpoint).await;
    let (table, key_id) = seed(&sdk).await;
    proxy.take_counts();
    let principals = format!("{{\"{CALLER_ROLE}\": [\"openai\"]}}");
    let aws = env(&[
        ("KEYWARD_MODE", "aws"),
        ("KEYWARD_TABLE_NAME", &table),
        ("KEYWARD_KMS_KEY_ID", &key_id),
        ("KEYWARD_AUTH0_ISSUER", "https://tenant.example.auth0.com/"),
        ("KEYWARD_AUTH0_AUDIENCE", "https://api.keyward.dev"),
        ("KEYWARD_AUTH0_CLIENT_ID", "web-client"),
        ("KEYWARD_AUTH0_DEVICE_CLIENT_ID", "cli-client"),
        ("KEYWARD_AUTH0_CLIENT_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:auth0-AbCdEf"),
        ("KEYWARD_AUTH0_CALLBACK_URL", "https://api.keyward.dev/auth/callback"),
        ("KEYWARD_INTERNAL_PRINCIPALS", &principals),
        // The API and account the sample events name (`events/`).
        ("KEYWARD_API_ID", keyward::config::LOCAL_API_ID),
        ("KEYWARD_ACCOUNT_ID", keyward::config::LOCAL_ACCOUNT_ID),
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
    ]);
    let health = |function: &str| std::fs::read(args.events.join(function).join("health.json")).expect("health event");
    let mut subjects =
        vec![Subject { binary: args.bin_dir.join(HELLO), env: &[], event: health("llm-keys"), counts: None }];
    subjects.extend(FUNCTIONS.iter().map(|function| Subject {
        binary: args.bin_dir.join(function),
        env: &aws,
        event: health(function),
        counts: Some(&proxy),
    }));
    let results = runs(&subjects, args.warm).await;
    let hello = &results[0];
    println!("## Cold start, warm latency, memory and size (aws mode on moto, `GET /health/<function>`)\n");
    println!(
        "Init and first invocation: the median of {COLD_STARTS} cold starts; then {} warm invocations, with \
         the configuration Lambda runs (aws mode). Ratios are to `{HELLO}`, measured in the same run: the \
         cold starts are taken in rounds, one of each binary per round, and ×floor is the median of \
         the rounds' ratios, with their first and third quartiles beside it.\n",
        args.warm
    );
    println!(
        "| function | init ms | ×floor | ×floor quartiles | first ms | warm p50 ms | warm p99 ms | peak RSS MiB | stripped bytes | AWS calls, cold |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, r: &Run| {
        let ratio = init_ratio(r, hello);
        println!(
            "| {name} | {} | {:.2} | {:.2}–{:.2} | {} | {} | {} | {:.1} | {} | {} |",
            ms(r.init),
            ratio[1],
            ratio[0],
            ratio[2],
            ms(r.first),
            ms(percentile(&r.warm, 0.5)),
            ms(percentile(&r.warm, 0.99)),
            r.peak_rss_kib as f64 / 1024.0,
            r.size,
            calls(&r.cold_calls, 1),
        );
    };
    row(&format!("{HELLO} (floor)"), hello);
    for (function, result) in FUNCTIONS.iter().zip(&results[1..]) {
        row(function, result);
    }

    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let fetch = std::fs::read(args.events.join("internal-keys/fetch.json")).expect("fetch event");
    let internal_keys =
        Subject { binary: args.bin_dir.join("internal-keys"), env: &aws, event: fetch, counts: Some(&proxy) };
    let one_server = data_path(&dynamodb, &table, &proxy, &internal_keys, args.warm).await;
    println!("\n## Data path on moto: `GET /internal/users/{{uid}}/llm-keys` (internal-keys, aws mode)\n");
    println!("Every AWS call goes through a counting loopback proxy in front of moto, the floor's too.\n");
    print_data_path(&one_server, args.warm);

    // The same again with the audit partitions on a second moto, as DynamoDB keeps partitions on
    // different storage nodes and serves them in parallel: what the fetch costs when its two calls
    // can overlap, which one moto (one request at a time) never lets them.
    let partitions = sdk_for(&args.audit_moto).await;
    create_table(&aws_sdk_dynamodb::Client::new(&partitions), &table).await.expect("create the audit table");
    proxy.serve_partitions_from("AUDIT#", &args.audit_moto);
    let two_servers = data_path(&dynamodb, &table, &proxy, &internal_keys, args.warm).await;
    println!("\n## Data path with the audit partitions on a second moto (a model of DynamoDB's partitions)\n");
    println!(
        "The proxy sends each `PutItem` to an `AUDIT#…` partition to a second moto, everything else to the \
         first: the keys' read and the audit write can then be served at once, as DynamoDB serves two \
         partitions. A model, not DynamoDB: the single-moto figures above are the harness's own.\n"
    );
    print_data_path(&two_servers, args.warm);

    user_route(&sdk, &table, &key_id, &aws, &args, &proxy).await;
}

/// The user whose key the user route lists, signed in at the sandbox's Auth0.
const BENCH_EMAIL: &str = "bench@example.com";

/// Warm `GET /me/llm-keys` (llm-keys) with an Auth0 access token beside the same with a personal
/// access token: what verifying a token per request (one `GetItem`, a MAC with the cached
/// branch key) costs over a JWT checked against a cached key set.
async fn user_route(
    sdk: &aws_config::SdkConfig,
    table: &str,
    key_id: &str,
    aws: &[(String, String)],
    args: &Args,
    proxy: &AwsProxy,
) {
    let sandbox = keyward_sandbox::Sandbox::start(([127, 0, 0, 1], 0).into()).await.expect("start the sandbox");
    let issuer = sandbox.auth0_issuer();
    let user = UserId::parse(&keyward_sandbox::auth0::sandbox_subject(BENCH_EMAIL)).expect("user id");
    let store = Store::new(Arc::new(DynamoTable::new(aws_sdk_dynamodb::Client::new(sdk), table)));
    let envelope = envelope(sdk, key_id, &store);
    seal_key(&store, &envelope, &user).await;

    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", BENCH_EMAIL),
            ("password", "sandbox"),
            ("audience", "https://api.keyward.dev"),
            ("client_id", "web-client"),
            ("scope", "openid profile email"),
        ])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("the sandbox's password grant")
        .json()
        .await
        .expect("a token answer");
    let jwt = answer["access_token"].as_str().expect("an access token").to_owned();
    let settings =
        PersonalTokenSettings { format: TokenFormat::new("kw_pat_").expect("prefix"), max_days: 365, per_user: 20 };
    let tokens = PersonalTokens { store: &store, envelope: &envelope, clock: &SystemClock, settings: &settings };
    let caller = UserCaller::signed_in(user.clone(), Some(BENCH_EMAIL.into()), Some(true));
    let asked = NewToken { name: "bench".into(), scopes: vec!["keys:read".into()], expires_in_days: Some(1) };
    let created = tokens.create(&caller, asked).await.expect("create a personal access token");

    let mut env = aws.to_vec();
    env.retain(|(k, _)| k != "KEYWARD_AUTH0_ISSUER");
    env.push(("KEYWARD_AUTH0_ISSUER".into(), issuer));
    let template = std::fs::read_to_string(args.events.join("llm-keys/list.json")).expect("list event");
    let event = |bearer: &str| template.replace("REPLACE_WITH_ACCESS_TOKEN", bearer).into_bytes();
    let binary = args.bin_dir.join("llm-keys");
    let subject = |event| Subject { binary: binary.clone(), env: &env, event, counts: Some(proxy) };
    let results = runs(&[subject(event(&jwt)), subject(event(created.token.expose()))], args.warm).await;
    let (jwt_run, token_run) = (&results[0], &results[1]);

    println!(
        "\n## A user route with a JWT and with a personal access token: `GET /me/llm-keys` (llm-keys, aws mode)\n"
    );
    println!(
        "The same function, user and stored key; the Auth0 access token is the sandbox tenant's (RS256, \
         its key set fetched once and cached), the personal access token one with `keys:read`. \
         `lastUsedAt` is written at most once a minute, so a warm run writes it about once.\n"
    );
    println!(
        "| credential | warm p50 ms | warm p99 ms | ×JWT (p50) | AWS calls per warm request (mean of {}) |",
        args.warm
    );
    println!("|---|---|---|---|---|");
    let jwt_p50 = percentile(&jwt_run.warm, 0.5);
    for (name, run) in [("Auth0 access token (JWT)", jwt_run), ("personal access token", token_run)] {
        let p50 = percentile(&run.warm, 0.5);
        println!(
            "| {name} | {} | {} | {:.2} | {} |",
            ms(p50),
            ms(percentile(&run.warm, 0.99)),
            p50.as_secs_f64() / jwt_p50.as_secs_f64(),
            calls(&run.warm_calls, args.warm),
        );
    }
}

/// The data path's figures: the raw GetItem, the fetch's floor (a raw read and an audit write sent
/// together) and the warm fetch, one after another.
struct DataPath {
    floor: Vec<Duration>,
    floor_upstream: BTreeMap<String, Duration>,
    pair: Vec<Duration>,
    pair_upstream: BTreeMap<String, Duration>,
    fetched: Run,
}

async fn data_path(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    proxy: &AwsProxy,
    internal_keys: &Subject<'_>,
    warm: usize,
) -> DataPath {
    let get_item = || {
        dynamodb
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(format!("USER#{USER}")))
            .key("sk", AttributeValue::S("LLMKEY#openai".into()))
            .send()
    };
    get_item().await.expect("warm-up GetItem");
    proxy.take_upstream_time();
    let mut floor = Vec::with_capacity(warm);
    for _ in 0..warm {
        let started = Instant::now();
        get_item().await.expect("GetItem");
        floor.push(started.elapsed());
    }
    floor.sort();
    proxy.take_counts();
    let floor_upstream = proxy.take_upstream_time();

    // The fetch's own floor: the key's read and an audit entry's write sent together, as the fetch
    // sends them for the one provider the bench's caller is granted (the entry with the attributes
    // keyward writes).
    let put_entry = |n: usize| {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        dynamodb
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S(format!("AUDIT#bench-floor#{}", n % 8)))
            .item("sk", AttributeValue::S(format!("AUDIT#{:012}.000000#bench-floor-{n:08}", now_epoch())))
            .item("entity", s("audit"))
            .item("at", AttributeValue::N(now_epoch().to_string()))
            .item("actor_kind", s("service"))
            .item("actor_id", s(CALLER_ROLE))
            .item("action", s("llm_key.fetch"))
            .item("target", s("openai"))
            .item("outcome", s("granted"))
            .send()
    };
    let mut pair = Vec::with_capacity(warm);
    for n in 0..warm {
        let started = Instant::now();
        let (read, write) = tokio::join!(get_item(), put_entry(n));
        read.expect("GetItem");
        write.expect("PutItem");
        pair.push(started.elapsed());
    }
    pair.sort();
    proxy.take_counts();
    let pair_upstream = proxy.take_upstream_time();

    let fetched = runs(std::slice::from_ref(internal_keys), warm).await.remove(0);
    DataPath { floor, floor_upstream, pair, pair_upstream, fetched }
}

fn print_data_path(path: &DataPath, warm: usize) {
    let DataPath { floor, floor_upstream, pair, pair_upstream, fetched } = path;
    let (p50, floor_p50, pair_p50) = (percentile(&fetched.warm, 0.5), percentile(floor, 0.5), percentile(pair, 0.5));
    println!("| what | p50 ms | p99 ms | ×GetItem (p50) | ×read ∥ write (p50) |");
    println!("|---|---|---|---|---|");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("| raw DynamoDB GetItem (floor) | {} | {} | 1.00 | |", ms(floor_p50), ms(percentile(floor, 0.99)));
    println!(
        "| raw GetItem ∥ an audit entry's PutItem, sent together (the fetch's floor) | {} | {} | {:.2} | 1.00 |",
        ms(pair_p50),
        ms(percentile(pair, 0.99)),
        ratio(pair_p50, floor_p50)
    );
    println!(
        "| warm fetch (emulator → function → moto) | {} | {} | {:.2} | {:.2} |",
        ms(p50),
        ms(percentile(&fetched.warm, 0.99)),
        ratio(p50, floor_p50),
        ratio(p50, pair_p50)
    );
    println!("\n| AWS calls | count |");
    println!("|---|---|");
    println!("| cold start + first fetch | {} |", calls(&fetched.cold_calls, 1));
    println!("| per warm fetch (mean of {warm}) | {} |", calls(&fetched.warm_calls, warm));
    println!(
        "\nWhere a warm call's time goes (means): the proxy times each AWS call from forwarding it to \
         its whole answer; the rest is the SDK and the proxy hop, and for the fetch also the emulator, \
         the runtime and keyward's own code.\n"
    );
    println!("| what | end to end ms | inside AWS calls ms | rest ms |");
    println!("|---|---|---|---|");
    let breakdown = |what: &str, latencies: &[Duration], upstream: &BTreeMap<String, Duration>| {
        let calls = latencies.len().max(1) as u32;
        let (total, inside) = (mean(latencies), upstream.values().sum::<Duration>() / calls);
        let parts: Vec<String> = upstream.iter().map(|(op, t)| format!("{op} {}", ms(*t / calls))).collect();
        println!(
            "| {what} | {} | {} ({}) | {} |",
            ms(total),
            ms(inside),
            parts.join(", "),
            ms(total.saturating_sub(inside))
        );
    };
    breakdown("raw DynamoDB GetItem (floor)", floor, floor_upstream);
    breakdown("raw GetItem ∥ PutItem", pair, pair_upstream);
    breakdown("warm fetch", &fetched.warm, &fetched.warm_upstream);
    println!(
        "\ninit {} ms, first fetch {} ms (medians of {COLD_STARTS} cold starts), peak RSS {:.1} MiB in aws mode.",
        ms(fetched.init),
        ms(fetched.first),
        fetched.peak_rss_kib as f64 / 1024.0
    );
}
