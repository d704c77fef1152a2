//! Connected OAuth accounts (one per user and provider): sealed tokens, granted scopes and the
//! connection's state.
//!
//! Every save carries a version, so concurrent writers cannot overwrite each other: a save succeeds
//! only over the version it read. A refresh is serialised by a short lease on the item: one caller
//! takes it and calls the provider, the others wait for the version to move.

use super::table::{Attr, Changes, Condition, Item, Key, Table};
use super::{StoreError, bound_to_key, refuse_tampered, sealed_attr, sealed_from, user_pk};
use crate::crypto::Sealed;
use crate::model::{OAuthProvider, UserId};

const LEASE: &str = "refresh_lease_until";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Connected,
    /// The provider refused the refresh token; only the user reconnecting helps.
    ReconnectRequired,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::ReconnectRequired => "reconnect_required",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthConnection {
    pub user: UserId,
    pub provider: OAuthProvider,
    /// The connected account's address, as its provider names it.
    pub email: String,
    /// Whether the provider vouched for the address (a Microsoft address mostly is not).
    pub email_verified: bool,
    /// The account's stable id at the provider (Microsoft `tid/oid`, Google `sub`); `None` on
    /// connections made before keyward kept it.
    pub account_id: Option<String>,
    pub scopes: Vec<String>,
    pub refresh_token: Option<Sealed>,
    pub access_token: Sealed,
    pub access_expires_at: i64,
    pub status: ConnectionStatus,
    pub connected_at: i64,
    pub last_refreshed_at: Option<i64>,
    /// Bumped by every save.
    pub version: i64,
    /// Someone is refreshing the access token until then (epoch seconds).
    pub refresh_lease_until: Option<i64>,
}

impl OAuthConnection {
    /// Whether another caller holds a live refresh lease at `now`.
    pub fn is_leased(&self, now: i64) -> bool {
        self.refresh_lease_until.is_some_and(|until| until > now)
    }
}

pub struct OAuthConnections<'a>(pub(super) &'a dyn Table, pub(super) OAuthProvider);

fn key(user: &UserId, provider: OAuthProvider) -> Key {
    Key::new(user_pk(user), format!("OAUTH#{provider}"))
}

impl OAuthConnections<'_> {
    /// The user's connection; a tampered item is refused as absent.
    pub async fn get(&self, user: &UserId) -> Result<Option<OAuthConnection>, StoreError> {
        match self.0.get(&key(user, self.1)).await? {
            Some(item) => refuse_tampered(parse(&item, user, self.1)),
            None => Ok(None),
        }
    }

    /// Saves `connection` as version `read_version + 1` if the stored one is still `read_version`
    /// (`None`: a new connection, replacing whatever was there). Returns the saved connection, or
    /// `None` when another writer got there first.
    pub async fn save(
        &self,
        connection: &OAuthConnection,
        read_version: Option<i64>,
    ) -> Result<Option<OAuthConnection>, StoreError> {
        let version = read_version.map_or(1, |v| v + 1);
        let changes = Changes::default()
            .set("entity", Attr::S("oauth-connection".into()))
            .set("user_id", Attr::S(connection.user.to_string()))
            .set("email", Attr::S(connection.email.clone()))
            .set("email_verified", Attr::Bool(connection.email_verified))
            .set_opt("account_id", connection.account_id.clone().map(Attr::S))
            .set("scopes", Attr::L(connection.scopes.clone()))
            .set_opt("refresh_token", connection.refresh_token.as_ref().map(sealed_attr))
            .set("access_token", sealed_attr(&connection.access_token))
            .set("access_expires_at", Attr::N(connection.access_expires_at))
            .set("status", Attr::S(connection.status.as_str().into()))
            .set("connected_at", Attr::N(connection.connected_at))
            .set_opt("last_refreshed_at", connection.last_refreshed_at.map(Attr::N))
            .set("version", Attr::N(version))
            .remove(LEASE);
        let when = read_version.map(|v| Condition::Equals("version", Attr::N(v)));
        match self.0.update(&key(&connection.user, self.1), changes, when).await {
            Ok(item) => parse(&item, &connection.user, self.1).map(Some),
            Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the refresh lease of version `version` until `until`, if no live lease is held and the
    /// version has not moved. Returns whether this caller holds it now.
    pub async fn take_refresh_lease(
        &self,
        user: &UserId,
        version: i64,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let when = Condition::All(vec![
            Condition::Present,
            Condition::Equals("version", Attr::N(version)),
            Condition::MissingOrBelow(LEASE, now + 1),
        ]);
        match self.0.update(&key(user, self.1), Changes::default().set(LEASE, Attr::N(until)), Some(when)).await {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives a lease back without saving (the refresh failed; the stored tokens stay as they were).
    pub async fn release_refresh_lease(&self, user: &UserId, version: i64) -> Result<(), StoreError> {
        let when = Condition::All(vec![Condition::Present, Condition::Equals("version", Attr::N(version))]);
        match self.0.update(&key(user, self.1), Changes::default().remove(LEASE), Some(when)).await {
            Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the connection; returns whether there was one.
    pub async fn delete(&self, user: &UserId) -> Result<bool, StoreError> {
        Ok(self.0.delete(&key(user, self.1), None).await?.is_some())
    }
}

/// An item read as `user`'s connection at `provider` (what its key names); its `user_id` must agree.
fn parse(item: &Item, user: &UserId, provider: OAuthProvider) -> Result<OAuthConnection, StoreError> {
    bound_to_key(item, "user_id", user.as_str())?;
    let status = match item.s("status")? {
        "connected" => ConnectionStatus::Connected,
        "reconnect_required" => ConnectionStatus::ReconnectRequired,
        other => {
            return Err(StoreError::Corrupt(format!("unknown connection status `{other}`")));
        }
    };
    Ok(OAuthConnection {
        user: user.clone(),
        provider,
        email: item.s("email")?.to_owned(),
        email_verified: matches!(item.get("email_verified"), Some(Attr::Bool(true))),
        account_id: item.opt_s("account_id")?.map(str::to_owned),
        scopes: item.list("scopes")?.to_vec(),
        refresh_token: item.opt_b("refresh_token")?.map(sealed_from).transpose()?,
        access_token: sealed_from(item.b("access_token")?)?,
        access_expires_at: item.n("access_expires_at")?,
        status,
        connected_at: item.n("connected_at")?,
        last_refreshed_at: item.opt_n("last_refreshed_at")?,
        version: item.n("version")?,
        refresh_lease_until: item.opt_n(LEASE)?,
    })
}
