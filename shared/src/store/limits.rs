//! Fixed-window counters that cap costly actions per user, such as validation calls (which spend
//! the user's provider money). One conditional update per action: the count rises only while it is
//! below the limit, so concurrent requests can never overshoot it.

use super::table::{Attr, Changes, Condition, EXPIRES_AT, Key, Table};
use super::{StoreError, user_pk};
use crate::model::UserId;

const PREFIX: &str = "LIMIT#";

/// Whether an action may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    Granted,
    /// The window's allowance is used up; it renews in this many seconds.
    Refused {
        retry_after_secs: u64,
    },
}

pub struct Limits<'a>(pub(super) &'a dyn Table);

impl Limits<'_> {
    /// Takes one unit of `bucket` (e.g. `validate:openai`, no `#`) for `user` in the current window
    /// of `window_secs`, if fewer than `limit` were taken. The counter expires with its window.
    pub async fn take(
        &self,
        user: &UserId,
        bucket: &str,
        limit: u32,
        window_secs: i64,
        now: i64,
    ) -> Result<Allowance, StoreError> {
        self.take_at(user_pk(user), bucket, limit, window_secs, now).await
    }

    /// Takes one unit of `bucket` for a caller that is not signed in (its bucket names the client:
    /// `login:203.0.113.7`), in a partition of its own.
    pub async fn take_anonymous(
        &self,
        bucket: &str,
        limit: u32,
        window_secs: i64,
        now: i64,
    ) -> Result<Allowance, StoreError> {
        self.take_at(format!("CLIENT#{bucket}"), bucket, limit, window_secs, now).await
    }

    async fn take_at(
        &self,
        partition: String,
        bucket: &str,
        limit: u32,
        window_secs: i64,
        now: i64,
    ) -> Result<Allowance, StoreError> {
        let window_end = now - now.rem_euclid(window_secs) + window_secs;
        let key = Key::new(partition, format!("{PREFIX}{bucket}#{window_end}"));
        let changes = Changes::default()
            .set("entity", Attr::S("limit".into()))
            .set(EXPIRES_AT, Attr::N(window_end))
            .add("count", 1);
        match self.0.update(&key, changes, Some(Condition::MissingOrBelow("count", i64::from(limit)))).await {
            Ok(_) => Ok(Allowance::Granted),
            Err(StoreError::ConditionFailed { .. }) => {
                Ok(Allowance::Refused { retry_after_secs: (window_end - now).max(1).unsigned_abs() })
            }
            Err(e) => Err(e),
        }
    }
}
