//! Personal access tokens: scoped, expiring user credentials for scripts and CI, created and revoked
//! only by a real sign-in. Only a token's SHA-256 is stored; its record (user, id, scopes, expiry)
//! is bound by a MAC under the keyring's `access-token` branch key, so someone who can write the
//! table but not use KMS can neither mint a token nor widen one. Verification is one `GetItem` and
//! a MAC check under the cached branch key; nothing caches a positive answer, so a revoked or
//! expired token is refused on its very next request.

use std::collections::BTreeSet;

use crate::auth::UserCaller;
use crate::auth::personal_token::TokenFormat;
use crate::crypto::{BranchVersion, CryptoError, EncryptionContext, Envelope, Purpose, Tag, framed};
use crate::github::Alert;
use crate::model::{Clock, Scope, UserId, random_id};
use crate::secret::{PersonalToken, digest};
use crate::store::{Actor, AuditAction, AuditEntry, ListedToken, Store, StoreError, TokenGrant};

/// GitHub's feedback on one reported token (its partner program's format).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeakFeedback {
    /// SHA-256 of the token, hex: the feedback never carries a token's value.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: &'static str,
}

/// Where a leak was found, as far as the audit trail keeps it.
const MAX_URL_CHARS: usize = 512;
/// `lastUsedAt` moves at most this often.
pub const LAST_USED_INTERVAL_SECS: i64 = 60;
const DAY_SECS: i64 = 86_400;
const MAX_NAME_CHARS: usize = 100;

/// How this deployment's tokens look and how many a user may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalTokenSettings {
    pub format: TokenFormat,
    /// The longest lifetime a token may be given (`KEYWARD_TOKEN_MAX_DAYS`).
    pub max_days: u32,
    /// Live tokens per user (`KEYWARD_TOKENS_PER_USER`).
    pub per_user: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("A token needs a name of 1 to {MAX_NAME_CHARS} characters, without control characters.")]
    InvalidName,
    #[error("Unknown scopes: {}. Scopes are {}.", .0.join(", "), Scope::ALL.map(Scope::as_str).join(", "))]
    UnknownScopes(Vec<String>),
    #[error("A token needs at least one scope.")]
    NoScopes,
    #[error("`expiresInDays` is required: a whole number from 1 to {max}.")]
    InvalidExpiry { max: u32 },
    #[error("You have {limit} live tokens, the most allowed; revoke one first.")]
    TooMany { limit: u32 },
    #[error("You have no token with that id.")]
    NotFound,
    /// Malformed, unknown, revoked, expired or tampered with: one answer for all.
    #[error("The token is malformed, unknown, revoked or expired.")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// What `POST /me/tokens` asks for, as the client sent it.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_in_days: Option<i64>,
}

/// A token just made: the only time its value is ever shown.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: PersonalToken,
    pub listed: ListedToken,
}

pub struct PersonalTokens<'a> {
    pub store: &'a Store,
    pub envelope: &'a Envelope,
    pub clock: &'a dyn Clock,
    pub settings: &'a PersonalTokenSettings,
}

impl PersonalTokens<'_> {
    /// Makes a token for the signed-in `caller` (the route admits no token to make tokens).
    pub async fn create(&self, caller: &UserCaller, asked: NewToken) -> Result<CreatedToken, TokenError> {
        let name = asked.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(TokenError::InvalidName);
        }
        let scopes = parse_scopes(&asked.scopes)?;
        let max = self.settings.max_days;
        let days = asked.expires_in_days.filter(|d| (1..=i64::from(max)).contains(d));
        let days = days.ok_or(TokenError::InvalidExpiry { max })?;
        let scopes: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
        let user = &caller.user;
        // Each round counts the list and writes only if no other create moved it on meanwhile; a
        // round lost to a concurrent create means that one was stored, so the limit ends the loop.
        for _ in 0..=self.settings.per_user {
            let now = self.clock.now();
            let counted = self.store.access_tokens().count_live(user, now).await?;
            if counted.live >= self.settings.per_user as usize {
                return Err(TokenError::TooMany { limit: self.settings.per_user });
            }
            let token = self.settings.format.generate();
            let hash = digest(token.expose());
            let id = format!("tok_{}", random_id());
            let expires_at = now + days * DAY_SECS;
            let tag = self.envelope.tag(&bound(&hash, user, &id, &scopes, expires_at), &context(user, &id)).await?;
            let grant = TokenGrant {
                id: id.clone(),
                user: user.clone(),
                scopes: scopes.clone(),
                expires_at,
                mac_version: tag.version.to_string(),
                mac: tag.mac.to_vec(),
                last_used_at: None,
            };
            let listed = ListedToken {
                id,
                name: name.to_owned(),
                preview: self.settings.format.preview(token.expose()),
                scopes: scopes.clone(),
                created_at: now,
                expires_at,
                last_used_at: None,
            };
            let entry = self.entry(caller, AuditAction::PersonalTokenCreate, &listed.id);
            if self.store.access_tokens().create(&hash, &grant, &listed, &entry, counted.version).await? {
                tracing::info!(user = %user, token_id = %listed.id, "personal access token created");
                return Ok(CreatedToken { token, listed });
            }
        }
        Err(StoreError::Throttled.into())
    }

    /// The user's live tokens, oldest first, each with when it was last used.
    pub async fn list(&self, user: &UserId) -> Result<Vec<ListedToken>, TokenError> {
        let now = self.clock.now();
        let mut listed = self.store.access_tokens().list(user).await?;
        listed.retain(|t| t.expires_at > now);
        Ok(listed)
    }

    /// Revokes one of the caller's tokens; another user's, an unknown or a revoked one is
    /// [`TokenError::NotFound`] alike.
    pub async fn revoke(&self, caller: &UserCaller, id: &str) -> Result<(), TokenError> {
        let entry = self.entry(caller, AuditAction::PersonalTokenRevoke, id);
        if self.store.access_tokens().revoke(&caller.user, id, &entry).await? {
            Ok(())
        } else {
            Err(TokenError::NotFound)
        }
    }

    /// The user a bearer token acts for, with its scopes. A token that is not well formed is
    /// refused before any store read.
    pub async fn verify(&self, raw: &str) -> Result<UserCaller, TokenError> {
        let (hash, grant) = self.verify_record(raw).await?;
        let now = self.clock.now();
        if grant.last_used_at.is_none_or(|at| now - at >= LAST_USED_INTERVAL_SECS) {
            // Bookkeeping: a store that cannot take the mark now must not refuse the request.
            let marked = self.store.access_tokens().touch_last_used(&hash, now, LAST_USED_INTERVAL_SECS).await;
            if let Err(e) = marked {
                tracing::warn!(token_id = %grant.id, error = %e, "could not mark a personal token used");
            }
        }
        let scopes: BTreeSet<Scope> = grant.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        Ok(UserCaller::by_token(grant.user, grant.id, scopes))
    }

    /// The live, untampered record of a well-formed token, and the token's hash: one `GetItem` and
    /// a MAC check.
    async fn verify_record(&self, raw: &str) -> Result<(String, TokenGrant), TokenError> {
        if !self.settings.format.is_well_formed(raw) {
            return Err(TokenError::Invalid);
        }
        let now = self.clock.now();
        let hash = digest(raw);
        let grant = self.store.access_tokens().find(&hash).await?.ok_or(TokenError::Invalid)?;
        if grant.expires_at <= now {
            return Err(TokenError::Invalid);
        }
        let version = BranchVersion::parse(&grant.mac_version);
        let mac: Option<[u8; 32]> = grant.mac.as_slice().try_into().ok();
        let (Some(version), Some(mac)) = (version, mac) else { return Err(self.tampered(&grant)) };
        let message = bound(&hash, &grant.user, &grant.id, &grant.scopes, grant.expires_at);
        match self.envelope.check_tag(&message, &context(&grant.user, &grant.id), &Tag { version, mac }).await {
            Ok(()) => {}
            Err(CryptoError::Refused | CryptoError::UnknownBranchKey { .. }) => return Err(self.tampered(&grant)),
            Err(e) => return Err(e.into()),
        }
        Ok((hash, grant))
    }

    /// Revokes at once every reported token that is a live keyward token, whatever type GitHub
    /// gave it, auditing it as leaked with where it was found; labels each report for GitHub's
    /// feedback (a true positive is a token that was live), by the token's hash, never its value.
    pub async fn revoke_leaked(&self, alerts: &[Alert]) -> Result<Vec<LeakFeedback>, TokenError> {
        let mut feedback = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let raw = alert.token.expose();
            let live = match self.verify_record(raw).await {
                Ok((_, grant)) => {
                    let url: String = alert.url.chars().take(MAX_URL_CHARS).collect();
                    let entry = AuditEntry {
                        at: self.clock.now(),
                        actor: Actor::System,
                        action: AuditAction::PersonalTokenLeaked,
                        target: Some(grant.id.clone()),
                        outcome: format!("leaked:{url}"),
                    };
                    let revoked = self.store.access_tokens().revoke(&grant.user, &grant.id, &entry).await?;
                    if revoked {
                        tracing::warn!(user = %grant.user, token_id = %grant.id, url = %url, "revoked a leaked personal token");
                    }
                    revoked
                }
                Err(TokenError::Invalid) => false,
                Err(e) => return Err(e),
            };
            let label = if live { "true_positive" } else { "false_positive" };
            feedback.push(LeakFeedback { token_hash: digest(raw), token_type: alert.token_type.clone(), label });
        }
        Ok(feedback)
    }

    /// A record whose MAC fails was written without KMS: logged (by id and user, never the hash)
    /// and refused like any other bad token.
    fn tampered(&self, grant: &TokenGrant) -> TokenError {
        tracing::warn!(user = %grant.user, token_id = %grant.id, "refused a personal token record whose MAC fails");
        TokenError::Invalid
    }

    fn entry(&self, caller: &UserCaller, action: AuditAction, id: &str) -> AuditEntry {
        AuditEntry {
            at: self.clock.now(),
            actor: caller.actor(),
            action,
            target: Some(id.to_owned()),
            outcome: "ok".into(),
        }
    }
}

/// Known, deduplicated scopes; unknown names all named at once.
fn parse_scopes(raw: &[String]) -> Result<BTreeSet<Scope>, TokenError> {
    let unknown: Vec<String> = raw.iter().filter(|s| s.parse::<Scope>().is_err()).cloned().collect();
    if !unknown.is_empty() {
        return Err(TokenError::UnknownScopes(unknown));
    }
    let scopes: BTreeSet<Scope> = raw.iter().filter_map(|s| s.parse().ok()).collect();
    if scopes.is_empty() { Err(TokenError::NoScopes) } else { Ok(scopes) }
}

fn context(user: &UserId, id: &str) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::AccessToken, id)
}

/// What a token record's MAC covers, each field length-prefixed: the token's hash (so a record
/// copied under another token's hash fails), the user, the token's id, its scopes and its expiry.
fn bound(hash: &str, user: &UserId, id: &str, scopes: &[String], expires_at: i64) -> Vec<u8> {
    framed("keyward/personal-token/v1", &[hash, user.as_str(), id, &scopes.join(" "), &expires_at.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;
    use crate::auth::personal_token::DEFAULT_PREFIX;
    use crate::model::Credential;
    use crate::store::table::{Attr, Item, Key};
    use crate::use_cases::testing::Fixture;

    fn settings() -> PersonalTokenSettings {
        PersonalTokenSettings { format: TokenFormat::new(DEFAULT_PREFIX).unwrap(), max_days: 365, per_user: 3 }
    }

    fn tokens<'a>(fixture: &'a Fixture, settings: &'a PersonalTokenSettings) -> PersonalTokens<'a> {
        PersonalTokens { store: &fixture.store, envelope: &fixture.envelope, clock: fixture.clock.as_ref(), settings }
    }

    fn ada() -> UserCaller {
        UserCaller::signed_in(UserId::parse("auth0|ada").unwrap(), None, Some(true))
    }

    fn asked(scopes: &[&str], days: Option<i64>) -> NewToken {
        NewToken { name: "ci".into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect(), expires_in_days: days }
    }

    #[tokio::test]
    async fn a_token_acts_with_exactly_its_scopes_until_revoked() {
        let fixture = Fixture::new().await;
        let settings = settings();
        let tokens = tokens(&fixture, &settings);
        let created =
            tokens.create(&ada(), asked(&["keys:read", "profile:read", "keys:read"], Some(30))).await.unwrap();
        let raw = created.token.expose().to_owned();
        assert!(settings.format.is_well_formed(&raw));
        assert_eq!(created.listed.scopes, ["profile:read", "keys:read"], "known order, no duplicates");
        assert_eq!(created.listed.expires_at - created.listed.created_at, 30 * DAY_SECS);

        let caller = tokens.verify(&raw).await.unwrap();
        assert_eq!(caller.user, ada().user);
        assert_eq!(caller.credential, Credential::PersonalToken(created.listed.id.clone()));
        assert_eq!(caller.scopes, Scopes::Only([Scope::KeysRead, Scope::ProfileRead].into()));

        let listed = tokens.list(&ada().user).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].preview, format!("kw_pat_…{}", &raw[raw.len() - 4..]));
        assert_eq!(listed[0].last_used_at, Some(fixture.clock.now()));
        let first_use = fixture.clock.now();
        fixture.clock.advance(30);
        tokens.verify(&raw).await.unwrap();
        assert_eq!(tokens.list(&ada().user).await.unwrap()[0].last_used_at, Some(first_use), "at most once a minute");
        fixture.clock.advance(31);
        tokens.verify(&raw).await.unwrap();
        assert_eq!(tokens.list(&ada().user).await.unwrap()[0].last_used_at, Some(fixture.clock.now()));

        let mallory = UserCaller::signed_in(UserId::parse("auth0|mallory").unwrap(), None, Some(true));
        assert!(matches!(tokens.revoke(&mallory, &created.listed.id).await, Err(TokenError::NotFound)));
        assert!(tokens.verify(&raw).await.is_ok(), "another user's revoke changes nothing");
        tokens.revoke(&ada(), &created.listed.id).await.unwrap();
        assert!(matches!(tokens.verify(&raw).await, Err(TokenError::Invalid)), "refused on the very next use");
        assert!(matches!(tokens.revoke(&ada(), &created.listed.id).await, Err(TokenError::NotFound)));
        assert!(tokens.list(&ada().user).await.unwrap().is_empty());

        let trail = fixture.store.audit().list(&ada().user, 10, None).await.unwrap().items;
        let actions: Vec<AuditAction> = trail.iter().map(|e| e.action).collect();
        assert_eq!(actions, [AuditAction::PersonalTokenRevoke, AuditAction::PersonalTokenCreate]);
        assert!(trail.iter().all(|e| e.target.as_deref() == Some(created.listed.id.as_str())));
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_and_leaves_the_list() {
        let fixture = Fixture::new().await;
        let settings = settings();
        let tokens = tokens(&fixture, &settings);
        let created = tokens.create(&ada(), asked(&["credits:read"], Some(1))).await.unwrap();
        fixture.clock.advance(DAY_SECS - 1);
        assert!(tokens.verify(created.token.expose()).await.is_ok());
        fixture.clock.advance(1);
        assert!(matches!(tokens.verify(created.token.expose()).await, Err(TokenError::Invalid)));
        assert!(tokens.list(&ada().user).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_requests_are_named_and_store_nothing() {
        let fixture = Fixture::new().await;
        let settings = settings();
        let tokens = tokens(&fixture, &settings);
        let unknown = tokens.create(&ada(), asked(&["keys:read", "keys:admin", "root"], Some(1))).await;
        assert!(matches!(&unknown, Err(TokenError::UnknownScopes(names)) if names == &["keys:admin", "root"]));
        assert!(unknown.unwrap_err().to_string().contains("keys:admin, root"));
        assert!(matches!(tokens.create(&ada(), asked(&[], Some(1))).await, Err(TokenError::NoScopes)));
        for days in [None, Some(0), Some(-1), Some(366)] {
            let refused = tokens.create(&ada(), asked(&["keys:read"], days)).await;
            assert!(matches!(refused, Err(TokenError::InvalidExpiry { max: 365 })), "{days:?}");
        }
        for name in ["", "   ", "a\u{7}b", &"n".repeat(101)] {
            let refused = tokens.create(&ada(), NewToken { name: name.into(), ..asked(&["keys:read"], Some(1)) }).await;
            assert!(matches!(refused, Err(TokenError::InvalidName)), "{name:?}");
        }
        assert!(tokens.list(&ada().user).await.unwrap().is_empty());
        for _ in 0..3 {
            tokens.create(&ada(), asked(&["keys:read"], Some(1))).await.unwrap();
        }
        assert!(matches!(
            tokens.create(&ada(), asked(&["keys:read"], Some(1))).await,
            Err(TokenError::TooMany { limit: 3 })
        ));
        fixture.clock.advance(DAY_SECS);
        assert!(tokens.create(&ada(), asked(&["keys:read"], Some(1))).await.is_ok(), "expired tokens do not count");
    }

    /// SECURITY.md's attacker writes the table but cannot use KMS: every record they write or edit
    /// fails its MAC, and a malformed bearer is refused before any read.
    #[tokio::test]
    async fn a_table_writer_can_neither_mint_nor_widen_nor_move_a_token() {
        let fixture = Fixture::new().await;
        let settings = settings();
        let tokens = tokens(&fixture, &settings);
        let created = tokens.create(&ada(), asked(&["keys:read"], Some(30))).await.unwrap();
        let raw = created.token.expose().to_owned();
        let table = fixture.store.table();
        let bearer = Key::new(format!("PAT#{}", digest(&raw)), "PAT");
        let original = table.get(&bearer).await.unwrap().unwrap();
        let edited = |name: &str, value: Attr| original.clone().with(name, value);

        let widened = edited("scopes", Attr::L(Scope::ALL.map(|s| s.as_str().to_owned()).into()));
        let moved = edited("user_id", Attr::S("auth0|mallory".into()));
        let longer = edited("expires_at", Attr::N(created.listed.expires_at + 3650 * DAY_SECS));
        for forged in [widened, moved, longer] {
            table.put(forged, None).await.unwrap();
            assert!(matches!(tokens.verify(&raw).await, Err(TokenError::Invalid)));
        }
        table.put(original.clone(), None).await.unwrap();
        assert!(tokens.verify(&raw).await.is_ok(), "the record as keyward wrote it");

        // A token of the attacker's own making, its record copied from a real one or made up.
        let minted = settings.format.generate();
        let copied = Item(original.0.clone()).with("pk", Attr::S(format!("PAT#{}", digest(minted.expose()))));
        table.put(copied, None).await.unwrap();
        assert!(
            matches!(tokens.verify(minted.expose()).await, Err(TokenError::Invalid)),
            "a record moved to another hash"
        );
        let made_up = Item(original.0.clone())
            .with("pk", Attr::S(format!("PAT#{}", digest(minted.expose()))))
            .with("mac", Attr::B(vec![7; 32]));
        table.put(made_up, None).await.unwrap();
        assert!(matches!(tokens.verify(minted.expose()).await, Err(TokenError::Invalid)), "a made-up MAC");
    }
}
