//! Device-flow records (RFC 8628), keyed by a hash of the device code: the polling interval keyward
//! enforces itself, the last poll, and whether the code has been used up. Kept an hour past the
//! code's expiry so a late poll is told `expired_token`, not "unknown".

use super::StoreError;
use super::table::{Attr, Changes, Condition, EXPIRES_AT, Item, Key, Table};

/// How long a record outlives its code.
const GRACE_SECS: i64 = 3_600;
/// When the last poll was taken, in epoch milliseconds.
const LAST_POLL_MS: &str = "last_poll_ms";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    pub interval: i64,
    pub valid_until: i64,
    pub spent: bool,
}

pub struct Devices<'a>(pub(super) &'a dyn Table);

fn key(device_hash: &str) -> Key {
    Key::new(format!("DEVICE#{device_hash}"), "DEVICE")
}

impl Devices<'_> {
    pub async fn create(&self, device_hash: &str, interval: i64, valid_until: i64) -> Result<(), StoreError> {
        let item = Item::new(&key(device_hash))
            .with("entity", Attr::S("device".into()))
            .with("interval", Attr::N(interval))
            .with("valid_until", Attr::N(valid_until))
            .with("status", Attr::S("pending".into()))
            .with(EXPIRES_AT, Attr::N(valid_until + GRACE_SECS));
        self.0.put(item, Some(Condition::Absent)).await
    }

    pub async fn get(&self, device_hash: &str) -> Result<Option<DeviceGrant>, StoreError> {
        let Some(item) = self.0.get(&key(device_hash)).await? else { return Ok(None) };
        Ok(Some(DeviceGrant {
            interval: item.n("interval")?,
            valid_until: item.n("valid_until")?,
            spent: item.s("status")? != "pending",
        }))
    }

    /// Records a poll at `now_ms` if the last one was at least `interval` seconds ago; `false` when the
    /// client polled too soon (checked and written atomically, so parallel polls cannot slip through).
    /// Kept in milliseconds: whole seconds would let two polls a moment apart straddle a second boundary.
    pub async fn take_poll(&self, device_hash: &str, now_ms: i64, interval: i64) -> Result<bool, StoreError> {
        let earliest_previous = now_ms - interval * 1_000 + 1;
        let when = Condition::All(vec![Condition::Present, Condition::MissingOrBelow(LAST_POLL_MS, earliest_previous)]);
        match self.0.update(&key(device_hash), Changes::default().set(LAST_POLL_MS, Attr::N(now_ms)), Some(when)).await
        {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// RFC 8628 `slow_down`: the interval grows by 5 seconds for this and every later poll, counted
    /// from this one at `now_ms`.
    pub async fn slow_down(&self, device_hash: &str, now_ms: i64) -> Result<i64, StoreError> {
        let changes = Changes::default().add("interval", 5).set(LAST_POLL_MS, Attr::N(now_ms));
        let item = self.0.update(&key(device_hash), changes, Some(Condition::Present)).await?;
        item.n("interval")
    }

    /// Uses the code up; `false` when it already was (so tokens are handed out exactly once).
    pub async fn spend(&self, device_hash: &str) -> Result<bool, StoreError> {
        let when = Condition::Equals("status", Attr::S("pending".into()));
        match self
            .0
            .update(&key(device_hash), Changes::default().set("status", Attr::S("spent".into())), Some(when))
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
