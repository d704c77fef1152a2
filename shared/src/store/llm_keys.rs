//! Users' LLM provider keys: sealed, with their masked preview and validation history.

use super::table::{Attr, Changes, Condition, Index, Item, Key, Query, Table, Write};
use super::{AuditEntry, StoreError, bound_to_key, mark_used, refuse_tampered, sealed_attr, sealed_from, user_pk};
use crate::crypto::Sealed;
use crate::model::{Provider, UserId, ZaiRegion};

const PREFIX: &str = "LLMKEY#";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Valid,
    Invalid,
    Unchecked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unchecked => "unchecked",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        match raw {
            "valid" => Ok(Self::Valid),
            "invalid" => Ok(Self::Invalid),
            "unchecked" => Ok(Self::Unchecked),
            other => Err(StoreError::Corrupt(format!("unknown key status `{other}`"))),
        }
    }
}

/// The outcome of the latest validation call, in keyward's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub ok: bool,
    pub message: String,
    pub at: i64,
}

/// A key about to be stored.
#[derive(Debug, Clone)]
pub struct NewLlmKey {
    pub provider: Provider,
    pub sealed: Sealed,
    /// At most 8 characters of the key (e.g. `sk-p…wxyz`).
    pub preview: String,
    pub status: KeyStatus,
    pub test: Option<TestResult>,
    /// Which Zai platform the key belongs to; `None` for every other provider.
    pub zai_region: Option<ZaiRegion>,
}

#[derive(Debug, Clone)]
pub struct StoredLlmKey {
    pub provider: Provider,
    pub sealed: Sealed,
    pub preview: String,
    pub status: KeyStatus,
    pub zai_region: Option<ZaiRegion>,
    pub last_validated_at: Option<i64>,
    pub last_test: Option<TestResult>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct LlmKeys<'a>(pub(super) &'a dyn Table);

fn key(user: &UserId, provider: Provider) -> Key {
    Key::new(user_pk(user), format!("{PREFIX}{provider}"))
}

fn test_changes(changes: Changes, test: Option<&TestResult>) -> Changes {
    changes
        .set_opt("test_ok", test.map(|t| Attr::Bool(t.ok)))
        .set_opt("test_message", test.map(|t| Attr::S(t.message.clone())))
        .set_opt("test_at", test.map(|t| Attr::N(t.at)))
}

/// The attributes of a stored key; `created_at` survives replacement, `last_used_at` does not.
fn put_changes(new: &NewLlmKey, now: i64) -> Changes {
    let validated_at = (new.status == KeyStatus::Valid).then(|| new.test.as_ref().map_or(now, |t| t.at));
    let changes = Changes::default()
        .set("entity", Attr::S("llm-key".into()))
        .set("provider", Attr::S(new.provider.to_string()))
        .set("sealed", sealed_attr(&new.sealed))
        .set("preview", Attr::S(new.preview.clone()))
        .set("status", Attr::S(new.status.as_str().into()))
        .set_opt("zai_region", new.zai_region.map(|r| Attr::S(r.slug().into())))
        .set_opt("last_validated_at", validated_at.map(Attr::N))
        .set("updated_at", Attr::N(now))
        .set_if_missing("created_at", Attr::N(now))
        .remove("last_used_at");
    test_changes(changes, new.test.as_ref())
}

impl LlmKeys<'_> {
    /// Stores (or replaces) a user's key for a provider, `created_at` surviving a replacement, and
    /// the audit entry saying so, in one transaction: a key is never stored without its entry, nor
    /// an entry written for a key that was not stored.
    pub async fn put_audited(
        &self,
        user: &UserId,
        new: &NewLlmKey,
        now: i64,
        entry: &AuditEntry,
    ) -> Result<StoredLlmKey, StoreError> {
        let store = Write::Update { key: key(user, new.provider), changes: put_changes(new, now), when: None };
        let audit = Write::Put { item: super::audit::item(user, entry), when: None };
        self.0.transact(vec![store, audit]).await?;
        // A transaction returns no item; `created_at` may predate this write.
        let item = self.0.get(&key(user, new.provider)).await?;
        parse(&item.ok_or_else(|| StoreError::Corrupt("a key just stored is missing".into()))?, new.provider)
    }

    /// The user's key of `provider`; a tampered item is refused as absent.
    pub async fn get(&self, user: &UserId, provider: Provider) -> Result<Option<StoredLlmKey>, StoreError> {
        match self.0.get(&key(user, provider)).await? {
            Some(item) => refuse_tampered(parse(&item, provider)),
            None => Ok(None),
        }
    }

    /// The user's keys of `providers` (those stored), in one read; never loads another provider's,
    /// and answers for each item the provider its key names (one of those asked for).
    pub async fn get_many(&self, user: &UserId, providers: &[Provider]) -> Result<Vec<StoredLlmKey>, StoreError> {
        let keys: Vec<Key> = providers.iter().map(|p| key(user, *p)).collect();
        let mut found = Vec::with_capacity(keys.len());
        for item in self.0.get_many(&keys).await? {
            found.extend(refuse_tampered(parse(&item, provider_of(&item)?))?);
        }
        found.sort_by_key(|k| k.provider);
        Ok(found)
    }

    /// Every key of a user, in one query; tampered items are left out.
    pub async fn list(&self, user: &UserId) -> Result<Vec<StoredLlmKey>, StoreError> {
        let mut keys = Vec::new();
        for item in self.items(user).await? {
            keys.extend(refuse_tampered(parse(&item, provider_of(&item)?))?);
        }
        Ok(keys)
    }

    async fn items(&self, user: &UserId) -> Result<Vec<Item>, StoreError> {
        Ok(self.0.query(&Query::partition(Index::Table, user_pk(user)).prefix(PREFIX).limit(100)).await?.items)
    }

    /// Records a re-validation of the stored key; `None` when the key was deleted meanwhile.
    pub async fn record_test(
        &self,
        user: &UserId,
        provider: Provider,
        status: KeyStatus,
        test: &TestResult,
    ) -> Result<Option<StoredLlmKey>, StoreError> {
        let mut changes = Changes::default().set("status", Attr::S(status.as_str().into()));
        if status == KeyStatus::Valid {
            changes = changes.set("last_validated_at", Attr::N(test.at));
        }
        match self.0.update(&key(user, provider), test_changes(changes, Some(test)), Some(Condition::Present)).await {
            Ok(item) => refuse_tampered(parse(&item, provider)),
            Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks the key used, at most once per `min_interval` seconds (to spare writes). Returns
    /// whether a write happened.
    pub async fn touch_last_used(
        &self,
        user: &UserId,
        provider: Provider,
        now: i64,
        min_interval: i64,
    ) -> Result<bool, StoreError> {
        mark_used(self.0, &key(user, provider), now, min_interval).await
    }

    /// Deletes one key; returns whether there was one.
    pub async fn delete(&self, user: &UserId, provider: Provider) -> Result<bool, StoreError> {
        Ok(self.0.delete(&key(user, provider), None).await?.is_some())
    }

    /// Deletes every key of a user at once, each item by its own key whatever its attributes say;
    /// returns the providers whose keys were deleted.
    pub async fn delete_all(&self, user: &UserId) -> Result<Vec<Provider>, StoreError> {
        let items = self.items(user).await?;
        let providers = items.iter().map(provider_of).collect::<Result<Vec<_>, _>>()?;
        let writes = providers.iter().map(|p| Write::Delete { key: key(user, *p), when: None }).collect();
        self.0.transact(writes).await?;
        Ok(providers)
    }
}

/// The provider an item's key names.
fn provider_of(item: &Item) -> Result<Provider, StoreError> {
    let key = item.key()?;
    let slug = key.sk.strip_prefix(PREFIX).ok_or_else(|| StoreError::Corrupt(format!("`{}` is no key's", key.sk)))?;
    slug.parse().map_err(|_| StoreError::Corrupt(format!("unknown provider `{slug}`")))
}

/// An item read as `provider`'s key (what its key names); its `provider` attribute must agree.
fn parse(item: &Item, provider: Provider) -> Result<StoredLlmKey, StoreError> {
    bound_to_key(item, "provider", provider.slug())?;
    let last_test = match item.get("test_ok") {
        None => None,
        Some(_) => Some(TestResult {
            ok: item.bool("test_ok")?,
            message: item.s("test_message")?.to_owned(),
            at: item.n("test_at")?,
        }),
    };
    let zai_region = match (provider, item.opt_s("zai_region")?) {
        (Provider::Zai, None) => Some(ZaiRegion::International),
        (Provider::Zai, Some(raw)) => {
            Some(ZaiRegion::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown Zai region `{raw}`")))?)
        }
        _ => None,
    };
    Ok(StoredLlmKey {
        provider,
        zai_region,
        sealed: sealed_from(item.b("sealed")?)?,
        preview: item.s("preview")?.to_owned(),
        status: KeyStatus::parse(item.s("status")?)?,
        last_validated_at: item.opt_n("last_validated_at")?,
        last_test,
        last_used_at: item.opt_n("last_used_at")?,
        created_at: item.n("created_at")?,
        updated_at: item.n("updated_at")?,
    })
}
