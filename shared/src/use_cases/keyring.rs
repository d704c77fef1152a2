//! Keyring maintenance, for operators (`keyward-admin keyring …`): what uses which branch key
//! version, rotation, the rewrap job that re-seals records under the active versions, retiring a
//! version nothing uses, and moving branch keys to a new KMS key inside KMS. Plaintext exists only
//! in this process's memory while a record is re-sealed; nothing is written but sealed records.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::crypto::{
    BranchVersion, CryptoError, Envelope, KeyMaintenance, Purpose, WrappedBranchKey, Wrapping, moved_branch_key,
    new_branch_key,
};
use crate::model::Clock;
use crate::store::{RewrapProgress, SealedValue, Store, StoreError};

/// The longest a function invocation runs: no `Timeout` in `template.yaml` is longer
/// (`template_policy` checks it).
pub const LONGEST_INVOCATION: Duration = Duration::from_secs(30);

/// How long after a rotation a version may still be sealed under: an instance's cached branch key
/// lives the cache TTL, and a request that took it just before may seal until its invocation ends.
pub const RETIRE_AFTER_ROTATION: Duration =
    Duration::from_secs(Envelope::MAX_CACHE_TTL.as_secs() + LONGEST_INVOCATION.as_secs());

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{purpose} has no branch key version {version}")]
    UnknownVersion { purpose: String, version: BranchVersion },
    #[error("{version} is {purpose}'s active branch key version; rotate first")]
    StillActive { purpose: String, version: BranchVersion },
    /// Instances may still seal under the old version until their cache expires.
    #[error("{purpose} was rotated {age_secs} s ago; instances may seal under the old version for {wait_secs} s more")]
    TooSoon { purpose: String, age_secs: i64, wait_secs: i64 },
    #[error("{records} record(s) are still sealed under {purpose} version {version}; run the rewrap job first")]
    InUse { purpose: String, version: BranchVersion, records: u64 },
    #[error("another rotation of {purpose} won meanwhile")]
    RotationRaced { purpose: String },
}

/// One branch key version, and how many records it seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: BranchVersion,
    pub active: bool,
    pub kms_key_id: String,
    pub created_at: i64,
    pub records: u64,
}

/// A purpose's branch key versions, oldest first, and its records of format 1 (a data key each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeStatus {
    pub purpose: Purpose,
    pub versions: Vec<VersionStatus>,
    pub format_one_records: u64,
}

/// What a sweep of the table found: sealed records per purpose and version (`None`: format 1),
/// and the format-1 records per KMS key their data keys are wrapped under.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub records: BTreeMap<(String, Option<BranchVersion>), u64>,
    pub format_one_by_kms_key: BTreeMap<String, u64>,
}

impl Census {
    pub fn records(&self, purpose: Purpose, version: Option<BranchVersion>) -> u64 {
        self.records.get(&(purpose.name(), version)).copied().unwrap_or(0)
    }

    /// Records that open only with a KMS key other than `current`, by key: format-1 records (a
    /// data key of their own, wrapped by whichever key sealed them).
    fn left_behind(&self, current: &str) -> BTreeMap<String, u64> {
        let mut by_key = self.format_one_by_kms_key.clone();
        by_key.remove(current);
        by_key
    }
}

/// The keyring from one sweep of the table: each purpose's versions, and what still needs a KMS
/// key other than the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringStatus {
    pub purposes: Vec<PurposeStatus>,
    /// Branch key versions wrapped under another KMS key than the current one.
    pub branch_keys_elsewhere: usize,
    /// Format-1 records whose data keys another KMS key wraps, by key.
    pub left_behind: BTreeMap<String, u64>,
}

impl KeyringStatus {
    /// Whether everything is under the current KMS key: a move to it is finished.
    pub fn all_on_current_key(&self) -> bool {
        self.branch_keys_elsewhere == 0 && self.left_behind.is_empty()
    }
}

/// What moving the branch keys to the current KMS key did, and what still needs another key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    pub moved: u64,
    pub already_there: u64,
    /// What still opens only with another KMS key: records of format 1 (their data keys), by key.
    pub left_behind: BTreeMap<String, u64>,
}

impl Moved {
    /// Whether nothing needs a previous KMS key any more: only then may it leave
    /// `PreviousKmsKeyArns` and be disabled.
    pub fn finished(&self) -> bool {
        self.left_behind.is_empty()
    }
}

pub struct Keyring<'a> {
    pub store: &'a Store,
    /// An envelope on the current KMS key (and the ones being moved from), for the rewrap job.
    pub envelope: &'a Envelope,
    /// The same key provider, for what only the operator does: new branch keys and moves.
    pub provider: &'a dyn KeyMaintenance,
    pub clock: &'a dyn Clock,
    /// Sealed values read per page of the sweep.
    pub page_size: u32,
}

impl Keyring<'_> {
    /// Every purpose's versions with the records each seals, and what needs another KMS key (one
    /// sweep of the table).
    pub async fn status(&self) -> Result<KeyringStatus, KeyringError> {
        let census = self.census().await?;
        let mut purposes = Vec::new();
        for purpose in Purpose::all() {
            let active = self.store.keyring().active(purpose).await?.map(|k| k.version);
            let versions = self
                .store
                .keyring()
                .versions(purpose)
                .await?
                .into_iter()
                .map(|k| VersionStatus {
                    version: k.version,
                    active: Some(k.version) == active,
                    kms_key_id: k.key_id,
                    created_at: k.created_at,
                    records: census.records(purpose, Some(k.version)),
                })
                .collect();
            purposes.push(PurposeStatus { purpose, versions, format_one_records: census.records(purpose, None) });
        }
        let current = self.provider.key_id();
        let versions = purposes.iter().flat_map(|p| &p.versions);
        Ok(KeyringStatus {
            branch_keys_elsewhere: versions.filter(|v| v.kms_key_id != current).count(),
            left_behind: census.left_behind(current),
            purposes,
        })
    }

    /// Sealed records per purpose and version, counted over the whole table.
    pub async fn census(&self) -> Result<Census, KeyringError> {
        let mut census = Census::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.sealed_values().page(after.as_deref(), self.page_size).await?;
            for value in &page.values {
                let version = value.sealed.branch_version();
                *census.records.entry((value.context.purpose().name(), version)).or_default() += 1;
                if let Wrapping::DataKey { key_id, .. } = &value.sealed.wrapping {
                    *census.format_one_by_kms_key.entry(key_id.clone()).or_default() += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(census),
            }
        }
    }

    /// Makes a new version of `purpose`'s branch key active for new seals; the old ones still open.
    /// The new key is made inside KMS: its plaintext never reaches this process.
    pub async fn rotate(&self, purpose: Purpose) -> Result<WrappedBranchKey, KeyringError> {
        let current = self.store.keyring().active(purpose).await?.map(|k| k.version);
        let next = new_branch_key(self.provider, purpose, self.clock.now()).await?;
        if self.store.keyring().rotate(&next, current).await? {
            tracing::info!(purpose = %purpose.name(), version = %next.version, "branch key rotated");
            Ok(next)
        } else {
            Err(KeyringError::RotationRaced { purpose: purpose.name() })
        }
    }

    /// One page of the rewrap job: re-seals under the active versions the page's records that are
    /// not (older versions, format 1), each only if unchanged since read. The progress is saved
    /// after the page, so a stopped job resumes where it was; a finished one starts over.
    pub async fn rewrap_step(&self) -> Result<RewrapProgress, KeyringError> {
        let saved = self.store.keyring().rewrap_progress().load().await?;
        let now = self.clock.now();
        let mut progress = match saved {
            Some(progress) if !progress.finished => progress,
            _ => RewrapProgress { started_at: now, ..RewrapProgress::default() },
        };
        let page = self.store.sealed_values().page(progress.cursor.as_deref(), self.page_size).await?;
        // Each purpose's active version, read once per page.
        let mut active: HashMap<Purpose, Option<BranchVersion>> = HashMap::new();
        for value in &page.values {
            let purpose = value.context.purpose();
            let current = match active.get(&purpose) {
                Some(version) => *version,
                None => {
                    let version = self.store.keyring().active(purpose).await?.map(|k| k.version);
                    active.insert(purpose, version);
                    version
                }
            };
            progress.seen += 1;
            if current.is_some() && value.sealed.branch_version() == current {
                progress.current += 1;
                continue;
            }
            match self.reseal(value).await {
                Ok(true) => progress.resealed += 1,
                Ok(false) => progress.changed_meanwhile += 1,
                Err(KeyringError::Crypto(CryptoError::Refused | CryptoError::Malformed)) => {
                    // Reported, not fatal: a record that does not open cannot be re-sealed by anyone.
                    tracing::warn!(pk = %value.key.pk, sk = %value.key.sk, attribute = value.attribute, "a sealed record does not open; left as it is");
                    progress.refused += 1;
                }
                Err(other) => return Err(other),
            }
        }
        progress.cursor = page.next;
        progress.finished = progress.cursor.is_none();
        progress.updated_at = self.clock.now();
        self.store.keyring().rewrap_progress().save(&progress).await?;
        Ok(progress)
    }

    /// Opens and seals one record anew, replacing it only if it still holds what was read.
    async fn reseal(&self, value: &SealedValue) -> Result<bool, KeyringError> {
        let plaintext = self.envelope.open(&value.sealed, &value.context).await?;
        let resealed = self.envelope.seal(&plaintext, &value.context).await?;
        Ok(self.store.sealed_values().replace(value, &resealed).await?)
    }

    /// Deletes a version of `purpose`'s branch key: only one that is not active, rotated away from
    /// long enough that no instance still seals under it, and that no record uses.
    pub async fn retire(&self, purpose: Purpose, version: BranchVersion) -> Result<(), KeyringError> {
        let name = purpose.name();
        let keyring = self.store.keyring();
        if keyring.version(purpose, version).await?.is_none() {
            return Err(KeyringError::UnknownVersion { purpose: name, version });
        }
        if let Some(active) = keyring.active(purpose).await? {
            if active.version == version {
                return Err(KeyringError::StillActive { purpose: name, version });
            }
            let age_secs = self.clock.now() - active.created_at;
            let needed = RETIRE_AFTER_ROTATION.as_secs() as i64;
            if age_secs < needed {
                return Err(KeyringError::TooSoon { purpose: name, age_secs, wait_secs: needed - age_secs });
            }
        }
        let records = self.census().await?.records(purpose, Some(version));
        if records > 0 {
            return Err(KeyringError::InUse { purpose: name, version, records });
        }
        if !keyring.retire(purpose, version).await? {
            return Err(KeyringError::UnknownVersion { purpose: name, version });
        }
        tracing::info!(purpose = %name, version = %version, "branch key version retired");
        Ok(())
    }

    /// Re-wraps every branch key version not yet under the current KMS key, inside KMS (ReEncrypt:
    /// the plaintext never leaves it), then counts what still needs another key: records of format
    /// 1 keep their data keys under the key that sealed them until the rewrap job re-seals them.
    /// Idempotent; records are untouched.
    pub async fn move_to_current_key(&self) -> Result<Moved, KeyringError> {
        let mut moved = Moved::default();
        for purpose in Purpose::all() {
            let keyring = self.store.keyring();
            let active = keyring.active(purpose).await?.map(|k| k.version);
            for version in keyring.versions(purpose).await? {
                match moved_branch_key(self.provider, &version).await? {
                    Some(now) => {
                        // A concurrent move of the same version wrote the same kind of wrapping: fine.
                        keyring.rewrapped(&version, &now, active == Some(version.version)).await?;
                        moved.moved += 1;
                    }
                    None => moved.already_there += 1,
                }
            }
        }
        moved.left_behind = self.census().await?.left_behind(self.provider.key_id());
        tracing::info!(moved = moved.moved, already = moved.already_there, "branch keys on the current KMS key");
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyContext, KeyProvider, KeyProviderKind, LocalKeyProvider, SealFormat};
    use crate::model::{Provider, UserId};
    use crate::secret::DataKey;
    use crate::store::{Actor, AuditAction, AuditEntry, KeyStatus, NewLlmKey, llm_key_context};
    use crate::use_cases::testing::Fixture;

    async fn put(fixture: &Fixture, user: &UserId, new: &NewLlmKey) {
        let now = fixture.clock.now();
        let entry = AuditEntry {
            at: now,
            actor: Actor::System,
            action: AuditAction::LlmKeyPut,
            target: Some(new.provider.slug().into()),
            outcome: "seeded".into(),
        };
        fixture.store.llm_keys().put_audited(user, new, now, &entry).await.unwrap();
    }

    async fn seed(fixture: &Fixture, envelope: &Envelope, user: &str, provider: Provider) -> UserId {
        let user = UserId::parse(user).unwrap();
        let secret = format!("sk-{user}-{provider}");
        let new = NewLlmKey {
            provider,
            sealed: envelope.seal(secret.as_bytes(), &llm_key_context(&user, provider)).await.unwrap(),
            preview: "sk-…".into(),
            status: KeyStatus::Valid,
            test: None,
            zai_region: None,
        };
        put(fixture, &user, &new).await;
        user
    }

    fn maintenance<'a>(
        fixture: &'a Fixture,
        envelope: &'a Envelope,
        provider: &'a LocalKeyProvider,
        page_size: u32,
    ) -> Keyring<'a> {
        Keyring { store: &fixture.store, envelope, provider, clock: fixture.clock.as_ref(), page_size }
    }

    async fn opens(fixture: &Fixture, user: &UserId, provider: Provider) -> String {
        let stored = fixture.store.llm_keys().get(user, provider).await.unwrap().unwrap();
        let opened = fixture.instance().open(&stored.sealed, &llm_key_context(user, provider)).await.unwrap();
        String::from_utf8(opened.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn rotation_rewrap_and_retire_move_every_record_to_the_new_version() {
        let fixture = Fixture::new().await;
        let old_format = fixture.instance().writing(SealFormat::DataKeyPerRecord);
        let mut users = Vec::new();
        for i in 0..3 {
            users.push(seed(&fixture, &old_format, &format!("auth0|old{i}"), Provider::OpenAi).await);
            users.push(seed(&fixture, &fixture.envelope, &format!("auth0|new{i}"), Provider::Anthropic).await);
        }
        let admin_instance = fixture.instance();
        let provider = fixture.key_provider();
        let keyring = maintenance(&fixture, &admin_instance, &provider, 2);
        let first = fixture.store.keyring().active(Purpose::LlmKey).await.unwrap().unwrap().version;
        let status = keyring.status().await.unwrap();
        assert!(status.all_on_current_key(), "{status:?}");
        let llm = status.purposes.iter().find(|s| s.purpose == Purpose::LlmKey).unwrap();
        assert_eq!((llm.format_one_records, llm.versions.len(), llm.versions[0].records), (3, 1, 3));

        fixture.clock.advance(10);
        let next = keyring.rotate(Purpose::LlmKey).await.unwrap();
        assert!(matches!(keyring.retire(Purpose::LlmKey, next.version).await, Err(KeyringError::StillActive { .. })));
        assert!(matches!(keyring.retire(Purpose::LlmKey, first).await, Err(KeyringError::TooSoon { .. })));
        fixture.clock.advance(Envelope::MAX_CACHE_TTL.as_secs() as i64);
        let cached = keyring.retire(Purpose::LlmKey, first).await;
        assert!(
            matches!(cached, Err(KeyringError::TooSoon { .. })),
            "an invocation that took the cached key may still seal"
        );
        fixture.clock.advance(LONGEST_INVOCATION.as_secs() as i64);
        assert!(matches!(keyring.retire(Purpose::LlmKey, first).await, Err(KeyringError::InUse { records: 3, .. })));

        // One page, then the job stops (a crash, a timeout): a new process resumes it.
        let progress = keyring.rewrap_step().await.unwrap();
        assert!(!progress.finished && progress.cursor.is_some(), "{progress:?}");
        let resumed_instance = fixture.instance();
        let resumed = Keyring { envelope: &resumed_instance, ..keyring };
        let mut progress = progress;
        let mut steps = 1;
        while !progress.finished {
            progress = resumed.rewrap_step().await.unwrap();
            steps += 1;
        }
        assert!(steps >= 3, "{steps} pages of two");
        assert_eq!((progress.seen, progress.resealed, progress.current, progress.refused), (6, 6, 0, 0));
        for user in &users {
            let provider = if user.as_str().contains("old") { Provider::OpenAi } else { Provider::Anthropic };
            let stored = fixture.store.llm_keys().get(user, provider).await.unwrap().unwrap();
            assert_eq!(stored.sealed.branch_version(), Some(next.version), "{user}");
            assert_eq!(opens(&fixture, user, provider).await, format!("sk-{user}-{provider}"));
        }

        // Idempotent: a second run finds everything current.
        let mut again = resumed.rewrap_step().await.unwrap();
        while !again.finished {
            again = resumed.rewrap_step().await.unwrap();
        }
        assert_eq!((again.seen, again.resealed, again.current), (6, 0, 6));

        resumed.retire(Purpose::LlmKey, first).await.unwrap();
        let status = resumed.status().await.unwrap();
        let llm = status.purposes.iter().find(|s| s.purpose == Purpose::LlmKey).unwrap();
        assert_eq!(
            llm.versions.iter().map(|v| (v.version, v.active, v.records)).collect::<Vec<_>>(),
            [(next.version, true, 6)]
        );
        assert_eq!(llm.format_one_records, 0);
        assert!(matches!(resumed.retire(Purpose::LlmKey, first).await, Err(KeyringError::UnknownVersion { .. })));
    }

    #[tokio::test]
    async fn a_record_that_does_not_open_is_counted_and_left_alone() {
        let fixture = Fixture::new().await;
        let ada = seed(&fixture, &fixture.envelope, "auth0|ada", Provider::OpenAi).await;
        let bob = seed(&fixture, &fixture.envelope, "auth0|bob", Provider::OpenAi).await;
        // Bob's item holds a copy of Ada's sealed key: it opens under Ada's context only.
        let copied = fixture.store.llm_keys().get(&ada, Provider::OpenAi).await.unwrap().unwrap();
        let new = NewLlmKey {
            provider: Provider::OpenAi,
            sealed: copied.sealed.clone(),
            preview: "sk-…".into(),
            status: KeyStatus::Valid,
            test: None,
            zai_region: None,
        };
        put(&fixture, &bob, &new).await;
        let instance = fixture.instance();
        let provider = fixture.key_provider();
        let keyring = maintenance(&fixture, &instance, &provider, 10);
        keyring.rotate(Purpose::LlmKey).await.unwrap();
        let progress = keyring.rewrap_step().await.unwrap();
        assert!(progress.finished);
        assert_eq!((progress.resealed, progress.refused), (1, 1));
        let untouched = fixture.store.llm_keys().get(&bob, Provider::OpenAi).await.unwrap().unwrap();
        assert_eq!(untouched.sealed, copied.sealed);
    }

    /// A refresher reads a connection, the rewrap job re-seals its tokens under the new version,
    /// then the refresher saves what it read: the save must lose, or it would write tokens sealed
    /// under the old version back, and retiring that version would make them unopenable.
    #[tokio::test]
    async fn a_save_that_read_before_a_rewrap_cannot_write_the_old_tokens_back() {
        use crate::model::OAuthProvider;
        use crate::store::{ConnectionStatus, ConnectionToken, OAuthConnection, connection_token_context};
        let fixture = Fixture::new().await;
        let ada = UserId::parse("auth0|ada").unwrap();
        let seal = |token: ConnectionToken, text: &'static str| {
            let context = connection_token_context(&ada, OAuthProvider::Google, token);
            let envelope = &fixture.envelope;
            async move { envelope.seal(text.as_bytes(), &context).await.unwrap() }
        };
        let connection = OAuthConnection {
            user: ada.clone(),
            provider: OAuthProvider::Google,
            email: "ada@gmail.com".into(),
            email_verified: true,
            account_id: Some("104875632109876543210".into()),
            scopes: vec!["openid".into()],
            refresh_token: Some(seal(ConnectionToken::Refresh, "1//refresh").await),
            access_token: seal(ConnectionToken::Access, "ya29.access").await,
            access_expires_at: 5_000,
            status: ConnectionStatus::Connected,
            connected_at: 1_000,
            last_refreshed_at: None,
            version: 0,
            refresh_lease_until: None,
        };
        let connections = fixture.store.oauth_connections(OAuthProvider::Google);
        let read = connections.save(&connection, None).await.unwrap().unwrap();
        let admin_instance = fixture.instance();
        let provider = fixture.key_provider();
        let keyring = maintenance(&fixture, &admin_instance, &provider, 10);
        keyring.rotate(Purpose::Connection(OAuthProvider::Google)).await.unwrap();
        while !keyring.rewrap_step().await.unwrap().finished {}
        let rewrapped = connections.get(&ada).await.unwrap().unwrap();
        assert_eq!(rewrapped.version, read.version + 2, "each re-sealed token moved the version");
        let stale = OAuthConnection { last_refreshed_at: Some(2_000), ..read.clone() };
        assert!(connections.save(&stale, Some(read.version)).await.unwrap().is_none(), "the stale save loses");
        let kept = connections.get(&ada).await.unwrap().unwrap();
        assert_eq!(kept.access_token.to_bytes(), rewrapped.access_token.to_bytes(), "the re-sealed token stays");
    }

    #[tokio::test]
    async fn a_lost_rotation_race_is_an_error_not_a_second_active_version() {
        let fixture = Fixture::new().await;
        seed(&fixture, &fixture.envelope, "auth0|ada", Provider::OpenAi).await;
        let instance = fixture.instance();
        let provider = BothReadFirst { inner: fixture.key_provider(), both_read: tokio::sync::Barrier::new(2) };
        let keyring = Keyring {
            store: &fixture.store,
            envelope: &instance,
            provider: &provider,
            clock: fixture.clock.as_ref(),
            page_size: 10,
        };
        let (a, b) = tokio::join!(keyring.rotate(Purpose::LlmKey), keyring.rotate(Purpose::LlmKey));
        let (won, lost): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
        assert_eq!((won.len(), lost.len()), (1, 1));
        assert!(matches!(lost[0], Err(KeyringError::RotationRaced { .. })));
        assert_eq!(fixture.store.keyring().versions(Purpose::LlmKey).await.unwrap().len(), 2);
    }

    /// Makes two rotations race for real: each makes its new branch key only once both have read
    /// the active version, so neither can see the other's result first.
    struct BothReadFirst {
        inner: LocalKeyProvider,
        both_read: tokio::sync::Barrier,
    }

    #[async_trait::async_trait]
    impl KeyProvider for BothReadFirst {
        fn kind(&self) -> KeyProviderKind {
            self.inner.kind()
        }
        fn key_id(&self) -> &str {
            self.inner.key_id()
        }
        async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>), CryptoError> {
            self.inner.generate(context).await
        }
        async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey, CryptoError> {
            self.inner.unwrap(key_id, wrapped, context).await
        }
    }

    #[async_trait::async_trait]
    impl KeyMaintenance for BothReadFirst {
        async fn generate_wrapped(&self, context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError> {
            self.both_read.wait().await;
            self.inner.generate_wrapped(context).await
        }
        async fn rewrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError> {
            self.inner.rewrap(key_id, wrapped, context).await
        }
    }
}
