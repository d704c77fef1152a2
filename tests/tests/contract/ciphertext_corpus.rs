//! Ciphertext corpus: sealed records that were changed, swapped or relabelled are refused and no
//! plaintext comes back, at the envelope (local key and KMS on moto, for each purpose keyward
//! seals) and through the API (the internal key fetch on a tampered DynamoDB item).
//!
//! - every single-byte change: on the local key, all 255 other values at every position; on KMS,
//!   three per position (`^0x01`, `^0x80`, `^0xff`), since each reaches moto;
//! - fields swapped between two users and between two providers, one field at a time and whole;
//! - the format version relabelled (a downgrade), in the bytes and in the decoded record.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyward::crypto::{
    CryptoError, EncryptionContext, Envelope, KeyProvider, KmsKeyProvider, LocalKeyProvider, Purpose, Sealed,
};
use keyward::model::Provider;
use keyward::model::UserId;
use keyward::secret::DataKey;
use keyward::store::DynamoTable;
use keyward::store::table::{Attr, Changes, Key, Table};
use keyward_sandbox::auth0::sandbox_subject;
use keyward_tests::api::{Backend, LocalApi, NOTES_SERVICE, in_path};
use keyward_tests::{aws, kms_key};

const PLAINTEXT: &[u8] = b"sk-proj-PLANTED-corpus-0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
const PURPOSES: [(Purpose, &str); 3] = [
    (Purpose::LlmKey, "openai"),
    (Purpose::Auth0Refresh, ""),
    (Purpose::Connection(keyward::model::OAuthProvider::Google), ""),
];

fn user(name: &str) -> UserId {
    UserId::parse(&format!("auth0|{name}")).unwrap()
}

fn local_envelope() -> Envelope {
    // No cache: every open unwraps, so a changed wrapped key is always put to the provider.
    Envelope::new(Arc::new(LocalKeyProvider::from_master(DataKey::random())), Duration::ZERO)
}

async fn kms_envelope() -> Envelope {
    let client = aws_sdk_kms::Client::new(&aws().await);
    let key = kms_key(&client).await;
    Envelope::new(Arc::new(KmsKeyProvider::new(client, key)) as Arc<dyn KeyProvider>, Duration::ZERO)
}

/// Opens `bytes` as a stored record would be: decoded, then opened. `Ok` only if both succeed.
async fn open_stored(envelope: &Envelope, bytes: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, CryptoError> {
    let sealed = Sealed::from_bytes(bytes)?;
    Ok(envelope.open(&sealed, context).await?.to_vec())
}

/// Changes every byte of a sealed record to each of `values(original)`; counts the cases.
async fn every_byte_change_is_refused(envelope: &Envelope, values: fn(u8) -> Vec<u8>) -> usize {
    let mut cases = 0;
    for (purpose, name) in PURPOSES {
        let context = EncryptionContext::new(&user("ada"), purpose, name);
        let bytes = envelope.seal(PLAINTEXT, &context).await.unwrap().to_bytes();
        assert_eq!(open_stored(envelope, &bytes, &context).await.unwrap(), PLAINTEXT);
        for position in 0..bytes.len() {
            for value in values(bytes[position]) {
                let mut changed = bytes.clone();
                changed[position] = value;
                let opened = open_stored(envelope, &changed, &context).await;
                assert!(opened.is_err(), "{purpose:?}: byte {position} set to {value:#04x} still opens");
                cases += 1;
            }
        }
    }
    cases
}

#[tokio::test]
async fn every_single_byte_change_is_refused_on_the_local_key() {
    let cases = every_byte_change_is_refused(&local_envelope(), |b| (0..=255).filter(|v| *v != b).collect()).await;
    assert!(cases > 3 * 100 * 255, "{cases}");
}

#[tokio::test]
async fn single_byte_changes_are_refused_on_kms() {
    let cases = every_byte_change_is_refused(&kms_envelope().await, |b| vec![b ^ 0x01, b ^ 0x80, b ^ 0xff]).await;
    assert!(cases > 3 * 100 * 3, "{cases}");
}

/// One field of `a` replaced by `b`'s.
fn with_field(a: &Sealed, b: &Sealed, field: &str) -> Sealed {
    let mut out = a.clone();
    match field {
        "wrapped_key" => out.wrapped_key = b.wrapped_key.clone(),
        "nonce" => out.nonce = b.nonce,
        "ciphertext" => out.ciphertext = b.ciphertext.clone(),
        "whole record" => out = b.clone(),
        other => unreachable!("{other}"),
    }
    out
}

async fn swaps_are_refused(envelope: &Envelope) {
    let ada_openai = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "openai");
    let bob_openai = EncryptionContext::new(&user("bob"), Purpose::LlmKey, "openai");
    let ada_anthropic = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "anthropic");
    let ada_session = EncryptionContext::new(&user("ada"), Purpose::Auth0Refresh, "");
    let records = [&ada_openai, &bob_openai, &ada_anthropic, &ada_session];
    let mut sealed = Vec::new();
    for context in records {
        sealed.push(envelope.seal(PLAINTEXT, context).await.unwrap());
    }
    for (i, (target, target_context)) in sealed.iter().zip(records).enumerate() {
        for (j, source) in sealed.iter().enumerate().filter(|(j, _)| *j != i) {
            for field in ["wrapped_key", "nonce", "ciphertext", "whole record"] {
                let swapped = with_field(target, source, field);
                let opened = envelope.open(&swapped, target_context).await;
                assert!(opened.is_err(), "record {j}'s {field} in record {i} still opens");
            }
        }
        // The untouched record still opens under its own context only.
        assert_eq!(envelope.open(target, target_context).await.unwrap().as_slice(), PLAINTEXT);
    }
}

#[tokio::test]
async fn fields_swapped_between_users_providers_and_purposes_are_refused() {
    swaps_are_refused(&local_envelope()).await;
    swaps_are_refused(&kms_envelope().await).await;
}

#[tokio::test]
async fn a_downgraded_format_version_is_refused() {
    for envelope in [local_envelope(), kms_envelope().await] {
        let context = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "openai");
        let sealed = envelope.seal(PLAINTEXT, &context).await.unwrap();
        for version in [0u8, 2, 255] {
            let mut bytes = sealed.to_bytes();
            bytes[2] = version;
            assert!(matches!(Sealed::from_bytes(&bytes), Err(CryptoError::UnsupportedVersion(v)) if v == version));
            // A record decoded some other way and relabelled: the version is in the AES-GCM AAD.
            let relabelled = Sealed { version, ..sealed.clone() };
            assert!(matches!(envelope.open(&relabelled, &context).await, Err(CryptoError::Refused)), "v{version}");
        }
    }
}

/// Through the API: a DynamoDB item whose `sealed` attribute was changed in the table is refused by
/// the internal fetch with a 500 that carries no plaintext, and no provider is called with anything.
#[tokio::test]
async fn a_tampered_item_in_the_table_is_refused_by_the_api() {
    let api = LocalApi::start(Backend::Moto).await;
    let ada = UserId::parse(&sandbox_subject("ada@example.com")).unwrap();
    let plaintext = std::str::from_utf8(PLAINTEXT).unwrap();
    let stored = api.seed_llm_key(&ada, Provider::OpenAi, plaintext).await;
    let table = api.table().expect("moto backend");
    let raw = DynamoTable::new(table.client.clone(), &table.name);
    let item_key = Key::new(format!("USER#{ada}"), "LLMKEY#openai");
    let bytes = stored.sealed.to_bytes();
    let path = format!("/internal/users/{}/llm-keys?providers=openai", in_path(&ada));

    // One change in each region of the layout: magic, version, key provider, key id length, key id,
    // wrapped key length, wrapped key, nonce, ciphertext, and the GCM tag (the last byte).
    let key_id_len = u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
    let wrapped_at = 6 + key_id_len;
    let wrapped_len = u16::from_be_bytes([bytes[wrapped_at], bytes[wrapped_at + 1]]) as usize;
    let nonce_at = wrapped_at + 2 + wrapped_len;
    let positions = [0, 2, 3, 4, 6, wrapped_at, wrapped_at + 2, nonce_at, nonce_at + 12, bytes.len() - 1];
    for position in positions {
        let mut changed = bytes.clone();
        changed[position] ^= 0x01;
        raw.update(&item_key, Changes::default().set("sealed", Attr::B(changed)), None).await.unwrap();
        let response = api.signed("GET", &path, b"", NOTES_SERVICE, SystemTime::now()).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 500, "byte {position}: {body}");
        assert!(!body.contains(plaintext), "byte {position}");
    }
    raw.update(&item_key, Changes::default().set("sealed", Attr::B(bytes)), None).await.unwrap();
    let response = api.signed("GET", &path, b"", NOTES_SERVICE, SystemTime::now()).await;
    assert_eq!(response.status(), 200, "the restored record opens again");
}
