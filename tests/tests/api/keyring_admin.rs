//! The keyring's operator commands end to end: the real `keyward-admin` binary on moto's DynamoDB
//! and KMS (through the counting proxy), against records sealed by the library as the functions
//! seal them — format 1 from before the keyring, and format 2. Rotate, rewrap (stopped and
//! resumed), retire, and the move to a new KMS key with the old one then disabled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyward::crypto::{Envelope, KmsKeyProvider, Purpose, SealFormat};
use keyward::model::{Provider, SystemClock, UserId};
use keyward::store::table::{Attr, Changes, Key, Table};
use keyward::store::{DynamoTable, KeyStatus, NewLlmKey, llm_key_context, now_epoch, refresh_token_context};
use keyward::use_cases::keyring::RETIRE_AFTER_ROTATION;
use keyward_sandbox::aws_proxy::AwsProxy;
use keyward_tests::{TestTable, aws, kms_key};

/// The admin binary of this build, beside the test binaries' folder (`target/<profile>/`).
fn admin_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path =
        exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/<test>").join("keyward-admin");
    assert!(path.exists(), "{} is not built: scripts/test builds the workspace before the tests", path.display());
    path
}

struct Admin {
    proxy: AwsProxy,
    table: String,
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Admin {
    /// Runs `keyward-admin keyring <args>` on the table with `key` current and `previous` accepted.
    async fn run(&self, key: &str, previous: &[&str], args: &[&str]) -> Run {
        let output = tokio::process::Command::new(admin_binary())
            .arg("keyring")
            .args(args)
            .env_clear()
            .envs([
                ("KEYWARD_MODE", "aws"),
                ("KEYWARD_TABLE_NAME", self.table.as_str()),
                ("KEYWARD_KMS_KEY_ID", key),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_ENDPOINT_URL", self.proxy.url().as_str()),
                // keyward's own logs at TRACE: still no secret may reach the output.
                ("RUST_LOG", "trace"),
            ])
            .env("KEYWARD_KMS_PREVIOUS_KEY_IDS", previous.join(","))
            .output()
            .await
            .expect("run keyward-admin");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        Run { ok: output.status.success(), stdout: text(output.stdout), stderr: text(output.stderr) }
    }
}

/// The version `status` prints as active for `purpose`.
fn active_version(status: &str, purpose: &str) -> String {
    let mut lines = status.lines().skip_while(|l| !l.starts_with(&format!("{purpose}:"))).skip(1);
    let line =
        lines.find(|l| l.contains(" active ")).unwrap_or_else(|| panic!("no active {purpose} version: {status}"));
    line.split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn rotate_rewrap_retire_and_move_kms_keys_from_the_admin_command() {
    let sdk = aws().await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let table = TestTable::new().await;
    let store = table.store();
    let key_a = kms_key(&sdk).await;
    let instance = |key: &str, previous: &[&str]| {
        let provider = KmsKeyProvider::new(kms.clone(), key).accepting(previous.iter().map(|p| (*p).to_owned()));
        Envelope::new(Arc::new(provider), Arc::new(store.clone()), Duration::from_secs(300), Arc::new(SystemClock))
    };

    // Keys sealed per record (before the keyring) and under the first branch key, and a session.
    let mut secrets = BTreeMap::new();
    let old = instance(&key_a, &[]).writing(SealFormat::DataKeyPerRecord);
    let new = instance(&key_a, &[]);
    // `user`'s OpenAI key, sealed by `envelope` and stored.
    let seed = |envelope: &Envelope, user: &str, secret: String| {
        let (store, envelope, user) = (store.clone(), envelope.clone(), UserId::parse(user).unwrap());
        async move {
            let sealed = envelope.seal(secret.as_bytes(), &llm_key_context(&user, Provider::OpenAi)).await.unwrap();
            let key = NewLlmKey {
                provider: Provider::OpenAi,
                sealed,
                preview: "sk-p…cdef".into(),
                status: KeyStatus::Valid,
                test: None,
                zai_region: None,
            };
            keyward_tests::seed_key(&store, &user, &key, now_epoch()).await;
            (user, secret)
        }
    };
    for i in 0..5 {
        let envelope = if i < 3 { &old } else { &new };
        let secret = format!("sk-proj-PLANTED-admin-{i}-0123456789abcdef");
        let (user, secret) = seed(envelope, &format!("auth0|keyring-user{i}"), secret).await;
        secrets.insert(user, secret);
    }
    let session_user = UserId::parse("auth0|keyring-session").unwrap();
    let session_sealed =
        new.seal(b"v1.PLANTED-refresh", &refresh_token_context(&session_user, "family-1", "handle-1")).await.unwrap();

    let admin = Admin { proxy: AwsProxy::start(&keyward_tests::moto_url()).await.unwrap(), table: table.name.clone() };
    let status = admin.run(&key_a, &[], &["status"]).await;
    assert!(status.ok, "{}", status.stderr);
    assert!(status.stdout.contains("llm-key: 1 version(s), 3 format-1 record(s)"), "{}", status.stdout);
    let first = active_version(&status.stdout, "llm-key");
    assert!(status.stdout.contains(&format!("{first} active   created_at=")), "{}", status.stdout);
    assert!(status.stdout.contains("records=2"), "{}", status.stdout);

    let rotated = admin.run(&key_a, &[], &["rotate", "llm-key"]).await;
    assert!(rotated.ok, "{}", rotated.stderr);
    let counts = admin.proxy.take_counts();
    assert_eq!(counts.get("KMS.GenerateDataKeyWithoutPlaintext"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("KMS.GenerateDataKey"), None, "the new branch key never leaves KMS: {counts:?}");
    let second = active_version(&admin.run(&key_a, &[], &["status"]).await.stdout, "llm-key");
    assert_ne!(first, second);
    assert!(rotated.stdout.contains(&format!("llm-key: version {second} is active")), "{}", rotated.stdout);

    let refused = admin.run(&key_a, &[], &["retire", "llm-key", &first]).await;
    assert!(!refused.ok && refused.stderr.contains("rotated"), "{}", refused.stderr);

    // A stopped rewrap resumes where it was; records of either format move to the active version.
    let partial = admin.run(&key_a, &[], &["rewrap", "--page-size", "2", "--pages", "1"]).await;
    assert!(partial.ok && partial.stdout.contains("stopped after 1 page(s)"), "{}{}", partial.stdout, partial.stderr);
    let full = admin.run(&key_a, &[], &["rewrap", "--page-size", "2"]).await;
    assert!(full.ok && full.stdout.contains("; finished"), "{}{}", full.stdout, full.stderr);
    let last = full.stdout.lines().rev().find(|l| l.contains("finished")).unwrap();
    assert!(last.contains("5 re-sealed") && last.contains("0 refused"), "{last}");
    for (user, secret) in &secrets {
        let stored = store.llm_keys().get(user, Provider::OpenAi).await.unwrap().unwrap();
        assert_eq!(stored.sealed.branch_version().map(|v| v.to_string()).as_deref(), Some(second.as_str()), "{user}");
        let opened = instance(&key_a, &[]).open_text(&stored.sealed, &llm_key_context(user, Provider::OpenAi)).await;
        assert_eq!(secrecy::ExposeSecret::expose_secret(&opened.unwrap()), secret.as_str());
    }
    for run in [&status, &rotated, &partial, &full] {
        for secret in secrets.values() {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "a secret in the output");
        }
    }

    // Once no instance can still seal under it (the TTL after the rotation) and nothing uses it.
    let raw = DynamoTable::new(table.client.clone(), &table.name);
    let active = Key::new("KEYRING#llm-key", "ACTIVE");
    let past = Changes::default().set("created_at", Attr::N(now_epoch() - RETIRE_AFTER_ROTATION.as_secs() as i64 - 1));
    raw.update(&active, past, None).await.unwrap();
    let retired = admin.run(&key_a, &[], &["retire", "llm-key", &first]).await;
    assert!(retired.ok, "{}", retired.stderr);
    let status = admin.run(&key_a, &[], &["status"]).await.stdout;
    assert!(status.contains("llm-key: 1 version(s), 0 format-1 record(s)"), "{status}");
    assert!(!status.contains(&first), "{status}");

    // A record sealed per record under key A after all (an instance still on format 1): a move
    // cannot be finished while it needs key A, and `status` says so.
    let (late_user, late_secret) =
        seed(&old, "auth0|keyring-late", "sk-proj-PLANTED-admin-late-0123456789abcdef".into()).await;
    secrets.insert(late_user, late_secret);

    // A move to key B: the branch keys only, inside KMS; then key A is disabled and all still opens.
    let key_b = kms_key(&sdk).await;
    admin.proxy.take_counts();
    let moved = admin.run(&key_b, &[&key_a], &["move-kms"]).await;
    assert!(!moved.ok, "a record still needs key A: {}", moved.stdout);
    assert!(
        moved.stderr.contains(&format!("not finished: 1 format-1 record(s) still need {key_a}")),
        "{}",
        moved.stderr
    );
    let versions = store.keyring().versions(Purpose::LlmKey).await.unwrap().len()
        + store.keyring().versions(Purpose::Auth0Refresh).await.unwrap().len();
    assert!(moved.stdout.contains(&format!("{versions} branch key version(s) re-wrapped")), "{}", moved.stdout);
    let counts = admin.proxy.take_counts();
    assert_eq!(counts.get("KMS.ReEncrypt"), Some(&versions), "{counts:?}");
    assert!(counts.keys().all(|op| !op.starts_with("KMS.Decrypt") && !op.starts_with("KMS.Generate")), "{counts:?}");
    let status = admin.run(&key_b, &[&key_a], &["status"]).await.stdout;
    assert!(status.contains(&format!("kms: a move to {key_b} is unfinished: 0 branch key version(s) under other keys, 1 format-1 record(s) still need {key_a}")), "{status}");
    let rewrapped = admin.run(&key_b, &[&key_a], &["rewrap"]).await;
    assert!(rewrapped.ok, "{}", rewrapped.stderr);
    let again = admin.run(&key_b, &[&key_a], &["move-kms"]).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(
        again.stdout.contains(&format!("0 branch key version(s) re-wrapped under {key_b}, {versions} already were")),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("move-kms: finished"), "{}", again.stdout);
    let status = admin.run(&key_b, &[&key_a], &["status"]).await.stdout;
    assert!(status.contains(&format!("kms: everything is under {key_b}")), "{status}");
    kms.disable_key().key_id(&key_a).send().await.unwrap();
    let on_b = instance(&key_b, &[]);
    for (user, secret) in &secrets {
        let stored = store.llm_keys().get(user, Provider::OpenAi).await.unwrap().unwrap();
        let opened = on_b.open_text(&stored.sealed, &llm_key_context(user, Provider::OpenAi)).await.unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), secret.as_str());
    }
    let session =
        on_b.open(&session_sealed, &refresh_token_context(&session_user, "family-1", "handle-1")).await.unwrap();
    assert_eq!(&session[..], b"v1.PLANTED-refresh");
    assert!(store.keyring().active(Purpose::LlmKey).await.unwrap().is_some_and(|k| k.key_id == key_b));
}

/// `keyward-admin doctor` lists the roles and users IAM's policy simulator lets invoke a function
/// directly: one allowed everything, and a user allowed one function, are listed; one the invoke
/// guard denies, and one allowed only other actions, are not; one whose allow carries a condition is
/// named for a check by hand.
#[tokio::test]
async fn doctor_lists_who_may_invoke_the_functions_directly() {
    let sdk = aws().await;
    let iam = aws_sdk_iam::Client::new(&keyward_tests::setup_config(&sdk));
    let suffix = keyward_tests::unique_name("doctor");
    let function = |name: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:keyward-{name}-{suffix}");
    let (llm_keys, internal_keys) = (function("LlmKeysFunction"), function("InternalKeysFunction"));
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
    let allow = |action: &str, resource: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"{resource}"}}]}}"#
        )
    };
    let guard = iam
        .create_policy()
        .policy_name(format!("guard-{suffix}"))
        .policy_document(format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":["lambda:InvokeFunction","lambda:InvokeAsync","lambda:InvokeWithResponseStream"],"Resource":["{llm_keys}","{internal_keys}"]}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    let guard_arn = guard.policy().and_then(|p| p.arn()).unwrap().to_owned();
    let mut arns = BTreeMap::new();
    for (name, policy, guarded) in [
        ("deployer", allow("*", "*"), false),
        ("guarded-admin", allow("*", "*"), true),
        ("table-reader", allow("dynamodb:GetItem", "*"), false),
        (
            "from-the-office",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}]}"#.to_owned(),
            false,
        ),
    ] {
        let role = format!("{name}-{suffix}");
        let created = iam.create_role().role_name(&role).assume_role_policy_document(trust).send().await.unwrap();
        arns.insert(name, created.role().unwrap().arn().to_owned());
        iam.put_role_policy().role_name(&role).policy_name("inline").policy_document(policy).send().await.unwrap();
        if guarded {
            iam.attach_role_policy().role_name(&role).policy_arn(&guard_arn).send().await.unwrap();
        }
    }
    let user = format!("ci-{suffix}");
    let created = iam.create_user().user_name(&user).send().await.unwrap();
    arns.insert("ci", created.user().unwrap().arn().to_owned());
    let policy = allow("lambda:InvokeFunction", &internal_keys);
    iam.put_user_policy().user_name(&user).policy_name("inline").policy_document(policy).send().await.unwrap();

    let functions = format!("{llm_keys},{internal_keys}");
    let output = tokio::process::Command::new(admin_binary())
        .args(["doctor", "--functions", &functions])
        .env_clear()
        .envs([
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL", keyward_tests::moto_url().as_str()),
        ])
        .output()
        .await
        .expect("run keyward-admin doctor");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let line = |who: &str| stdout.lines().find(|l| l.contains(&arns[who])).map(str::to_owned);
    let names = |f: &str| f.rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        line("deployer"),
        Some(format!("  {}: {}, {}", arns["deployer"], names(&internal_keys), names(&llm_keys))),
        "{stdout}"
    );
    assert_eq!(line("ci"), Some(format!("  {}: {}", arns["ci"], names(&internal_keys))), "{stdout}");
    for outside in ["guarded-admin", "table-reader"] {
        assert_eq!(line(outside), None, "{outside} may not invoke: {stdout}");
    }
    assert!(
        line("from-the-office").is_some_and(|l| l.contains("aws:SourceIp") && l.contains("by hand")),
        "a conditional allow is named for a check by hand: {stdout}"
    );
}
