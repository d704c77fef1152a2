//! The KMS key policy in `template.yaml` matches what the code does: the encryption-context keys it
//! requires are the ones keyward sends, every purpose it names exists, each purpose can be sealed
//! and opened by some role, `internal-keys` can only open LLM keys, and `stripe-webhook` is not
//! named at all. (moto does not enforce key policies, so this is where drift would show.)

use std::collections::{BTreeMap, BTreeSet};

use keyward::crypto::{BranchVersion, EncryptionContext, KeyContext, Purpose};
use keyward::model::UserId;
use serde_norway::Value;

/// A YAML value as text, with CloudFormation tags kept (`!GetAtt X.Arn`).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, text(&tagged.value)),
        other => serde_norway::to_string(other).unwrap().trim().to_owned(),
    }
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(text).collect(),
        single => vec![text(single)],
    }
}

fn template() -> Value {
    serde_norway::from_str(&std::fs::read_to_string(keyward_local::default_template_path()).unwrap()).unwrap()
}

/// `(role, action, purpose, context keys)` of every statement that lets a role use the key.
fn grants() -> Vec<(String, String, String, BTreeSet<String>)> {
    let template = template();
    let statements = template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let mut grants = Vec::new();
    for statement in statements {
        // The keyring operator's statement, there only with `KeyringAdminArn`: `the_keyring_operator_is_optional_and_bound_to_keywards_contexts`.
        if matches!(statement, Value::Tagged(_)) {
            continue;
        }
        // CloudWatch Logs, bound to log groups' context: `logs_use_the_key_only_for_log_groups`.
        if !statement["Principal"]["Service"].is_null() {
            continue;
        }
        let principals = list(&statement["Principal"]["AWS"]);
        if principals.iter().any(|p| p.contains(":root")) {
            let actions = list(&statement["Action"]);
            assert!(actions.len() >= 10, "the administration statement lists its actions: {actions:?}");
            for action in &actions {
                let name = action.strip_prefix("kms:").unwrap_or_else(|| panic!("{action} is not a KMS action"));
                assert!(!name.contains('*'), "no wildcard in the administration statement: {action}");
                let cryptographic = [
                    "Encrypt",
                    "Decrypt",
                    "ReEncrypt",
                    "GenerateDataKey",
                    "GenerateRandom",
                    "Sign",
                    "Verify",
                    "GenerateMac",
                    "VerifyMac",
                    "DeriveSharedSecret",
                    "GetPublicKey",
                ];
                assert!(
                    !cryptographic.iter().any(|c| name.starts_with(c)),
                    "the account may not use the key: {action}"
                );
                assert_ne!(name, "CreateGrant", "a grant would hand use of the key to anyone the account names");
            }
            continue;
        }
        let condition = &statement["Condition"];
        let purpose = text(&condition["StringEquals"]["kms:EncryptionContext:keyward:purpose"]);
        let keys: BTreeSet<String> =
            list(&condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]).into_iter().collect();
        for principal in &principals {
            let role = principal.trim_start_matches("!GetAtt ").trim_end_matches(".Arn").to_owned();
            for action in list(&statement["Action"]) {
                grants.push((role.clone(), action, purpose.clone(), keys.clone()));
            }
        }
    }
    grants
}

#[test]
fn key_policy_requires_the_context_keyward_sends() {
    let user = UserId::parse("auth0|b5fc85e55755f9e0d030a10a").unwrap();
    let record = EncryptionContext::new(&user, Purpose::LlmKey, "openai");
    let branch_key = KeyContext::BranchKey { purpose: Purpose::LlmKey, version: BranchVersion::random() };
    // Branch keys' contexts, and format-1 records' (which still open).
    let sent: BTreeSet<String> = KeyContext::Record(&record)
        .kms_pairs()
        .into_iter()
        .chain(branch_key.kms_pairs())
        .map(|(k, _)| k.to_string())
        .collect();
    let grants = grants();
    assert!(!grants.is_empty());
    for (role, action, purpose, keys) in &grants {
        assert_eq!(keys, &sent, "{role} {action}: context keys");
        assert!(!purpose.is_empty(), "{role} {action} is not bound to a purpose");
    }
}

#[test]
fn every_purpose_is_sealed_and_opened_by_some_role_and_no_other_exists() {
    let mut by_purpose: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, action, purpose, _) in grants() {
        by_purpose.entry(purpose).or_default().insert(action);
    }
    let known: BTreeSet<String> = Purpose::all().map(Purpose::name).collect();
    assert_eq!(by_purpose.keys().cloned().collect::<BTreeSet<_>>(), known);
    for (purpose, actions) in by_purpose {
        let expected: BTreeSet<String> = ["kms:Decrypt", "kms:GenerateDataKey"].map(String::from).into();
        assert_eq!(actions, expected, "{purpose}");
    }
}

#[test]
fn least_privilege_roles() {
    let grants = grants();
    let of = |role: &str| -> BTreeSet<(String, String)> {
        grants.iter().filter(|g| g.0 == role).map(|g| (g.1.clone(), g.2.clone())).collect()
    };
    // internal-keys opens LLM keys and can never make a data key, so it cannot seal a key of its own.
    assert_eq!(of("InternalKeysFunctionRole"), BTreeSet::from([("kms:Decrypt".into(), "llm-key".into())]));
    // Money, not secrets: only the branch keys that check personal access tokens' and sessions' MACs.
    assert_eq!(
        of("StripeWebhookFunctionRole"),
        BTreeSet::from([("kms:Decrypt".into(), "access-token".into()), ("kms:Decrypt".into(), "session".into())])
    );
    // Only the functions that open and rotate sessions bind them; every function with user routes
    // checks a session cookie's binding.
    for role in ["LoginCallbackFunctionRole", "DeviceAuthFunctionRole"] {
        assert!(of(role).contains(&("kms:GenerateDataKey".into(), "session".into())), "{role}");
    }
    for role in
        ["LlmKeysFunctionRole", "OAuthRefreshFunctionRole", "StripeWebhookFunctionRole", "AccessTokensFunctionRole"]
    {
        assert!(of(role).contains(&("kms:Decrypt".into(), "session".into())), "{role}");
        assert!(!of(role).contains(&("kms:GenerateDataKey".into(), "session".into())), "{role}");
    }
    // Only `access-tokens` makes token MACs; the functions with scoped user routes check them.
    for role in ["LoginCallbackFunctionRole", "LlmKeysFunctionRole", "OAuthRefreshFunctionRole"] {
        assert!(of(role).contains(&("kms:Decrypt".into(), "access-token".into())), "{role}");
        assert!(!of(role).contains(&("kms:GenerateDataKey".into(), "access-token".into())), "{role}");
    }
    assert!(
        of("AccessTokensFunctionRole").iter().all(|(_, p)| p == "access-token" || p == "session"),
        "tokens and the session cookie, nothing else"
    );
    // The device flow seals sessions, under the auth0-refresh branch key it unwraps, and binds
    // them; nothing else.
    assert_eq!(
        of("DeviceAuthFunctionRole"),
        BTreeSet::from([
            ("kms:Decrypt".into(), "auth0-refresh".into()),
            ("kms:GenerateDataKey".into(), "auth0-refresh".into()),
            ("kms:Decrypt".into(), "session".into()),
            ("kms:GenerateDataKey".into(), "session".into())
        ])
    );
    for role in ["LlmKeysFunctionRole", "OAuthRefreshFunctionRole"] {
        assert!(of(role).iter().all(|(_, p)| p != "auth0-refresh"), "{role} may not open Auth0 refresh tokens");
    }
    // PKCE verifiers of redirects in flight: sealed and opened by the two functions that redirect.
    for role in ["LoginCallbackFunctionRole", "OAuthRefreshFunctionRole"] {
        assert!(of(role).contains(&("kms:Decrypt".into(), "oauth-state".into())), "{role}");
    }
}

/// The log groups are encrypted under the stack's key, and CloudWatch Logs may use the key only with
/// a log group's encryption context: never keyward's, so it can open no sealed record.
#[test]
fn logs_use_the_key_only_for_log_groups() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let log_groups: Vec<&Value> =
        resources.values().filter(|r| r["Type"].as_str() == Some("AWS::Logs::LogGroup")).collect();
    assert_eq!(log_groups.len(), 8, "seven functions and the API's access log");
    for group in log_groups {
        // The active key: a move to another one (`KmsKeyArn`) takes the logs along, so the old
        // key can be disabled without silencing them.
        let Value::Tagged(key) = &group["Properties"]["KmsKeyId"] else { panic!("a key per stack: {group:?}") };
        assert_eq!(
            (key.tag.to_string(), list(&key.value)),
            ("!If".to_owned(), vec!["HasOtherKmsKey".into(), "!Ref KmsKeyArn".into(), "!GetAtt DataKey.Arn".into()])
        );
        let name = text(&group["Properties"]["LogGroupName"]);
        assert!(name.starts_with("!Sub /keyward/${AWS::StackName}/"), "the stack's own prefix: {name}");
    }
    let statements = template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let services: Vec<&Value> = statements.iter().filter(|s| !s["Principal"]["Service"].is_null()).collect();
    assert_eq!(services.len(), 1, "CloudWatch Logs is the only service the key policy names");
    let logs = services[0];
    assert!(text(&logs["Principal"]["Service"]).contains("logs."), "{logs:?}");
    let condition = text(&logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]);
    assert!(
        condition.ends_with(":log-group:/keyward/${AWS::StackName}/*") && condition.contains("${AWS::AccountId}"),
        "only the stack's log groups: {condition}"
    );
    assert!(logs["Condition"]["StringEquals"].is_null(), "no keyward purpose for the logs service");
}

/// Invoking a function directly is every internal grant at once, so the invoke guard denies every
/// one of them (each version and alias too); and each function's log group counts the tripwire's
/// refusals into the one metric the alarm watches.
#[test]
fn the_invoke_guard_covers_every_function_and_every_log_group_feeds_the_alarm() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let functions: Vec<String> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(functions.len(), 7);
    let guard = &template["Resources"]["InvokeGuard"];
    assert_eq!(guard["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"));
    let statement = &guard["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"].as_str(), Some("Deny"));
    let actions = list(&statement["Action"]);
    for action in ["lambda:InvokeFunction", "lambda:InvokeAsync"] {
        assert!(actions.iter().any(|a| a == action), "{action}");
    }
    let denied = list(&statement["Resource"]);
    for function in &functions {
        assert!(denied.contains(&format!("!GetAtt {function}.Arn")), "{function}");
        assert!(denied.contains(&format!("!Sub ${{{function}.Arn}}:*")), "{function}'s versions and aliases");
    }
    assert_eq!(text(&template["Outputs"]["InvokeGuardPolicyArn"]["Value"]), "!Ref InvokeGuard");

    let filters: Vec<&Value> =
        resources.values().filter(|r| r["Type"].as_str() == Some("AWS::Logs::MetricFilter")).collect();
    for function in &functions {
        let group = text(&template["Resources"][function.as_str()]["Properties"]["LoggingConfig"]["LogGroup"]);
        let counted = filters.iter().any(|f| {
            text(&f["Properties"]["LogGroupName"]) == group
                && text(&f["Properties"]["FilterPattern"]).contains(r#"$.alarm = "foreign_invocation""#)
                && text(&f["Properties"]["MetricTransformations"][0]["MetricName"]) == "ForeignInvocations"
        });
        assert!(counted, "{function}'s log group ({group}) counts foreign invocations");
    }
    let alarm = &template["Resources"]["ForeignInvocationsAlarm"]["Properties"];
    assert_eq!(
        (text(&alarm["Namespace"]).as_str(), text(&alarm["MetricName"]).as_str()),
        ("keyward", "ForeignInvocations")
    );
    // The functions name the API, stage and account their events must name.
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(text(&env["KEYWARD_API_ID"]), "!Ref Api");
    assert_eq!(text(&env["KEYWARD_API_STAGE"]), text(&template["Resources"]["ApiStage"]["Properties"]["StageName"]));
    assert_eq!(text(&env["KEYWARD_ACCOUNT_ID"]), "!Ref AWS::AccountId");
}

/// Every finding of the infrastructure scanner that is skipped says why, in a sentence, where it
/// is skipped; `scripts/test` fails on any other finding.
#[test]
fn every_skipped_scanner_check_says_why() {
    let template = template();
    let mut skipped = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        for skip in resource["Metadata"]["checkov"]["skip"].as_sequence().into_iter().flatten() {
            let (id, comment) = (text(&skip["id"]), text(&skip["comment"]));
            assert!(id.starts_with("CKV_AWS_"), "{name:?}: {id}");
            assert!(comment.len() >= 30 && comment.ends_with('.'), "{name:?} {id}: say why in a sentence");
            skipped += 1;
        }
    }
    assert!(skipped >= 19, "{skipped}");
    // What protects keyward is fixed, not skipped: every function has a concurrency cap.
    let functions = template["Resources"].as_mapping().unwrap().values();
    let capped = template["Globals"]["Function"]["ReservedConcurrentExecutions"].is_null();
    assert!(!capped, "a reserved-concurrency cap for every function");
    for function in functions.filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function")) {
        assert!(
            !function["Metadata"]["checkov"]["skip"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|s| text(&s["id"]) == "CKV_AWS_115"),
            "concurrency is capped, not skipped"
        );
    }
}

/// Each function's declared route table is the template's list of its routes, and who may call
/// each agrees with API Gateway's authorization: the IAM routes are exactly the service routes.
#[test]
fn declared_routes_are_the_templates_and_iam_routes_are_service_routes() {
    use keyward::auth::Access;
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let template = keyward_local::RouteTable::from_template(&yaml).unwrap();
    let deployed: BTreeSet<(String, String, bool)> =
        template.routes().iter().map(|r| (r.function.clone(), r.key(), r.iam)).collect();
    let declared: BTreeSet<(String, String, bool)> = keyward_local::all_routes()
        .iter()
        .flat_map(|routes| {
            routes
                .table()
                .map(|(key, access)| {
                    (routes.function().to_owned(), key.to_owned(), matches!(access, Access::Service(_)))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(declared, deployed, "(function, route key, IAM) in the route tables and in template.yaml");
}

/// `create_table` (the local gateway's bootstrap, every test table) makes the table the template
/// deploys: the same keys, index, billing and expiry attribute.
#[tokio::test]
async fn create_table_makes_the_table_the_template_deploys() {
    let table = keyward_tests::TestTable::new().await;
    let client = aws_sdk_dynamodb::Client::new(&keyward_tests::aws().await);
    let described = client.describe_table().table_name(&table.name).send().await.unwrap();
    let described = described.table().unwrap();
    let ttl = client.describe_time_to_live().table_name(&table.name).send().await.unwrap();
    let made = serde_json::json!({
        "BillingMode": described.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()),
        "AttributeDefinitions": described.attribute_definitions().iter().map(|a| (a.attribute_name(), a.attribute_type().as_str())).collect::<BTreeMap<_, _>>(),
        "KeySchema": described.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect::<Vec<_>>(),
        "GlobalSecondaryIndexes": described.global_secondary_indexes().iter().map(|g| (
            g.index_name().unwrap_or_default(),
            g.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect::<Vec<_>>(),
            g.projection().and_then(|p| p.projection_type()).map(|p| p.as_str()),
        )).collect::<Vec<_>>(),
        "TimeToLive": ttl.time_to_live_description().and_then(|t| t.attribute_name()),
    });
    let properties = &template()["Resources"]["Table"]["Properties"];
    let pairs = |value: &Value, name: &str, kind: &str| -> Vec<(String, String)> {
        value.as_sequence().unwrap().iter().map(|v| (text(&v[name]), text(&v[kind]))).collect()
    };
    let deployed = serde_json::json!({
        "BillingMode": text(&properties["BillingMode"]),
        "AttributeDefinitions": pairs(&properties["AttributeDefinitions"], "AttributeName", "AttributeType").into_iter().collect::<BTreeMap<_, _>>(),
        "KeySchema": pairs(&properties["KeySchema"], "AttributeName", "KeyType"),
        "GlobalSecondaryIndexes": properties["GlobalSecondaryIndexes"].as_sequence().unwrap().iter().map(|g| (
            text(&g["IndexName"]),
            pairs(&g["KeySchema"], "AttributeName", "KeyType"),
            Some(text(&g["Projection"]["ProjectionType"])),
        )).collect::<Vec<_>>(),
        "TimeToLive": Some(text(&properties["TimeToLiveSpecification"]["AttributeName"])),
    });
    assert_eq!(made, deployed);
}

/// The keyring's operator (`keyward-admin keyring`) is a statement only when `KeyringAdminArn` is
/// set, may make branch keys only without their plaintext, moves them inside KMS, and is bound to
/// keyward's encryption context like the functions.
#[test]
fn the_keyring_operator_is_optional_and_bound_to_keywards_contexts() {
    let template = template();
    let statements = template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let conditional: Vec<&serde_norway::value::TaggedValue> = statements
        .iter()
        .filter_map(|s| match s {
            Value::Tagged(tagged) => Some(tagged.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(conditional.len(), 1);
    let branches = conditional[0].value.as_sequence().unwrap();
    assert_eq!((conditional[0].tag.to_string().as_str(), text(&branches[0]).as_str()), ("!If", "HasKeyringAdmin"));
    assert_eq!(text(&branches[2]), "!Ref AWS::NoValue");
    let admin = &branches[1];
    assert_eq!(text(&admin["Principal"]["AWS"]), "!Ref KeyringAdminArn");
    let actions: BTreeSet<String> = list(&admin["Action"]).into_iter().collect();
    let expected: BTreeSet<String> =
        ["kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
            .map(String::from)
            .into();
    assert_eq!(actions, expected);
    let keys: BTreeSet<String> =
        list(&admin["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]).into_iter().collect();
    assert!(keys.contains("keyward:branch-key") && keys.contains("keyward:purpose"), "{keys:?}");
    assert_eq!(
        text(&template["Conditions"]["HasKeyringAdmin"]),
        text(&serde_norway::from_str::<Value>("!Not [!Equals [!Ref KeyringAdminArn, \"\"]]").unwrap())
    );
}

/// The functions wrap under the stack's key unless `KmsKeyArn` names another, and accept the keys
/// in `PreviousKmsKeyArns` while branch keys move. (What each role may do in the table:
/// `each_role_is_exactly_the_documented_table`.)
#[test]
fn the_keyring_settings_reach_the_functions() {
    let template = template();
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    let key = serde_norway::to_string(&env["KEYWARD_KMS_KEY_ID"]).unwrap();
    assert!(
        key.contains("!If")
            && key.contains("HasOtherKmsKey")
            && key.contains("KmsKeyArn")
            && key.contains("DataKey.Arn"),
        "{key}"
    );
    assert_eq!(text(&env["KEYWARD_KMS_PREVIOUS_KEY_IDS"]), "!Ref PreviousKmsKeyArns");
}

/// Every function's DynamoDB statements are bound to the partitions it uses, and the keyring
/// partitions among them are exactly its purposes in the key policy: a function that may not use
/// a purpose's branch keys may not read or replace them either.
#[test]
fn every_role_is_bound_to_its_partitions_and_its_purposes_branch_keys() {
    let template = template();
    let grants = grants();
    let resources = template["Resources"].as_mapping().unwrap();
    let mut functions = 0;
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        functions += 1;
        let name = text(name);
        let statements = resource["Properties"]["Policies"].as_sequence().unwrap().iter();
        let statements = statements.filter_map(|p| p["Statement"].as_sequence()).flatten();
        let dynamodb: Vec<&Value> =
            statements.filter(|s| list(&s["Action"]).iter().any(|a| a.starts_with("dynamodb:"))).collect();
        assert!(!dynamodb.is_empty(), "{name} uses the table");
        let mut keyring = BTreeSet::new();
        for statement in dynamodb {
            let partitions = list(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
            // A kind of partition (`USER#*`) or one purpose's keyring; an unbound statement reads `null`.
            let bound =
                |p: &String| (p.ends_with("#*") && p != "KEYRING#*") || (p.starts_with("KEYRING#") && !p.contains('*'));
            assert!(partitions.iter().all(bound), "{name}: a statement reaches {partitions:?}");
            keyring.extend(partitions.iter().filter_map(|p| p.strip_prefix("KEYRING#")).map(str::to_owned));
        }
        let purposes: BTreeSet<String> =
            grants.iter().filter(|g| g.0 == format!("{name}Role")).map(|g| g.2.clone()).collect();
        assert_eq!(keyring, purposes, "{name}: its keyring partitions are its key-policy purposes");
    }
    assert_eq!(functions, 7);
}

/// `(function, action, partition)` each function's role in the template allows.
fn templated_accesses() -> BTreeSet<(String, String, String)> {
    let template = template();
    let mut accesses = BTreeSet::new();
    for resource in template["Resources"].as_mapping().unwrap().values() {
        let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() else { continue };
        let statements = resource["Properties"]["Policies"].as_sequence().unwrap().iter();
        for statement in statements.filter_map(|p| p["Statement"].as_sequence()).flatten() {
            let actions = list(&statement["Action"]);
            let partitions = list(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
            for action in actions.iter().filter(|a| a.starts_with("dynamodb:")) {
                for partition in &partitions {
                    accesses.insert((binary.to_owned(), action.clone(), partition.clone()));
                }
            }
        }
    }
    accesses
}

/// Roles no broader than their code: each function's DynamoDB statements allow exactly the rows of
/// SECURITY.md's table (the role audit checks that the code uses each of them), and only
/// `internal-keys`' mark of a key's use is bound to the attributes it writes, with no item read back.
#[test]
fn each_role_is_exactly_the_documented_table() {
    let (documented, templated) = (keyward_tests::iam::documented_accesses(), templated_accesses());
    assert!(documented.len() > 40, "{} rows", documented.len());
    let extra: Vec<_> = templated.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&templated).collect();
    assert!(extra.is_empty(), "the template allows what SECURITY.md does not say: {extra:?}");
    assert!(missing.is_empty(), "SECURITY.md says what the template does not allow: {missing:?}");
    assert!(
        !templated.iter().any(|(_, action, p)| action == "dynamodb:DeleteItem" && p == "AUDIT#*"),
        "no audit deletes"
    );
    let template = template();
    let internal_keys = &template["Resources"]["InternalKeysFunction"]["Properties"]["Policies"];
    let statements = internal_keys.as_sequence().unwrap().iter().filter_map(|p| p["Statement"].as_sequence()).flatten();
    let update = statements.clone().find(|s| list(&s["Action"]) == ["dynamodb:UpdateItem"]).expect("its UpdateItem");
    assert_eq!(
        list(&update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]),
        ["pk", "sk", "last_used_at"]
    );
    assert_eq!(
        list(&update["Condition"]["StringEqualsIfExists"]["dynamodb:ReturnValues"]),
        ["NONE", "UPDATED_OLD", "UPDATED_NEW"]
    );
}

/// Retiring a branch key version waits the cache TTL plus the longest invocation
/// (`keyring::LONGEST_INVOCATION`): no function may run longer.
#[test]
fn no_function_runs_longer_than_the_keyring_waits_for() {
    let template = template();
    let longest = keyward::use_cases::keyring::LONGEST_INVOCATION.as_secs();
    let global = template["Globals"]["Function"]["Timeout"].as_u64().expect("a global timeout");
    let mut timeouts = vec![global];
    for resource in template["Resources"].as_mapping().unwrap().values() {
        timeouts.extend(resource["Properties"]["Timeout"].as_u64());
    }
    assert!(timeouts.len() > 2 && timeouts.iter().all(|t| *t <= longest), "{timeouts:?} > {longest}");
}
