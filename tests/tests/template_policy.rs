//! The KMS key policy in `template.yaml` matches what the code does: the encryption-context keys it
//! requires are the ones keyward sends, every purpose it names exists, each purpose can be sealed
//! and opened by some role, `internal-keys` can only open LLM keys, and `stripe-webhook` is not
//! named at all. (moto does not enforce key policies, so this is where drift would show.)

use std::collections::{BTreeMap, BTreeSet};

use keyward::crypto::{EncryptionContext, Purpose};
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

/// `(role, action, purpose, context keys)` of every statement that lets a role use the key.
fn grants() -> Vec<(String, String, String, BTreeSet<String>)> {
    let template: Value =
        serde_norway::from_str(&std::fs::read_to_string(keyward_local::default_template_path()).unwrap()).unwrap();
    let statements = template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"].as_sequence().unwrap();
    let mut grants = Vec::new();
    for statement in statements {
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
    let sent: BTreeSet<String> = EncryptionContext::new(&user, Purpose::LlmKey, "openai")
        .kms_pairs()
        .iter()
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
    let known: BTreeSet<String> = Purpose::ALL.iter().map(|p| p.as_str().to_owned()).collect();
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
    // Money, not secrets.
    assert!(of("StripeWebhookFunctionRole").is_empty());
    // The device flow seals sessions; it never opens one.
    assert_eq!(of("DeviceAuthFunctionRole"), BTreeSet::from([("kms:GenerateDataKey".into(), "auth0-refresh".into())]));
    for role in ["LlmKeysFunctionRole", "OAuthRefreshFunctionRole"] {
        assert!(of(role).iter().all(|(_, p)| p != "auth0-refresh"), "{role} may not touch sessions");
    }
    // PKCE verifiers of redirects in flight: sealed and opened by the two functions that redirect.
    for role in ["LoginCallbackFunctionRole", "OAuthRefreshFunctionRole"] {
        assert!(of(role).contains(&("kms:Decrypt".into(), "oauth-state".into())), "{role}");
    }
}
