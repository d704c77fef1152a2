//! The single-table primitives both storage adapters implement (DynamoDB, embedded SQLite).
//!
//! Domain repositories are written once on top of this, so both backends share one key schema and
//! one set of semantics: items live under `pk`/`sk`, one GSI (`gsi1pk`/`gsi1sk`), and an item whose
//! `expires_at` (epoch seconds) has passed is absent on every read and condition, whether or not the
//! backend has deleted it yet.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1PK: &str = "gsi1pk";
pub const GSI1SK: &str = "gsi1sk";
pub const EXPIRES_AT: &str = "expires_at";
pub const GSI1: &str = "gsi1";

/// An attribute value; the subset of DynamoDB's types keyward uses. Serialized as DynamoDB JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attr {
    S(String),
    N(i64),
    B(#[serde(with = "base64_bytes")] Vec<u8>),
    #[serde(rename = "BOOL")]
    Bool(bool),
    /// A list of strings (DynamoDB `L` of `S`).
    L(Vec<String>),
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD.decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A stored item: named attributes, including the key attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Item(pub BTreeMap<String, Attr>);

impl Item {
    pub fn new(key: &Key) -> Self {
        Item::default().with(PK, Attr::S(key.pk.clone())).with(SK, Attr::S(key.sk.clone()))
    }

    pub fn with(mut self, name: &str, value: Attr) -> Self {
        self.0.insert(name.to_owned(), value);
        self
    }

    pub fn with_opt(self, name: &str, value: Option<Attr>) -> Self {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.0.get(name)
    }

    pub fn key(&self) -> Result<Key, StoreError> {
        Ok(Key { pk: self.s(PK)?.to_owned(), sk: self.s(SK)?.to_owned() })
    }

    pub fn s(&self, name: &str) -> Result<&str, StoreError> {
        self.opt_s(name)?.ok_or_else(|| missing(name))
    }

    pub fn opt_s(&self, name: &str) -> Result<Option<&str>, StoreError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::S(v)) => Ok(Some(v)),
            Some(_) => Err(wrong_type(name)),
        }
    }

    pub fn n(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_n(name)?.ok_or_else(|| missing(name))
    }

    pub fn opt_n(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::N(v)) => Ok(Some(*v)),
            Some(_) => Err(wrong_type(name)),
        }
    }

    pub fn b(&self, name: &str) -> Result<&[u8], StoreError> {
        self.opt_b(name)?.ok_or_else(|| missing(name))
    }

    pub fn opt_b(&self, name: &str) -> Result<Option<&[u8]>, StoreError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Attr::B(v)) => Ok(Some(v)),
            Some(_) => Err(wrong_type(name)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, StoreError> {
        match self.0.get(name) {
            None => Err(missing(name)),
            Some(Attr::Bool(v)) => Ok(*v),
            Some(_) => Err(wrong_type(name)),
        }
    }

    pub fn list(&self, name: &str) -> Result<&[String], StoreError> {
        match self.0.get(name) {
            None => Err(missing(name)),
            Some(Attr::L(v)) => Ok(v),
            Some(_) => Err(wrong_type(name)),
        }
    }

    /// Whether the item is live at `now` (no `expires_at`, or one still in the future).
    pub fn is_live(&self, now: i64) -> bool {
        !matches!(self.0.get(EXPIRES_AT), Some(Attr::N(at)) if *at <= now)
    }
}

fn missing(name: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute `{name}` is missing"))
}

fn wrong_type(name: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute `{name}` has the wrong type"))
}

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }
}

/// A condition on the current state of one item, checked atomically with the write it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No live item has this key.
    Absent,
    /// A live item has this key.
    Present,
    /// The attribute exists and equals the value.
    Equals(&'static str, Attr),
    /// The attribute is missing or a number below this.
    MissingOrBelow(&'static str, i64),
    All(Vec<Condition>),
}

/// Attribute changes of an update; an update creates the item when none exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub set: Vec<(&'static str, Attr)>,
    /// Set only when the attribute is missing (e.g. `created_at`).
    pub set_if_missing: Vec<(&'static str, Attr)>,
    /// Added to a number attribute (a missing one counts as 0), atomically: DynamoDB's `ADD`.
    pub add: Vec<(&'static str, i64)>,
    pub remove: Vec<&'static str>,
}

impl Changes {
    pub fn set(mut self, name: &'static str, value: Attr) -> Self {
        self.set.push((name, value));
        self
    }

    pub fn set_opt(self, name: &'static str, value: Option<Attr>) -> Self {
        match value {
            Some(v) => self.set(name, v),
            None => self.remove(name),
        }
    }

    pub fn set_if_missing(mut self, name: &'static str, value: Attr) -> Self {
        self.set_if_missing.push((name, value));
        self
    }

    pub fn add(mut self, name: &'static str, delta: i64) -> Self {
        self.add.push((name, delta));
        self
    }

    pub fn remove(mut self, name: &'static str) -> Self {
        self.remove.push(name);
        self
    }
}

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    Put { item: Item, when: Option<Condition> },
    Update { key: Key, changes: Changes, when: Option<Condition> },
    Delete { key: Key, when: Option<Condition> },
}

impl Write {
    pub fn key(&self) -> Result<Key, StoreError> {
        match self {
            Write::Put { item, .. } => item.key(),
            Write::Update { key, .. } | Write::Delete { key, .. } => Ok(key.clone()),
        }
    }
}

/// Which key a query runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    Table,
    Gsi1,
}

/// Items of one partition, optionally with a sort-key prefix, in sort-key order.
#[derive(Debug, Clone)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub sort_prefix: Option<String>,
    pub ascending: bool,
    pub limit: u32,
    pub start_after: Option<Cursor>,
}

impl Query {
    pub fn partition(index: Index, partition: impl Into<String>) -> Self {
        Self { index, partition: partition.into(), sort_prefix: None, ascending: true, limit: 100, start_after: None }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.sort_prefix = Some(prefix.into());
        self
    }

    pub fn descending(mut self) -> Self {
        self.ascending = false;
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit.max(1);
        self
    }

    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.start_after = cursor;
        self
    }
}

/// Where a page ended: the key attributes of its last item (DynamoDB's `LastEvaluatedKey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor(pub BTreeMap<String, String>);

impl Cursor {
    /// Opaque, URL-safe form for clients.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(&self.0).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a client's cursor for `query`: it must name exactly the key attributes of the query's
    /// index, inside the query's partition and sort-key range. Anything else (another user's
    /// partition, another listing, a tampered or malformed cursor) is refused, so a client can
    /// neither page into someone else's items nor make the store fail on a start key it rejects.
    pub fn decode(raw: &str, query: &Query) -> Result<Self, StoreError> {
        let map = Self::decode_map(raw)?;
        let (partition_attr, sort_attr, keys): (_, _, &[&str]) = match query.index {
            Index::Table => (PK, SK, &[PK, SK]),
            Index::Gsi1 => (GSI1PK, GSI1SK, &[GSI1PK, GSI1SK, PK, SK]),
        };
        let exact_keys = map.len() == keys.len() && keys.iter().all(|k| map.contains_key(*k));
        let in_partition = map.get(partition_attr) == Some(&query.partition);
        let in_range =
            query.sort_prefix.as_ref().is_none_or(|prefix| map.get(sort_attr).is_some_and(|s| s.starts_with(prefix)));
        if exact_keys && in_partition && in_range { Ok(Self(map)) } else { Err(StoreError::InvalidCursor) }
    }

    /// Parses a cursor of a table scan ([`Table::scan`]): exactly the table's key attributes.
    pub fn decode_scan(raw: &str) -> Result<Self, StoreError> {
        let map = Self::decode_map(raw)?;
        if map.len() == 2 && map.contains_key(PK) && map.contains_key(SK) {
            Ok(Self(map))
        } else {
            Err(StoreError::InvalidCursor)
        }
    }

    fn decode_map(raw: &str) -> Result<BTreeMap<String, String>, StoreError> {
        use base64::Engine;
        if raw.len() > 2048 {
            return Err(StoreError::InvalidCursor);
        }
        let json =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&json).map_err(|_| StoreError::InvalidCursor)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Cursor>,
}

/// A storage backend holding keyward's single table.
#[async_trait]
pub trait Table: Send + Sync {
    /// A strongly consistent read; expired items are absent.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;
    /// Strongly consistent reads of several items at once (one round trip per 100 keys): the live
    /// ones, in no particular order.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError>;
    async fn put(&self, item: Item, when: Option<Condition>) -> Result<(), StoreError>;
    /// Applies `changes` and returns the item as it is afterwards.
    async fn update(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<Item, StoreError>;
    /// Applies `changes` and reads nothing back: for a caller whose role may touch only the
    /// attributes it changes (DynamoDB refuses it `ReturnValues: ALL_NEW`).
    async fn update_blind(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<(), StoreError> {
        self.update(key, changes, when).await.map(|_| ())
    }
    /// Deletes the item and returns it if it was live.
    async fn delete(&self, key: &Key, when: Option<Condition>) -> Result<Option<Item>, StoreError>;
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;
    /// One page of every live item of the table, in no particular order, from where `after`
    /// left off: a maintenance sweep (the keyring's rewrap), never a request's path.
    async fn scan(&self, after: Option<&Cursor>, limit: u32) -> Result<Page, StoreError>;
    /// All writes or none. At most 100, each on a different item.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError>;
    /// A short name for health output and logs: `dynamodb`, `embedded` or `memory`.
    fn backend(&self) -> &'static str;
}

// The semantics of conditions and updates, shared by the backends that evaluate them in-process.

/// Evaluates a condition against the stored item, as DynamoDB would.
pub(super) fn holds(condition: &Condition, item: Option<&Item>, now: i64) -> bool {
    match condition {
        Condition::Absent => item.is_none_or(|i| !i.is_live(now)),
        Condition::Present => item.is_some_and(|i| i.is_live(now)),
        Condition::Equals(name, value) => item.and_then(|i| i.get(name)) == Some(value),
        Condition::MissingOrBelow(name, bound) => match item.and_then(|i| i.get(name)) {
            None => true,
            Some(Attr::N(n)) => n < bound,
            Some(_) => false,
        },
        Condition::All(parts) => parts.iter().all(|c| holds(c, item, now)),
    }
}

pub(super) fn apply_changes(existing: Option<Item>, key: &Key, changes: &Changes) -> Result<Item, StoreError> {
    let mut item = existing.unwrap_or_else(|| Item::new(key));
    for (name, value) in &changes.set {
        item.0.insert((*name).to_owned(), value.clone());
    }
    for (name, value) in &changes.set_if_missing {
        item.0.entry((*name).to_owned()).or_insert_with(|| value.clone());
    }
    for (name, delta) in &changes.add {
        let sum = match item.get(name) {
            None => *delta,
            Some(Attr::N(n)) => {
                n.checked_add(*delta).ok_or_else(|| StoreError::Invalid(format!("`{name}` overflows")))?
            }
            Some(_) => return Err(StoreError::Invalid(format!("`{name}` is not a number"))),
        };
        item.0.insert((*name).to_owned(), Attr::N(sum));
    }
    for name in &changes.remove {
        item.0.remove(*name);
    }
    Ok(item)
}

pub(super) fn condition_of(write: &Write) -> Option<&Condition> {
    match write {
        Write::Put { when, .. } | Write::Update { when, .. } | Write::Delete { when, .. } => when.as_ref(),
    }
}

/// A page of `read` (up to `limit` + 1 items, in order): as in DynamoDB, the limit counts items
/// read before the expiry filter, and a full page carries a cursor.
pub(super) fn page_of(mut read: Vec<Item>, limit: u32, index: Index) -> Result<Page, StoreError> {
    let more = read.len() > limit as usize;
    read.truncate(limit as usize);
    let next = if more { read.last().map(|last| cursor_of(last, index)).transpose()? } else { None };
    let now = now_epoch();
    Ok(Page { items: read.into_iter().filter(|i| i.is_live(now)).collect(), next })
}

/// The cursor a page ending at `item` carries on `index`.
pub(super) fn cursor_of(item: &Item, index: Index) -> Result<Cursor, StoreError> {
    let mut map = BTreeMap::from([(PK.to_owned(), item.s(PK)?.to_owned()), (SK.to_owned(), item.s(SK)?.to_owned())]);
    if index == Index::Gsi1 {
        map.insert(GSI1PK.to_owned(), item.s(GSI1PK)?.to_owned());
        map.insert(GSI1SK.to_owned(), item.s(GSI1SK)?.to_owned());
    }
    Ok(Cursor(map))
}

/// The current time in epoch seconds, as stored in `expires_at` and every timestamp.
pub fn now_epoch() -> i64 {
    now_epoch_millis() / 1_000
}

/// The current time in epoch milliseconds, for spacings shorter than a few seconds, where a whole
/// second of rounding would matter.
pub fn now_epoch_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
