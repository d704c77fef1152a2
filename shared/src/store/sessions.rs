//! keyward sessions: what a client holds instead of Auth0's refresh token. A session family keeps
//! the sealed Auth0 refresh token and the hash of its one current handle; every use rotates the
//! handle, and a handle that is no longer current (reuse) revokes the family. Handles are stored
//! only as SHA-256 hashes.

use super::table::{Attr, Changes, Condition, EXPIRES_AT, Item, Key, Table, Write};
use super::{StoreError, bound_to_key, refuse_tampered, sealed_attr, sealed_from, user_from};
use crate::crypto::{BranchVersion, Sealed, Tag};
use crate::model::{ClientKind, UserId};

/// A session idle this long ends (each rotation extends it).
pub const SESSION_IDLE_SECS: i64 = 30 * 86_400;

#[derive(Debug, Clone)]
pub struct SessionFamily {
    pub id: String,
    pub user: UserId,
    /// Which Auth0 application the refresh token belongs to.
    pub client: ClientKind,
    pub sealed_refresh: Sealed,
    pub current_handle: String,
    /// The MAC binding the family to its user, client and current handle (`None` on a family
    /// written before sessions were bound, or whose MAC attributes are unreadable).
    pub binding: Option<Tag>,
    pub active: bool,
}

pub struct Sessions<'a>(pub(super) &'a dyn Table);

fn family_key(id: &str) -> Key {
    Key::new(format!("SESSION#{id}"), "FAMILY")
}

fn handle_key(handle_hash: &str) -> Key {
    Key::new(format!("HANDLE#{handle_hash}"), "HANDLE")
}

fn binding_from(item: &Item) -> Option<Tag> {
    let version = BranchVersion::parse(item.s("mac_version").ok()?)?;
    let mac = item.b("mac").ok()?.try_into().ok()?;
    Some(Tag { version, mac })
}

fn handle_item(handle_hash: &str, family: &str, user: &UserId, expires_at: i64) -> Item {
    Item::new(&handle_key(handle_hash))
        .with("entity", Attr::S("session-handle".into()))
        .with("family", Attr::S(family.to_owned()))
        .with("user_id", Attr::S(user.to_string()))
        .with(EXPIRES_AT, Attr::N(expires_at))
}

impl Sessions<'_> {
    /// Creates a family, bound by `binding`, and its first handle, together.
    pub async fn create(&self, family: &SessionFamily, binding: &Tag, now: i64) -> Result<(), StoreError> {
        let expires_at = now + SESSION_IDLE_SECS;
        let item = Item::new(&family_key(&family.id))
            .with("mac_version", Attr::S(binding.version.to_string()))
            .with("mac", Attr::B(binding.mac.to_vec()))
            .with("entity", Attr::S("session".into()))
            .with("user_id", Attr::S(family.user.to_string()))
            .with("client", Attr::S(family.client.as_str().into()))
            .with("sealed", sealed_attr(&family.sealed_refresh))
            .with("current", Attr::S(family.current_handle.clone()))
            .with("status", Attr::S("active".into()))
            .with("created_at", Attr::N(now))
            .with(EXPIRES_AT, Attr::N(expires_at));
        self.0
            .transact(vec![
                Write::Put { item, when: Some(Condition::Absent) },
                Write::Put {
                    item: handle_item(&family.current_handle, &family.id, &family.user, expires_at),
                    when: Some(Condition::Absent),
                },
            ])
            .await
    }

    /// The family a handle was issued for (current or not), if both are still live.
    pub async fn find(&self, handle_hash: &str) -> Result<Option<SessionFamily>, StoreError> {
        let Some(handle) = self.0.get(&handle_key(handle_hash)).await? else { return Ok(None) };
        let id = handle.s("family")?.to_owned();
        let Some(item) = self.0.get(&family_key(&id)).await? else { return Ok(None) };
        let user = user_from(item.s("user_id")?)?;
        // A handle of another user's family was planted: refused before anything trusts it. (A
        // family's own items name it only by attribute; the sealed refresh token, bound to the
        // current handle, is what proves a handle belongs to it.)
        if refuse_tampered(bound_to_key(&handle, "user_id", user.as_str()))?.is_none() {
            return Ok(None);
        }
        Ok(Some(SessionFamily {
            user,
            client: ClientKind::parse(item.s("client")?)
                .ok_or_else(|| StoreError::Corrupt("unknown session client".into()))?,
            sealed_refresh: sealed_from(item.b("sealed")?)?,
            current_handle: item.s("current")?.to_owned(),
            binding: binding_from(&item),
            active: item.s("status")? == "active",
            id,
        }))
    }

    /// Moves the family from `old` to a new handle (its refresh token and binding with it)
    /// atomically; `false` when `old` was no longer current or the family was revoked meanwhile (a
    /// concurrent use).
    pub async fn rotate(
        &self,
        family: &SessionFamily,
        old_handle: &str,
        next: (&str, &Sealed, &Tag),
        now: i64,
    ) -> Result<bool, StoreError> {
        let (new_handle, sealed_refresh, binding) = next;
        let expires_at = now + SESSION_IDLE_SECS;
        let when = Condition::All(vec![
            Condition::Equals("current", Attr::S(old_handle.to_owned())),
            Condition::Equals("status", Attr::S("active".into())),
        ]);
        let changes = Changes::default()
            .set("mac_version", Attr::S(binding.version.to_string()))
            .set("mac", Attr::B(binding.mac.to_vec()))
            .set("current", Attr::S(new_handle.to_owned()))
            .set("sealed", sealed_attr(sealed_refresh))
            .set("rotated_at", Attr::N(now))
            .set(EXPIRES_AT, Attr::N(expires_at));
        let writes = vec![
            Write::Update { key: family_key(&family.id), changes, when: Some(when) },
            Write::Put {
                item: handle_item(new_handle, &family.id, &family.user, expires_at),
                when: Some(Condition::Absent),
            },
        ];
        match self.0.transact(writes).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Ends the family: none of its handles works again. Idempotent.
    pub async fn revoke(&self, family: &str, now: i64) -> Result<(), StoreError> {
        let changes = Changes::default().set("status", Attr::S("revoked".into())).set("revoked_at", Attr::N(now));
        match self.0.update(&family_key(family), changes, Some(Condition::Present)).await {
            Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
