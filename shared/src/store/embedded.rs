//! Embedded adapter for local mode: the single table in one SQLite file, surviving restarts.
//!
//! Each item is stored whole as DynamoDB-style JSON beside its key columns. Writes run in
//! `BEGIN IMMEDIATE` transactions and evaluate conditions on the stored item, which gives the same
//! all-or-nothing, condition-checked semantics as DynamoDB, across threads and processes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StoreError;
use super::table::{
    Changes, Condition, Cursor, EXPIRES_AT, GSI1PK, GSI1SK, Index, Item, Key, PK, Page, Query, SK, Table, Write,
    apply_changes, condition_of, holds, now_epoch, page_of,
};

#[derive(Clone)]
pub struct EmbeddedTable {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS items (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        gsi1pk TEXT,
        gsi1sk TEXT,
        expires_at INTEGER,
        body TEXT NOT NULL,
        PRIMARY KEY (pk, sk)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS items_gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
";

fn db_err(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => StoreError::Throttled,
        _ => StoreError::Unavailable(format!("embedded store: {err}")),
    }
}

impl EmbeddedTable {
    pub const FILE_NAME: &'static str = "keyward.sqlite3";

    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        crate::files::create_private_dir(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        crate::files::ensure_own(dir).map_err(StoreError::Unavailable)?;
        let file = dir.join(Self::FILE_NAME);
        if std::fs::symlink_metadata(&file).is_ok() {
            crate::files::ensure_own(&file).map_err(StoreError::Unavailable)?;
        }
        let conn = Connection::open(&file).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Unavailable("embedded store lock poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
    }
}

/// The stored item under `key`, live or expired (conditions and updates see it as DynamoDB does).
fn load(conn: &Connection, key: &Key) -> Result<Option<Item>, StoreError> {
    let body: Option<String> = conn
        .query_row("SELECT body FROM items WHERE pk = ?1 AND sk = ?2", params![key.pk, key.sk], |row| row.get(0))
        .optional()
        .map_err(db_err)?;
    body.map(|b| serde_json::from_str(&b).map_err(|e| StoreError::Corrupt(format!("stored item: {e}")))).transpose()
}

fn store(conn: &Connection, item: &Item) -> Result<(), StoreError> {
    let key = item.key()?;
    let text = |name| item.opt_s(name).map(|v| v.map(str::to_owned));
    let body = serde_json::to_string(item).map_err(|e| StoreError::Invalid(e.to_string()))?;
    conn.execute(
        "INSERT OR REPLACE INTO items (pk, sk, gsi1pk, gsi1sk, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key.pk, key.sk, text(GSI1PK)?, text(GSI1SK)?, item.opt_n(EXPIRES_AT)?, body],
    )
    .map_err(db_err)?;
    Ok(())
}

fn remove(conn: &Connection, key: &Key) -> Result<(), StoreError> {
    conn.execute("DELETE FROM items WHERE pk = ?1 AND sk = ?2", params![key.pk, key.sk]).map_err(db_err)?;
    Ok(())
}

/// Applies one write whose condition has been checked against `current`; returns the item as it
/// was (for deletes) or is afterwards (for updates).
fn apply(conn: &Connection, write: &Write, current: Option<Item>, now: i64) -> Result<Option<Item>, StoreError> {
    Ok(match write {
        Write::Put { item, .. } => {
            store(conn, item)?;
            None
        }
        Write::Update { key, changes, .. } => {
            let updated = apply_changes(current, key, changes)?;
            store(conn, &updated)?;
            Some(updated)
        }
        Write::Delete { key, .. } => {
            remove(conn, key)?;
            current.filter(|i| i.is_live(now))
        }
    })
}

/// Runs writes atomically: all conditions hold and all writes land, or nothing changes.
fn run(conn: &mut Connection, writes: &[Write]) -> Result<Vec<Option<Item>>, StoreError> {
    let keys = writes.iter().map(Write::key).collect::<Result<Vec<_>, _>>()?;
    if keys.iter().collect::<HashSet<_>>().len() != keys.len() {
        return Err(StoreError::Invalid("a transaction touches one item twice".into()));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    let now = now_epoch();
    let currents = keys.iter().map(|key| load(&tx, key)).collect::<Result<Vec<_>, _>>()?;
    // Like DynamoDB, report every failed condition, not just the first.
    let failed: Vec<usize> = writes
        .iter()
        .zip(&currents)
        .enumerate()
        .filter(|(_, (write, current))| condition_of(write).is_some_and(|c| !holds(c, current.as_ref(), now)))
        .map(|(index, _)| index)
        .collect();
    if !failed.is_empty() {
        return Err(StoreError::ConditionFailed { failed });
    }
    let results = writes
        .iter()
        .zip(currents)
        .map(|(write, current)| apply(&tx, write, current, now))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().map_err(db_err)?;
    Ok(results)
}

fn single(conn: &mut Connection, write: Write) -> Result<Option<Item>, StoreError> {
    run(conn, std::slice::from_ref(&write)).map(|mut results| results.pop().flatten())
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.with_conn(move |conn| Ok(load(conn, &key)?.filter(|i| i.is_live(now_epoch())))).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        let keys = keys.to_vec();
        self.with_conn(move |conn| {
            let now = now_epoch();
            let loaded = keys.iter().map(|key| load(conn, key)).collect::<Result<Vec<_>, _>>()?;
            Ok(loaded.into_iter().flatten().filter(|i| i.is_live(now)).collect())
        })
        .await
    }

    async fn put(&self, item: Item, when: Option<Condition>) -> Result<(), StoreError> {
        self.with_conn(move |conn| single(conn, Write::Put { item, when }).map(|_| ())).await
    }

    async fn update(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<Item, StoreError> {
        let key = key.clone();
        self.with_conn(move |conn| {
            single(conn, Write::Update { key, changes, when })?
                .ok_or_else(|| StoreError::Corrupt("update returned no item".into()))
        })
        .await
    }

    async fn delete(&self, key: &Key, when: Option<Condition>) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.with_conn(move |conn| single(conn, Write::Delete { key, when })).await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let query = query.clone();
        self.with_conn(move |conn| run_query(conn, &query)).await
    }

    async fn scan(&self, after: Option<&Cursor>, limit: u32) -> Result<Page, StoreError> {
        let after = after.map(|c| {
            let get = |k: &str| c.0.get(k).cloned().unwrap_or_default();
            (get(PK), get(SK))
        });
        self.with_conn(move |conn| run_scan(conn, after, limit.max(1))).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.len() > 100 {
            return Err(StoreError::Invalid("a transaction holds at most 100 writes".into()));
        }
        self.with_conn(move |conn| run(conn, &writes).map(|_| ())).await
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

fn parse(bodies: &[String]) -> Result<Vec<Item>, StoreError> {
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(|e| StoreError::Corrupt(format!("stored item: {e}"))))
        .collect()
}

fn run_scan(conn: &Connection, after: Option<(String, String)>, limit: u32) -> Result<Page, StoreError> {
    let (pk, sk) = after.unwrap_or_default();
    let mut stmt = conn
        .prepare_cached("SELECT body FROM items WHERE (pk, sk) > (?1, ?2) ORDER BY pk, sk LIMIT ?3")
        .map_err(db_err)?;
    let bodies = stmt
        .query_map(params![pk, sk, i64::from(limit) + 1], |row| row.get::<_, String>(0))
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    page_of(parse(&bodies)?, limit, Index::Table)
}

fn run_query(conn: &Connection, query: &Query) -> Result<Page, StoreError> {
    let (part_col, sort_col) = match query.index {
        Index::Table => (PK, SK),
        Index::Gsi1 => (GSI1PK, GSI1SK),
    };
    let order = if query.ascending { "ASC" } else { "DESC" };
    let cmp = if query.ascending { ">" } else { "<" };
    // Rows are ordered by (sort key, pk, sk) so GSI pages, whose sort keys may repeat, are stable.
    let mut sql = format!("SELECT body FROM items WHERE {part_col} = ?1 AND substr({sort_col}, 1, length(?2)) = ?2");
    let cursor = query.start_after.as_ref().map(|c| {
        let get = |k: &str| c.0.get(k).cloned().unwrap_or_default();
        (get(sort_col), get(PK), get(SK))
    });
    if cursor.is_some() {
        sql.push_str(&format!(" AND ({sort_col}, pk, sk) {cmp} (?3, ?4, ?5)"));
    }
    sql.push_str(&format!(" ORDER BY {sort_col} {order}, pk {order}, sk {order} LIMIT ?6"));
    let prefix = query.sort_prefix.clone().unwrap_or_default();
    let (c_sort, c_pk, c_sk) = cursor.unwrap_or_default();
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let bodies = stmt
        .query_map(params![query.partition, prefix, c_sort, c_pk, c_sk, i64::from(query.limit) + 1], |row| {
            row.get::<_, String>(0)
        })
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    page_of(parse(&bodies)?, query.limit, query.index)
}
