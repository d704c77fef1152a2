//! An in-process table: the same semantics as the other backends (conditions, transactions,
//! expiry, paging) over a map in memory, for what runs keyward's store code without a database —
//! the capacity model (`scripts/capacity`) and the benches. Nothing persists.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::StoreError;
use super::table::{
    Changes, Condition, Cursor, GSI1PK, GSI1SK, Index, Item, Key, PK, Page, Query, SK, Table, Write, apply_changes,
    condition_of, holds, now_epoch, page_of,
};

#[derive(Default)]
pub struct MemoryTable {
    items: Mutex<BTreeMap<Key, Item>>,
}

impl MemoryTable {
    fn items(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Item>> {
        // Every write below completes before it can panic, so a poisoned map is still consistent.
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self, writes: &[Write]) -> Result<Option<Item>, StoreError> {
        let keys = writes.iter().map(Write::key).collect::<Result<Vec<_>, _>>()?;
        if keys.iter().collect::<HashSet<_>>().len() != keys.len() {
            return Err(StoreError::Invalid("a transaction touches one item twice".into()));
        }
        let now = now_epoch();
        let mut items = self.items();
        let failed: Vec<usize> = writes
            .iter()
            .zip(&keys)
            .enumerate()
            .filter(|(_, (write, key))| condition_of(write).is_some_and(|c| !holds(c, items.get(key), now)))
            .map(|(index, _)| index)
            .collect();
        if !failed.is_empty() {
            return Err(StoreError::ConditionFailed { failed });
        }
        // Updates are computed before anything is written, so an invalid one changes nothing.
        let updated = writes
            .iter()
            .zip(&keys)
            .map(|(write, key)| match write {
                Write::Update { changes, .. } => apply_changes(items.get(key).cloned(), key, changes).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut last = None;
        for ((write, key), updated) in writes.iter().zip(keys).zip(updated) {
            last = match write {
                Write::Put { item, .. } => {
                    items.insert(key, item.clone());
                    None
                }
                Write::Update { .. } => {
                    let item = updated.unwrap_or_else(|| Item::new(&key));
                    items.insert(key, item.clone());
                    Some(item)
                }
                Write::Delete { .. } => items.remove(&key).filter(|i| i.is_live(now)),
            };
        }
        Ok(last)
    }
}

#[async_trait]
impl Table for MemoryTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        Ok(self.items().get(key).filter(|i| i.is_live(now_epoch())).cloned())
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let now = now_epoch();
        let items = self.items();
        Ok(keys.iter().filter_map(|key| items.get(key)).filter(|i| i.is_live(now)).cloned().collect())
    }

    async fn put(&self, item: Item, when: Option<Condition>) -> Result<(), StoreError> {
        self.run(&[Write::Put { item, when }]).map(|_| ())
    }

    async fn update(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<Item, StoreError> {
        self.run(&[Write::Update { key: key.clone(), changes, when }])?
            .ok_or_else(|| StoreError::Corrupt("update returned no item".into()))
    }

    async fn delete(&self, key: &Key, when: Option<Condition>) -> Result<Option<Item>, StoreError> {
        self.run(&[Write::Delete { key: key.clone(), when }])
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let (part_attr, sort_attr) = match query.index {
            Index::Table => (PK, SK),
            Index::Gsi1 => (GSI1PK, GSI1SK),
        };
        let prefix = query.sort_prefix.as_deref().unwrap_or_default();
        let position = |item: &Item| -> Option<(String, String, String)> {
            Some((item.opt_s(sort_attr).ok()??.to_owned(), item.s(PK).ok()?.to_owned(), item.s(SK).ok()?.to_owned()))
        };
        let cursor = query.start_after.as_ref().map(|c| {
            let get = |k: &str| c.0.get(k).cloned().unwrap_or_default();
            (get(sort_attr), get(PK), get(SK))
        });
        let mut matched: Vec<((String, String, String), Item)> = self
            .items()
            .values()
            .filter(|item| item.opt_s(part_attr).ok().flatten() == Some(query.partition.as_str()))
            .filter_map(|item| position(item).map(|at| (at, item.clone())))
            .filter(|((sort, _, _), _)| sort.starts_with(prefix))
            .collect();
        matched.sort_by(|a, b| a.0.cmp(&b.0));
        if !query.ascending {
            matched.reverse();
        }
        let past_cursor = |at: &(String, String, String)| {
            cursor.as_ref().is_none_or(|c| if query.ascending { at > c } else { at < c })
        };
        let read: Vec<Item> = matched
            .into_iter()
            .filter(|(at, _)| past_cursor(at))
            .take(query.limit as usize + 1)
            .map(|(_, item)| item)
            .collect();
        page_of(read, query.limit, query.index)
    }

    async fn scan(&self, after: Option<&Cursor>, limit: u32) -> Result<Page, StoreError> {
        let limit = limit.max(1);
        let start = after.map(|c| {
            let get = |k: &str| c.0.get(k).cloned().unwrap_or_default();
            Key::new(get(PK), get(SK))
        });
        let items = self.items();
        let read: Vec<Item> = match &start {
            Some(start) => items
                .range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
                .take(limit as usize + 1)
                .map(|(_, i)| i.clone())
                .collect(),
            None => items.values().take(limit as usize + 1).cloned().collect(),
        };
        page_of(read, limit, Index::Table)
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.len() > 100 {
            return Err(StoreError::Invalid("a transaction holds at most 100 writes".into()));
        }
        self.run(&writes).map(|_| ())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
