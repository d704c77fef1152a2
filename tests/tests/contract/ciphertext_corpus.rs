//! Ciphertext corpus: sealed records that were changed, swapped or relabelled are refused and no
//! plaintext comes back, at the envelope (local key and KMS on moto, for each purpose keyward
//! seals, in the branch-key format keyward writes and in format 1, which still opens) and through
//! the API (the internal key fetch on a tampered DynamoDB item).
//!
//! - every single-byte change: on the local key, all 255 other values at every position; on KMS,
//!   three per position (`^0x01`, `^0x80`, `^0xff`);
//! - fields swapped between two users, two providers and two purposes, one field at a time and whole;
//! - the format relabelled (a downgrade or an upgrade), in the bytes and in the decoded record;
//! - the branch key version relabelled, to a rotated-out version of the same purpose, to another
//!   purpose's version and to one that does not exist.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyward::crypto::{
    CryptoError, EncryptionContext, Envelope, KeyMaintenance, KmsKeyProvider, LocalKeyProvider, Purpose, SealFormat,
    Sealed, Wrapping, new_branch_key,
};
use keyward::model::{Provider, SystemClock, UserId};
use keyward::secret::DataKey;
use keyward::store::table::{Attr, Changes, Key, Table};
use keyward::store::{DynamoTable, MemoryTable, Store};
use keyward_sandbox::auth0::sandbox_subject;
use keyward_tests::api::{Backend, LocalApi, NOTES_SERVICE, in_path};
use keyward_tests::{aws, kms_key};

const PLAINTEXT: &[u8] = b"sk-proj-PLANTED-corpus-0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
const PURPOSES: [(Purpose, &str); 4] = [
    (Purpose::LlmKey, "openai"),
    (Purpose::Auth0Refresh, "family"),
    (Purpose::Connection(keyward::model::OAuthProvider::Google), "refresh-token"),
    (Purpose::Connection(keyward::model::OAuthProvider::Microsoft), "refresh-token"),
];

fn user(name: &str) -> UserId {
    UserId::parse(&format!("auth0|{name}")).unwrap()
}

/// One deployment's keys: a provider and the branch keys in a table of its own.
struct Keys {
    provider: Arc<dyn KeyMaintenance>,
    store: Store,
}

impl Keys {
    fn local() -> Self {
        Self::on(Arc::new(LocalKeyProvider::from_master(DataKey::random())))
    }

    async fn kms() -> Self {
        let aws = aws().await;
        let client = aws_sdk_kms::Client::new(&aws);
        let key = kms_key(&aws).await;
        Self::on(Arc::new(KmsKeyProvider::new(client, key)))
    }

    fn on(provider: Arc<dyn KeyMaintenance>) -> Self {
        Self { provider, store: Store::new(Arc::new(MemoryTable::default())) }
    }

    /// An instance writing `format`. Format 1 caches nothing, so a changed wrapped data key is
    /// always put to the provider; format 2's branch keys are not what the corpus changes.
    fn envelope(&self, format: SealFormat) -> Envelope {
        let ttl = match format {
            SealFormat::BranchKeys => Duration::from_secs(300),
            SealFormat::DataKeyPerRecord => Duration::ZERO,
        };
        Envelope::new(self.provider.clone(), Arc::new(self.store.clone()), ttl, Arc::new(SystemClock)).writing(format)
    }
}

const FORMATS: [SealFormat; 2] = [SealFormat::BranchKeys, SealFormat::DataKeyPerRecord];

/// Opens `bytes` as a stored record would be: decoded, then opened. `Ok` only if both succeed.
async fn open_stored(envelope: &Envelope, bytes: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, CryptoError> {
    let sealed = Sealed::from_bytes(bytes)?;
    Ok(envelope.open(&sealed, context).await?.to_vec())
}

/// Changes every byte of a sealed record to each of `values(original)`; counts the cases.
async fn every_byte_change_is_refused(keys: &Keys, values: fn(u8) -> Vec<u8>) -> usize {
    let mut cases = 0;
    for format in FORMATS {
        let envelope = keys.envelope(format);
        for (purpose, name) in PURPOSES {
            let context = EncryptionContext::new(&user("ada"), purpose, name);
            let bytes = envelope.seal(PLAINTEXT, &context).await.unwrap().to_bytes();
            assert_eq!(open_stored(&envelope, &bytes, &context).await.unwrap(), PLAINTEXT);
            for position in 0..bytes.len() {
                for value in values(bytes[position]) {
                    let mut changed = bytes.clone();
                    changed[position] = value;
                    let opened = open_stored(&envelope, &changed, &context).await;
                    assert!(opened.is_err(), "{format:?} {purpose:?}: byte {position} set to {value:#04x} still opens");
                    cases += 1;
                }
            }
        }
    }
    cases
}

#[tokio::test]
async fn every_single_byte_change_is_refused_on_the_local_key() {
    let cases = every_byte_change_is_refused(&Keys::local(), |b| (0..=255).filter(|v| *v != b).collect()).await;
    assert!(cases > 2 * 4 * 150 * 255, "{cases}");
}

#[tokio::test]
async fn single_byte_changes_are_refused_on_kms() {
    let cases = every_byte_change_is_refused(&Keys::kms().await, |b| vec![b ^ 0x01, b ^ 0x80, b ^ 0xff]).await;
    assert!(cases > 2 * 4 * 150 * 3, "{cases}");
}

/// The fields of a record of either format, by name.
fn fields(sealed: &Sealed) -> &'static [&'static str] {
    match sealed.wrapping {
        Wrapping::Branch { .. } => &["version", "salt", "commitment", "nonce", "ciphertext", "whole record"],
        Wrapping::DataKey { .. } => &["key id", "wrapped key", "nonce", "ciphertext", "whole record"],
    }
}

/// One field of `a` replaced by `b`'s (both of one format).
fn with_field(a: &Sealed, b: &Sealed, field: &str) -> Sealed {
    let mut out = a.clone();
    match (&mut out.wrapping, &b.wrapping, field) {
        (_, _, "nonce") => out.nonce = b.nonce,
        (_, _, "ciphertext") => out.ciphertext = b.ciphertext.clone(),
        (_, _, "whole record") => out = b.clone(),
        (Wrapping::Branch { version, .. }, Wrapping::Branch { version: other, .. }, "version") => *version = *other,
        (Wrapping::Branch { salt, .. }, Wrapping::Branch { salt: other, .. }, "salt") => *salt = *other,
        (Wrapping::Branch { commitment, .. }, Wrapping::Branch { commitment: other, .. }, "commitment") => {
            *commitment = *other
        }
        (Wrapping::DataKey { key_id, .. }, Wrapping::DataKey { key_id: other, .. }, "key id") => {
            *key_id = other.clone()
        }
        (Wrapping::DataKey { wrapped_key, .. }, Wrapping::DataKey { wrapped_key: other, .. }, "wrapped key") => {
            *wrapped_key = other.clone()
        }
        (_, _, other) => unreachable!("{other}"),
    }
    out
}

async fn swaps_are_refused(envelope: &Envelope) -> usize {
    let ada_openai = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "openai");
    let bob_openai = EncryptionContext::new(&user("bob"), Purpose::LlmKey, "openai");
    let ada_anthropic = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "anthropic");
    let ada_session = EncryptionContext::new(&user("ada"), Purpose::Auth0Refresh, "openai");
    let ada_google =
        EncryptionContext::new(&user("ada"), Purpose::Connection(keyward::model::OAuthProvider::Google), "openai");
    let records = [&ada_openai, &bob_openai, &ada_anthropic, &ada_session, &ada_google];
    let mut sealed = Vec::new();
    for context in records {
        sealed.push(envelope.seal(PLAINTEXT, context).await.unwrap());
    }
    let mut cases = 0;
    for (i, (target, target_context)) in sealed.iter().zip(records).enumerate() {
        for (j, source) in sealed.iter().enumerate().filter(|(j, _)| *j != i) {
            for field in fields(target) {
                let swapped = with_field(target, source, field);
                if swapped == *target {
                    continue; // the same key id on both: nothing was swapped
                }
                let opened = envelope.open(&swapped, target_context).await;
                assert!(opened.is_err(), "record {j}'s {field} in record {i} still opens");
                cases += 1;
            }
        }
        // The untouched record still opens under its own context only.
        assert_eq!(envelope.open(target, target_context).await.unwrap().as_slice(), PLAINTEXT);
        for (j, other) in records.iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(envelope.open(target, other).await.is_err(), "record {i} opens as record {j}");
        }
    }
    cases
}

#[tokio::test]
async fn fields_swapped_between_users_providers_and_purposes_are_refused() {
    for keys in [Keys::local(), Keys::kms().await] {
        for format in FORMATS {
            let cases = swaps_are_refused(&keys.envelope(format)).await;
            assert!(cases >= 5 * 4 * 4, "{format:?}: {cases}");
        }
    }
}

#[tokio::test]
async fn a_relabelled_format_is_refused() {
    for keys in [Keys::local(), Keys::kms().await] {
        for format in FORMATS {
            let envelope = keys.envelope(format);
            let context = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "openai");
            let sealed = envelope.seal(PLAINTEXT, &context).await.unwrap();
            for label in [0u8, 1, 2, 3, 255].into_iter().filter(|l| *l != sealed.format()) {
                let mut bytes = sealed.to_bytes();
                bytes[2] = label;
                match Sealed::from_bytes(&bytes) {
                    Err(CryptoError::UnsupportedVersion(v)) => assert_eq!(v, label),
                    // Read as the other format: the layout no longer adds up, or it opens nothing.
                    Err(CryptoError::Malformed) => {}
                    Ok(other) => assert!(envelope.open(&other, &context).await.is_err(), "{format:?} as {label}"),
                    Err(other) => panic!("{format:?} as {label}: {other:?}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn a_relabelled_branch_key_version_is_refused() {
    for keys in [Keys::local(), Keys::kms().await] {
        let envelope = keys.envelope(SealFormat::BranchKeys);
        let context = EncryptionContext::new(&user("ada"), Purpose::LlmKey, "openai");
        let first = envelope.seal(PLAINTEXT, &context).await.unwrap();
        let session = EncryptionContext::new(&user("ada"), Purpose::Auth0Refresh, "family");
        let session_version = envelope.seal(PLAINTEXT, &session).await.unwrap().branch_version().unwrap();
        // Rotate: a second version of the same purpose, which the next instance seals under.
        let keyring = keys.store.keyring();
        let old = first.branch_version().unwrap();
        let next = new_branch_key(keys.provider.as_ref(), Purpose::LlmKey, keyward::store::now_epoch()).await.unwrap();
        assert!(keyring.rotate(&next, Some(old)).await.unwrap());
        let later = keys.envelope(SealFormat::BranchKeys).seal(PLAINTEXT, &context).await.unwrap();
        assert_eq!(later.branch_version(), Some(next.version));

        let relabel = |sealed: &Sealed, to| {
            let mut out = sealed.clone();
            if let Wrapping::Branch { version, .. } = &mut out.wrapping {
                *version = to;
            }
            out
        };
        let fresh = keys.envelope(SealFormat::BranchKeys);
        for (record, to, why) in [
            (&first, next.version, "old to new"),
            (&later, old, "new to old"),
            (&first, session_version, "another purpose's version"),
        ] {
            let opened = fresh.open(&relabel(record, to), &context).await;
            assert!(opened.is_err(), "{why}: {opened:?}");
        }
        let unknown = keyward::crypto::BranchVersion::random();
        assert!(matches!(
            fresh.open(&relabel(&first, unknown), &context).await,
            Err(CryptoError::UnknownBranchKey { .. })
        ));
        // Both versions still open what they sealed.
        assert_eq!(fresh.open(&first, &context).await.unwrap().as_slice(), PLAINTEXT);
        assert_eq!(fresh.open(&later, &context).await.unwrap().as_slice(), PLAINTEXT);
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

    // One change in each region of the format-2 layout: magic, format, branch key version, salt,
    // commitment, nonce, ciphertext, and the GCM tag (the last byte).
    assert_eq!(stored.sealed.format(), 2);
    let positions = [0, 2, 3, 18, 19, 51, 83, 95, bytes.len() - 1];
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
