use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Wraps a provider and counts its calls, to prove what the data-key cache saves.
struct Counting {
    inner: LocalKeyProvider,
    unwraps: AtomicUsize,
}

#[async_trait]
impl KeyProvider for Counting {
    fn kind(&self) -> KeyProviderKind {
        self.inner.kind()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    async fn generate(&self, context: &EncryptionContext) -> Result<(DataKey, Vec<u8>), CryptoError> {
        self.inner.generate(context).await
    }
    async fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey, CryptoError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(wrapped, context).await
    }
}

fn local() -> LocalKeyProvider {
    LocalKeyProvider::from_master(DataKey::random())
}

fn envelope(provider: impl KeyProvider + 'static) -> Envelope {
    Envelope::new(Arc::new(provider), Duration::from_secs(300))
}

/// No cache: every open goes to the provider, so tampering with the wrapped key is seen.
fn uncached(provider: Arc<dyn KeyProvider>) -> Envelope {
    Envelope::new(provider, Duration::ZERO)
}

fn ctx(user: &str, purpose: Purpose, name: &str) -> EncryptionContext {
    EncryptionContext::new(&UserId::parse(user).unwrap(), purpose, name)
}

const SECRET: &[u8] = b"sk-proj-PLANTED-abcdefghijklmnopqrstuvwxyz0123456789";

#[tokio::test]
async fn round_trip_through_bytes() {
    let env = envelope(local());
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = env.seal(SECRET, &alice).await.unwrap();
    let decoded = Sealed::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(decoded, sealed);
    assert_eq!(&env.open(&decoded, &alice).await.unwrap()[..], SECRET);
    assert!(!sealed.to_bytes().windows(8).any(|w| w == &SECRET[..8]), "plaintext visible in the record");
}

#[tokio::test]
async fn every_seal_uses_a_fresh_data_key_and_nonce() {
    let env = envelope(local());
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let a = env.seal(SECRET, &alice).await.unwrap();
    let b = env.seal(SECRET, &alice).await.unwrap();
    assert_ne!(a.wrapped_key, b.wrapped_key);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[tokio::test]
async fn every_single_byte_flip_is_refused() {
    let provider: Arc<dyn KeyProvider> = Arc::new(local());
    let env = uncached(Arc::clone(&provider));
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = env.seal(SECRET, &alice).await.unwrap();
    let bytes = sealed.to_bytes();
    let mut refused = 0;
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        let outcome = match Sealed::from_bytes(&tampered) {
            Err(_) => None,
            Ok(record) => env.open(&record, &alice).await.ok(),
        };
        assert!(outcome.is_none(), "flip at byte {i} of {} was accepted", bytes.len());
        refused += 1;
    }
    assert_eq!(refused, bytes.len());
    // The untouched record still opens: the refusals were the flips, not a broken envelope.
    assert_eq!(&env.open(&sealed, &alice).await.unwrap()[..], SECRET);
}

#[tokio::test]
async fn flips_in_each_field_are_refused_even_with_a_warm_cache() {
    let env = envelope(local());
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = env.seal(SECRET, &alice).await.unwrap();
    for field in ["nonce", "ciphertext", "tag", "wrapped_key"] {
        let len = match field {
            "nonce" => NONCE_LEN,
            "ciphertext" => sealed.ciphertext.len() - 16,
            "tag" => 16,
            _ => sealed.wrapped_key.len(),
        };
        for i in 0..len {
            let mut t = sealed.clone();
            match field {
                "nonce" => t.nonce[i] ^= 0x80,
                "ciphertext" => t.ciphertext[i] ^= 0x80,
                "tag" => {
                    let at = t.ciphertext.len() - 16 + i;
                    t.ciphertext[at] ^= 0x80
                }
                _ => t.wrapped_key[i] ^= 0x80,
            }
            assert!(env.open(&t, &alice).await.is_err(), "{field} byte {i}");
        }
    }
}

#[tokio::test]
async fn another_users_or_providers_context_is_refused() {
    let env = envelope(local());
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = env.seal(SECRET, &alice).await.unwrap();
    for other in [
        ctx("auth0|bob", Purpose::LlmKey, "openai"),
        ctx("auth0|alice", Purpose::LlmKey, "anthropic"),
        ctx("auth0|alice", Purpose::Connection(crate::model::OAuthProvider::Google), "openai"),
    ] {
        assert!(matches!(env.open(&sealed, &other).await, Err(CryptoError::Refused)), "{other:?}");
        // Also with no cache at all: the wrapped key itself is bound to the context.
        assert!(uncached(Arc::new(local())).open(&sealed, &other).await.is_err());
    }
}

#[tokio::test]
async fn contexts_are_unambiguous() {
    // Field boundaries are length-prefixed: ("a|b", "c") and ("a", "b|c") must differ.
    let a = ctx("a|b", Purpose::LlmKey, "c").aad(FORMAT_VERSION, KeyProviderKind::Local);
    let b = ctx("a", Purpose::LlmKey, "b|c").aad(FORMAT_VERSION, KeyProviderKind::Local);
    assert_ne!(a, b);
}

#[tokio::test]
async fn warm_opens_make_no_provider_call() {
    let counting = Arc::new(Counting { inner: local(), unwraps: AtomicUsize::new(0) });
    let writer = Envelope::new(counting.clone(), Duration::from_secs(300));
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = writer.seal(SECRET, &alice).await.unwrap();
    // A fresh envelope (a new cold start) must unwrap once, then serve from its cache.
    let reader = Envelope::new(counting.clone(), Duration::from_secs(300));
    for _ in 0..5 {
        assert_eq!(&reader.open(&sealed, &alice).await.unwrap()[..], SECRET);
    }
    assert_eq!(counting.unwraps.load(Ordering::SeqCst), 1);
    // The writer cached the key it made, so reading back its own write needs no unwrap at all.
    writer.open(&sealed, &alice).await.unwrap();
    assert_eq!(counting.unwraps.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn records_from_another_key_or_version_are_refused() {
    let env = envelope(local());
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = env.seal(SECRET, &alice).await.unwrap();
    let other = envelope(local());
    assert!(matches!(other.open(&sealed, &alice).await, Err(CryptoError::ForeignKey(_))));

    let mut bytes = sealed.to_bytes();
    for version in [0u8, 2, 255] {
        bytes[2] = version;
        assert!(matches!(Sealed::from_bytes(&bytes), Err(CryptoError::UnsupportedVersion(v)) if v == version));
    }
}

#[test]
fn truncated_or_garbage_records_are_malformed() {
    assert!(Sealed::from_bytes(b"").is_err());
    assert!(Sealed::from_bytes(b"KW").is_err());
    assert!(Sealed::from_bytes(b"XX\x01\x02").is_err());
    let record = Sealed {
        version: FORMAT_VERSION,
        provider: KeyProviderKind::Local,
        key_id: "local:00".into(),
        wrapped_key: vec![1; 60],
        nonce: [2; NONCE_LEN],
        ciphertext: vec![3; 40],
    };
    let bytes = record.to_bytes();
    for cut in 0..bytes.len() - 24 {
        assert!(Sealed::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(Sealed::from_bytes(&bytes).unwrap(), record);
}

#[tokio::test]
async fn master_key_file_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let first = LocalKeyProvider::open_or_create(dir.path()).unwrap();
    let path = dir.path().join(LocalKeyProvider::FILE_NAME);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let again = LocalKeyProvider::open_or_create(dir.path()).unwrap();
    assert_eq!(first.key_id(), again.key_id());

    // A record sealed before a restart opens after it.
    let alice = ctx("auth0|alice", Purpose::LlmKey, "openai");
    let sealed = envelope(first).seal(SECRET, &alice).await.unwrap();
    assert_eq!(&envelope(again).open(&sealed, &alice).await.unwrap()[..], SECRET);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(LocalKeyProvider::open_or_create(dir.path()).is_err(), "a world-readable key is refused");
}

proptest::proptest! {
    /// Whatever bytes the table holds, decoding refuses or succeeds; it never panics.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = Sealed::from_bytes(&bytes);
    }

    /// A well-formed prefix followed by arbitrary bytes still decodes or refuses, never panics, and
    /// anything that decodes round-trips to the same bytes.
    #[test]
    fn decoded_records_round_trip(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        let mut bytes = b"KW\x01\x02\x00\x03abc\x00\x02xy".to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(record) = Sealed::from_bytes(&bytes) {
            proptest::prop_assert_eq!(record.to_bytes(), bytes);
        }
    }
}

/// Local mode keeps its master key only in a real file of its own, in a real folder of its own:
/// a symbolic link (which could point anywhere, and be re-pointed) is refused.
#[test]
fn a_symlinked_master_key_or_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    LocalKeyProvider::open_or_create(&real).unwrap();
    let linked_dir = dir.path().join("linked");
    std::os::unix::fs::symlink(&real, &linked_dir).unwrap();
    let Err(CryptoError::KeyProvider(why)) = LocalKeyProvider::open_or_create(&linked_dir) else {
        panic!("a symlinked data folder was accepted")
    };
    assert!(why.contains("symbolic link"), "{why}");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::os::unix::fs::symlink(real.join(LocalKeyProvider::FILE_NAME), other.join(LocalKeyProvider::FILE_NAME))
        .unwrap();
    let Err(CryptoError::KeyProvider(why)) = LocalKeyProvider::open_or_create(&other) else {
        panic!("a symlinked master key was accepted")
    };
    assert!(why.contains("symbolic link"), "{why}");
}
