//! The keyring's branch keys, wrapped: per purpose, one item per version and an `ACTIVE` item
//! naming the version new records are sealed under, with a copy of its wrapped key (so a cold seal
//! reads one item). Also the rewrap job's progress. Key schema in `docs/storage.md`.

use async_trait::async_trait;

use super::table::{Attr, Changes, Condition, Index, Item, Key, Query, Table, Write};
use super::{Store, StoreError};
use crate::crypto::{BranchKeyStore, BranchVersion, CryptoError, Purpose, WrappedBranchKey};

const ACTIVE: &str = "ACTIVE";
const VERSION_PREFIX: &str = "VERSION#";

fn partition(purpose: Purpose) -> String {
    format!("KEYRING#{}", purpose.name())
}

fn active_key(purpose: Purpose) -> Key {
    Key::new(partition(purpose), ACTIVE)
}

fn version_key(purpose: Purpose, version: BranchVersion) -> Key {
    Key::new(partition(purpose), format!("{VERSION_PREFIX}{version}"))
}

fn item(key: &Key, branch_key: &WrappedBranchKey) -> Item {
    Item::new(key)
        .with("entity", Attr::S("branch-key".into()))
        .with("version", Attr::S(branch_key.version.to_string()))
        .with("kms_key_id", Attr::S(branch_key.key_id.clone()))
        .with("wrapped", Attr::B(branch_key.wrapped.clone()))
        .with("created_at", Attr::N(branch_key.created_at))
}

fn parse(purpose: Purpose, item: &Item) -> Result<WrappedBranchKey, StoreError> {
    let raw = item.s("version")?;
    let version =
        BranchVersion::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("branch key version `{raw}`")))?;
    Ok(WrappedBranchKey {
        purpose,
        version,
        key_id: item.s("kms_key_id")?.to_owned(),
        wrapped: item.b("wrapped")?.to_vec(),
        created_at: item.n("created_at")?,
    })
}

pub struct Keyring<'a>(pub(super) &'a dyn Table);

impl Keyring<'_> {
    pub async fn active(&self, purpose: Purpose) -> Result<Option<WrappedBranchKey>, StoreError> {
        self.0.get(&active_key(purpose)).await?.map(|item| parse(purpose, &item)).transpose()
    }

    pub async fn version(
        &self,
        purpose: Purpose,
        version: BranchVersion,
    ) -> Result<Option<WrappedBranchKey>, StoreError> {
        self.0.get(&version_key(purpose, version)).await?.map(|item| parse(purpose, &item)).transpose()
    }

    /// Every version of `purpose`, oldest first.
    pub async fn versions(&self, purpose: Purpose) -> Result<Vec<WrappedBranchKey>, StoreError> {
        let query = Query::partition(Index::Table, partition(purpose)).prefix(VERSION_PREFIX).limit(1000);
        let mut versions = Vec::new();
        let mut after = None;
        loop {
            let page = self.0.query(&query.clone().after(after)).await?;
            for item in &page.items {
                versions.push(parse(purpose, item)?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        versions.sort_by_key(|v| (v.created_at, v.version));
        Ok(versions)
    }

    /// Stores the first version of a purpose and makes it active, unless one exists; returns the
    /// active version either way.
    pub async fn create_first(&self, first: &WrappedBranchKey) -> Result<WrappedBranchKey, StoreError> {
        let writes = vec![
            Write::Put { item: item(&version_key(first.purpose, first.version), first), when: Some(Condition::Absent) },
            Write::Put { item: item(&active_key(first.purpose), first), when: Some(Condition::Absent) },
        ];
        match self.0.transact(writes).await {
            Ok(()) => Ok(first.clone()),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => self
                .active(first.purpose)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a branch key version exists but none is active".into())),
            Err(e) => Err(e),
        }
    }

    /// Makes `next` the active version, if `current` still is (`None`: if none is yet). Returns
    /// whether it did; `false` means another rotation won.
    pub async fn rotate(&self, next: &WrappedBranchKey, current: Option<BranchVersion>) -> Result<bool, StoreError> {
        let still = match current {
            Some(version) => Condition::Equals("version", Attr::S(version.to_string())),
            None => Condition::Absent,
        };
        let writes = vec![
            Write::Put { item: item(&version_key(next.purpose, next.version), next), when: Some(Condition::Absent) },
            Write::Put { item: item(&active_key(next.purpose), next), when: Some(still) },
        ];
        match self.0.transact(writes).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces a version's wrapping (after a move to another KMS key), in its item and, when it
    /// is the active one, in the `ACTIVE` copy; only while both still hold what was read.
    pub async fn rewrapped(
        &self,
        was: &WrappedBranchKey,
        now: &WrappedBranchKey,
        active: bool,
    ) -> Result<bool, StoreError> {
        let changes = Changes::default()
            .set("kms_key_id", Attr::S(now.key_id.clone()))
            .set("wrapped", Attr::B(now.wrapped.clone()));
        let unchanged = Condition::Equals("wrapped", Attr::B(was.wrapped.clone()));
        let mut writes = vec![Write::Update {
            key: version_key(was.purpose, was.version),
            changes: changes.clone(),
            when: Some(unchanged.clone()),
        }];
        if active {
            writes.push(Write::Update { key: active_key(was.purpose), changes, when: Some(unchanged) });
        }
        match self.0.transact(writes).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a version (its records are gone: the caller checked); returns whether it existed.
    pub async fn retire(&self, purpose: Purpose, version: BranchVersion) -> Result<bool, StoreError> {
        Ok(self.0.delete(&version_key(purpose, version), None).await?.is_some())
    }

    pub fn rewrap_progress(&self) -> RewrapProgresses<'_> {
        RewrapProgresses(self.0)
    }
}

fn crypto(err: StoreError) -> CryptoError {
    match err {
        StoreError::Throttled | StoreError::Unavailable(_) | StoreError::Conflict => {
            CryptoError::KeyServiceUnavailable(format!("branch key store: {err}"))
        }
        other => CryptoError::KeyStore(other.to_string()),
    }
}

#[async_trait]
impl BranchKeyStore for Store {
    async fn active(&self, purpose: Purpose) -> Result<Option<WrappedBranchKey>, CryptoError> {
        self.keyring().active(purpose).await.map_err(crypto)
    }

    async fn version(&self, purpose: Purpose, version: BranchVersion) -> Result<Option<WrappedBranchKey>, CryptoError> {
        self.keyring().version(purpose, version).await.map_err(crypto)
    }

    async fn create_first(&self, first: &WrappedBranchKey) -> Result<WrappedBranchKey, CryptoError> {
        self.keyring().create_first(first).await.map_err(crypto)
    }
}

/// How far the rewrap job got; saved after every page, so a stopped run resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Where the sweep goes on; `None` at the start, and once finished.
    pub cursor: Option<String>,
    pub finished: bool,
    /// Sealed values seen, and of them: re-sealed, already current, changed by someone else while
    /// being re-sealed (their new value is current), and refused (they do not open: reported).
    pub seen: u64,
    pub resealed: u64,
    pub current: u64,
    pub changed_meanwhile: u64,
    pub refused: u64,
    pub started_at: i64,
    pub updated_at: i64,
}

pub struct RewrapProgresses<'a>(&'a dyn Table);

fn progress_key() -> Key {
    Key::new("KEYRING#rewrap", "PROGRESS")
}

impl RewrapProgresses<'_> {
    pub async fn load(&self) -> Result<Option<RewrapProgress>, StoreError> {
        let Some(item) = self.0.get(&progress_key()).await? else { return Ok(None) };
        let count = |name| item.n(name).map(|n| n.max(0) as u64);
        Ok(Some(RewrapProgress {
            cursor: item.opt_s("cursor")?.map(str::to_owned),
            finished: item.bool("finished")?,
            seen: count("seen")?,
            resealed: count("resealed")?,
            current: count("current")?,
            changed_meanwhile: count("changed_meanwhile")?,
            refused: count("refused")?,
            started_at: item.n("started_at")?,
            updated_at: item.n("updated_at")?,
        }))
    }

    pub async fn save(&self, progress: &RewrapProgress) -> Result<(), StoreError> {
        let count = |n: u64| Attr::N(i64::try_from(n).unwrap_or(i64::MAX));
        let item = Item::new(&progress_key())
            .with("entity", Attr::S("rewrap-progress".into()))
            .with_opt("cursor", progress.cursor.clone().map(Attr::S))
            .with("finished", Attr::Bool(progress.finished))
            .with("seen", count(progress.seen))
            .with("resealed", count(progress.resealed))
            .with("current", count(progress.current))
            .with("changed_meanwhile", count(progress.changed_meanwhile))
            .with("refused", count(progress.refused))
            .with("started_at", Attr::N(progress.started_at))
            .with("updated_at", Attr::N(progress.updated_at));
        self.0.put(item, None).await
    }
}
