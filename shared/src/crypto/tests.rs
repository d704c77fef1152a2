use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::model::ManualClock;

/// Branch keys in memory (the store's table-backed keyring has its own contract tests).
#[derive(Default)]
struct Branches {
    versions: Mutex<HashMap<(Purpose, BranchVersion), WrappedBranchKey>>,
    active: Mutex<HashMap<Purpose, BranchVersion>>,
}

impl Branches {
    fn activate(&self, key: WrappedBranchKey) {
        self.active.lock().unwrap().insert(key.purpose, key.version);
        self.versions.lock().unwrap().insert((key.purpose, key.version), key);
    }
}

#[async_trait]
impl BranchKeyStore for Branches {
    async fn active(&self, purpose: Purpose) -> Result<Option<WrappedBranchKey>, CryptoError> {
        let Some(version) = self.active.lock().unwrap().get(&purpose).copied() else { return Ok(None) };
        self.version(purpose, version).await
    }
    async fn version(&self, purpose: Purpose, version: BranchVersion) -> Result<Option<WrappedBranchKey>, CryptoError> {
        Ok(self.versions.lock().unwrap().get(&(purpose, version)).cloned())
    }
    async fn create_first(&self, first: &WrappedBranchKey) -> Result<WrappedBranchKey, CryptoError> {
        if let Some(active) = self.active(first.purpose).await? {
            return Ok(active);
        }
        self.activate(first.clone());
        Ok(first.clone())
    }
}

/// One deployment's key material: a provider, its branch keys and a clock.
struct Deployment {
    provider: Arc<CountingKeyProvider<LocalKeyProvider>>,
    branches: Arc<Branches>,
    clock: Arc<ManualClock>,
}

impl Deployment {
    fn new() -> Self {
        Self {
            provider: Arc::new(CountingKeyProvider::new(LocalKeyProvider::from_master(DataKey::random()))),
            branches: Arc::default(),
            clock: Arc::new(ManualClock::at(1_800_000_000)),
        }
    }

    /// A new instance (cold start) with its own cache.
    fn instance(&self, ttl: Duration) -> Envelope {
        Envelope::new(self.provider.clone(), self.branches.clone(), ttl, self.clock.clone())
    }

    fn warm(&self) -> Envelope {
        self.instance(Duration::from_secs(300))
    }

    /// No cache: every open unwraps, so tampering with wrapped material is seen by the provider.
    fn uncached(&self) -> Envelope {
        self.instance(Duration::ZERO)
    }
}

fn envelope(provider: impl KeyProvider + 'static) -> Envelope {
    let clock = Arc::new(ManualClock::at(1_800_000_000));
    Envelope::new(Arc::new(provider), Arc::new(Branches::default()), Duration::from_secs(300), clock)
}

fn ctx(user: &str, purpose: Purpose, name: &str) -> EncryptionContext {
    EncryptionContext::new(&UserId::parse(user).unwrap(), purpose, name)
}

fn alice() -> EncryptionContext {
    ctx("auth0|alice", Purpose::LlmKey, "openai")
}

const SECRET: &[u8] = b"sk-proj-PLANTED-abcdefghijklmnopqrstuvwxyz0123456789";

fn branch_parts(sealed: &Sealed) -> (BranchVersion, [u8; SALT_LEN], [u8; COMMITMENT_LEN]) {
    match sealed.wrapping {
        Wrapping::Branch { version, salt, commitment } => (version, salt, commitment),
        Wrapping::DataKey { .. } => panic!("expected a format-2 record"),
    }
}

#[tokio::test]
async fn round_trip_through_bytes() {
    let env = Deployment::new().warm();
    let sealed = env.seal(SECRET, &alice()).await.unwrap();
    assert_eq!(sealed.format(), 2);
    let decoded = Sealed::from_bytes(&sealed.to_bytes()).unwrap();
    assert_eq!(decoded, sealed);
    assert_eq!(&env.open(&decoded, &alice()).await.unwrap()[..], SECRET);
    assert!(!sealed.to_bytes().windows(8).any(|w| w == &SECRET[..8]), "plaintext visible in the record");
}

#[tokio::test]
async fn every_seal_uses_a_fresh_salt_key_and_nonce() {
    let env = Deployment::new().warm();
    let a = env.seal(SECRET, &alice()).await.unwrap();
    let b = env.seal(SECRET, &alice()).await.unwrap();
    let ((va, salt_a, commit_a), (vb, salt_b, commit_b)) = (branch_parts(&a), branch_parts(&b));
    assert_eq!(va, vb, "one active version");
    assert_ne!(salt_a, salt_b);
    assert_ne!(commit_a, commit_b, "a fresh salt derives a fresh key");
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

/// Both formats: every byte of the record matters, warm cache or none.
#[tokio::test]
async fn every_single_byte_flip_is_refused() {
    let deployment = Deployment::new();
    for format in [SealFormat::BranchKeys, SealFormat::DataKeyPerRecord] {
        let sealed = deployment.warm().writing(format).seal(SECRET, &alice()).await.unwrap();
        let bytes = sealed.to_bytes();
        for reader in [deployment.warm(), deployment.uncached()] {
            reader.open(&sealed, &alice()).await.unwrap();
            for i in 0..bytes.len() {
                for bit in [0x01, 0x80] {
                    let mut tampered = bytes.clone();
                    tampered[i] ^= bit;
                    let opened = match Sealed::from_bytes(&tampered) {
                        Err(_) => None,
                        Ok(record) => reader.open(&record, &alice()).await.ok(),
                    };
                    assert!(opened.is_none(), "{format:?}: flip {bit:#x} at byte {i} of {} was accepted", bytes.len());
                }
            }
            // The untouched record still opens: the refusals were the flips, not a broken envelope.
            assert_eq!(&reader.open(&sealed, &alice()).await.unwrap()[..], SECRET);
        }
    }
}

/// A commitment that does not match is refused before any decryption is tried; one that matches
/// with a ciphertext from another record is refused by GCM.
#[tokio::test]
async fn the_key_commitment_is_checked() {
    let env = Deployment::new().warm();
    let a = env.seal(SECRET, &alice()).await.unwrap();
    let b = env.seal(b"another secret entirely", &alice()).await.unwrap();
    let (version, salt, _) = branch_parts(&a);
    let (_, _, commitment_b) = branch_parts(&b);
    let wrong_commitment =
        Sealed { wrapping: Wrapping::Branch { version, salt, commitment: commitment_b }, ..a.clone() };
    assert!(matches!(env.open(&wrong_commitment, &alice()).await, Err(CryptoError::Refused)));
    let spliced = Sealed { ciphertext: b.ciphertext.clone(), nonce: b.nonce, ..a.clone() };
    assert!(matches!(env.open(&spliced, &alice()).await, Err(CryptoError::Refused)));
    assert_eq!(&env.open(&a, &alice()).await.unwrap()[..], SECRET);
}

#[tokio::test]
async fn another_users_name_or_purpose_is_refused() {
    let deployment = Deployment::new();
    for format in [SealFormat::BranchKeys, SealFormat::DataKeyPerRecord] {
        let env = deployment.warm().writing(format);
        let sealed = env.seal(SECRET, &alice()).await.unwrap();
        // The other purpose has a branch key of its own to try with.
        env.seal(SECRET, &ctx("auth0|alice", Purpose::Auth0Refresh, "openai")).await.unwrap();
        for other in [
            ctx("auth0|bob", Purpose::LlmKey, "openai"),
            ctx("auth0|alice", Purpose::LlmKey, "anthropic"),
            ctx("auth0|alice", Purpose::Auth0Refresh, "openai"),
            ctx("auth0|alice", Purpose::Connection(crate::model::OAuthProvider::Google), "openai"),
        ] {
            for reader in [&env, &deployment.uncached()] {
                assert!(reader.open(&sealed, &other).await.is_err(), "{format:?} {other:?}");
            }
        }
    }
}

#[test]
fn contexts_are_unambiguous() {
    // Field boundaries are length-prefixed: ("a|b", "c") and ("a", "b|c") must differ.
    let version = BranchVersion::random();
    assert_ne!(ctx("a|b", Purpose::LlmKey, "c").aad_v2(version), ctx("a", Purpose::LlmKey, "b|c").aad_v2(version));
    let (v1, v2) = (ctx("a|b", Purpose::LlmKey, "c"), ctx("a", Purpose::LlmKey, "b|c"));
    assert_ne!(v1.aad_v1(KeyProviderKind::Local), v2.aad_v1(KeyProviderKind::Local));
    assert_ne!(v1.aad_v2(version), v1.aad_v2(BranchVersion::random()), "the version is bound");
}

/// The point of the keyring: after one unwrap per purpose and instance, seals and opens make no
/// key-provider call until the TTL runs out.
#[tokio::test]
async fn warm_instances_seal_and_open_without_the_key_provider() {
    let deployment = Deployment::new();
    let writer = deployment.warm();
    let first = writer.seal(SECRET, &alice()).await.unwrap();
    assert_eq!(deployment.provider.calls(), (1, 0), "the first seal of a purpose makes its branch key");
    let mut sealed = vec![first];
    for n in 0..20 {
        let user = format!("auth0|user{n}");
        sealed.push(writer.seal(SECRET, &ctx(&user, Purpose::LlmKey, "openai")).await.unwrap());
    }
    assert_eq!(deployment.provider.calls(), (1, 0), "warm seals: no call");

    let reader = deployment.warm();
    for (n, record) in sealed.iter().enumerate().skip(1) {
        let user = format!("auth0|user{}", n - 1);
        assert_eq!(&reader.open(record, &ctx(&user, Purpose::LlmKey, "openai")).await.unwrap()[..], SECRET);
    }
    assert_eq!(deployment.provider.calls(), (1, 1), "a cold instance unwraps the branch key once");
    reader.seal(SECRET, &alice()).await.unwrap();
    assert_eq!(deployment.provider.calls(), (1, 1), "and seals with it too");

    deployment.clock.advance(299);
    reader.open(&sealed[0], &alice()).await.unwrap();
    assert_eq!(deployment.provider.calls(), (1, 1), "still cached just before the TTL");
    deployment.clock.advance(1);
    reader.open(&sealed[0], &alice()).await.unwrap();
    reader.seal(SECRET, &alice()).await.unwrap();
    assert_eq!(deployment.provider.calls(), (1, 2), "after the TTL, one unwrap again");

    let uncached = deployment.uncached();
    uncached.open(&sealed[0], &alice()).await.unwrap();
    uncached.open(&sealed[0], &alice()).await.unwrap();
    assert_eq!(deployment.provider.calls(), (1, 4), "a TTL of zero caches nothing");
}

#[tokio::test]
async fn instances_racing_to_the_first_branch_key_agree_on_one() {
    let deployment = Deployment::new();
    let instances: Vec<_> = (0..8).map(|_| deployment.uncached()).collect();
    let context = alice();
    let sealed = futures::future::try_join_all(instances.iter().map(|env| env.seal(SECRET, &context))).await.unwrap();
    let versions: std::collections::BTreeSet<_> = sealed.iter().map(|s| s.branch_version().unwrap()).collect();
    assert_eq!(versions.len(), 1, "one first version");
    for record in &sealed {
        assert_eq!(&deployment.uncached().open(record, &alice()).await.unwrap()[..], SECRET);
    }
}

/// A rotation makes new seals use the new version; records of the old one still open, and a
/// record relabelled with another version (or with one that does not exist) does not.
#[tokio::test]
async fn rotated_versions_open_and_relabelled_versions_do_not() {
    let deployment = Deployment::new();
    let env = deployment.uncached();
    let old = env.seal(SECRET, &alice()).await.unwrap();
    let next = new_branch_key(deployment.provider.inner(), Purpose::LlmKey, deployment.clock.now()).await.unwrap();
    deployment.branches.activate(next.clone());
    let new = env.seal(SECRET, &alice()).await.unwrap();
    assert_eq!(new.branch_version(), Some(next.version));
    assert_ne!(old.branch_version(), new.branch_version());
    for record in [&old, &new] {
        assert_eq!(&env.open(record, &alice()).await.unwrap()[..], SECRET);
    }
    let (_, salt, commitment) = branch_parts(&old);
    let relabelled = Sealed { wrapping: Wrapping::Branch { version: next.version, salt, commitment }, ..old.clone() };
    assert!(matches!(env.open(&relabelled, &alice()).await, Err(CryptoError::Refused)));
    let unknown = BranchVersion::random();
    let dangling = Sealed { wrapping: Wrapping::Branch { version: unknown, salt, commitment }, ..old.clone() };
    assert!(
        matches!(env.open(&dangling, &alice()).await, Err(CryptoError::UnknownBranchKey { version, .. }) if version == unknown)
    );
}

/// Records of the format before the keyring (a data key per record) still open, through the
/// data-key cache, beside format-2 records.
#[tokio::test]
async fn format_1_records_still_open() {
    let deployment = Deployment::new();
    let old = deployment.warm().writing(SealFormat::DataKeyPerRecord).seal(SECRET, &alice()).await.unwrap();
    assert_eq!(old.format(), 1);
    assert!(old.branch_version().is_none());
    let calls = deployment.provider.calls();
    let reader = deployment.warm();
    for _ in 0..3 {
        assert_eq!(&reader.open(&old, &alice()).await.unwrap()[..], SECRET);
    }
    assert_eq!(deployment.provider.calls(), (calls.0, calls.1 + 1), "one unwrap, then the cache");
    let new = reader.seal(SECRET, &alice()).await.unwrap();
    assert_eq!(new.format(), 2);
    assert_eq!(&reader.open(&new, &alice()).await.unwrap()[..], SECRET);
}

#[tokio::test]
async fn records_from_another_key_or_format_are_refused() {
    let env = envelope(LocalKeyProvider::from_master(DataKey::random()));
    let other = envelope(LocalKeyProvider::from_master(DataKey::random()));
    let old = env.clone().writing(SealFormat::DataKeyPerRecord).seal(SECRET, &alice()).await.unwrap();
    assert!(matches!(other.open(&old, &alice()).await, Err(CryptoError::ForeignKey(_))));
    let new = env.seal(SECRET, &alice()).await.unwrap();
    assert!(matches!(other.open(&new, &alice()).await, Err(CryptoError::UnknownBranchKey { .. })));

    for record in [old, new] {
        let mut bytes = record.to_bytes();
        for format in [0u8, 3, 255] {
            bytes[2] = format;
            assert!(matches!(Sealed::from_bytes(&bytes), Err(CryptoError::UnsupportedVersion(v)) if v == format));
        }
    }
}

#[test]
fn truncated_or_garbage_records_are_malformed() {
    assert!(Sealed::from_bytes(b"").is_err());
    assert!(Sealed::from_bytes(b"KW").is_err());
    assert!(Sealed::from_bytes(b"XX\x01\x02").is_err());
    let records = [
        Sealed {
            wrapping: Wrapping::DataKey {
                provider: KeyProviderKind::Local,
                key_id: "local:00".into(),
                wrapped_key: vec![1; 60],
            },
            nonce: [2; NONCE_LEN],
            ciphertext: vec![3; 40],
        },
        Sealed {
            wrapping: Wrapping::Branch {
                version: BranchVersion::from_bytes([4; 16]),
                salt: [5; SALT_LEN],
                commitment: [6; COMMITMENT_LEN],
            },
            nonce: [2; NONCE_LEN],
            ciphertext: vec![3; 40],
        },
    ];
    for record in records {
        let bytes = record.to_bytes();
        for cut in 0..bytes.len() - 24 {
            assert!(Sealed::from_bytes(&bytes[..cut]).is_err(), "format {} cut at {cut}", record.format());
        }
        assert_eq!(Sealed::from_bytes(&bytes).unwrap(), record);
    }
}

#[test]
fn debug_shows_no_key_material() {
    let record = Sealed {
        wrapping: Wrapping::Branch {
            version: BranchVersion::from_bytes([4; 16]),
            salt: [0xab; SALT_LEN],
            commitment: [0xcd; COMMITMENT_LEN],
        },
        nonce: [2; NONCE_LEN],
        ciphertext: vec![3; 40],
    };
    let debug = format!("{record:?}");
    assert!(debug.contains("04040404"), "{debug}");
    assert!(!debug.contains("abab") && !debug.contains("cdcd") && !debug.contains("171"), "{debug}");
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
    let branches = Arc::new(Branches::default());
    let clock = Arc::new(ManualClock::at(1_800_000_000));
    let at = |provider: LocalKeyProvider| {
        Envelope::new(Arc::new(provider), branches.clone(), Duration::from_secs(300), clock.clone())
    };
    let sealed = at(first).seal(SECRET, &alice).await.unwrap();
    assert_eq!(&at(again).open(&sealed, &alice).await.unwrap()[..], SECRET);

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
        let mut bytes = if tail.first().is_some_and(|b| b % 2 == 0) {
            b"KW\x01\x02\x00\x03abc\x00\x02xy".to_vec()
        } else {
            b"KW\x02".to_vec()
        };
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
