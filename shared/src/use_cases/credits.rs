//! A user's credits: the balance and plan tier Stripe's events made, the ledger, and consumption by
//! internal services — one atomic, conditional debit per idempotency key, bound to the caller, the
//! user and the request.

use crate::auth::ServiceCaller;
use crate::model::{Clock, Tier, UserId};
use crate::store::{Applied, CreditChange, LedgerEntry, LedgerKind, Listing, OnceKey, Store, StoreError};
use crate::stripe::StripeSettings;

/// The largest single consumption, a guard against unit mistakes (cents for credits, say).
pub const MAX_CONSUME: i64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("`limit` must be a whole number from 1 to 100.")]
    InvalidLimit,
    #[error("`amount` must be from 1 to {MAX_CONSUME}.")]
    InvalidAmount,
    #[error("`idempotencyKey` must be 1 to 128 characters of letters, digits, `-`, `_`, `.` or `:`.")]
    InvalidIdempotencyKey,
    #[error("`reason` must be 1 to 200 characters.")]
    InvalidReason,
    #[error("This idempotencyKey was first used with another amount or reason; nothing was debited.")]
    IdempotencyMismatch,
    #[error("The user has {balance} credits, fewer than the {asked} asked; nothing changed.")]
    Insufficient { balance: i64, asked: i64 },
    #[error("The balance cannot take this debit.")]
    Overflow,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A user's credits as they see them.
pub struct Statement {
    pub balance: i64,
    pub tier: Tier,
    pub monthly_allowance: i64,
    pub recent: Listing<LedgerEntry>,
}

/// What an internal service asks to debit.
pub struct Consumption {
    pub amount: i64,
    pub idempotency_key: String,
    pub reason: String,
}

pub struct Credits<'a> {
    pub store: &'a Store,
    /// What each tier's allowance is; `None` when Stripe is not configured (everyone is free).
    pub stripe: Option<&'a StripeSettings>,
    pub clock: &'a dyn Clock,
}

impl Credits<'_> {
    /// Balance, tier, allowance and one page of the ledger, newest first (`limit` 1 to 100).
    pub async fn statement(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<Statement, CreditError> {
        if !(1..=100).contains(&limit) {
            return Err(CreditError::InvalidLimit);
        }
        let account = self.store.credits().account(user).await?;
        let tier = self.tier(user).await?;
        let monthly_allowance = self.stripe.and_then(|s| s.monthly_allowances.get(&tier).copied()).unwrap_or_default();
        let recent = self.store.credits().ledger(user, limit, cursor).await?;
        Ok(Statement { balance: account.balance, tier, monthly_allowance, recent })
    }

    /// The balance and tier, for an internal service.
    pub async fn balance(&self, user: &UserId) -> Result<(i64, Tier), CreditError> {
        let account = self.store.credits().account(user).await?;
        Ok((account.balance, self.tier(user).await?))
    }

    /// The user's tier: the one their newest subscription event set, or free.
    async fn tier(&self, user: &UserId) -> Result<Tier, CreditError> {
        Ok(self.store.credits().subscription(user).await?.map_or(Tier::Free, |plan| plan.tier))
    }

    /// Debits `consumption` once per idempotency key of the calling principal and user; the same key
    /// again answers the first result, the same key with another amount or reason debits nothing.
    /// Returns the balance after.
    pub async fn consume(
        &self,
        caller: &ServiceCaller,
        user: &UserId,
        consumption: Consumption,
    ) -> Result<i64, CreditError> {
        let Consumption { amount, idempotency_key, reason } = consumption;
        if !(1..=MAX_CONSUME).contains(&amount) {
            return Err(CreditError::InvalidAmount);
        }
        let key_ok = (1..=128).contains(&idempotency_key.len())
            && idempotency_key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !key_ok {
            return Err(CreditError::InvalidIdempotencyKey);
        }
        if reason.trim().is_empty() || reason.chars().count() > 200 {
            return Err(CreditError::InvalidReason);
        }
        // A repeated key is a retry only with the same request: the amount and reason.
        let once = [OnceKey::idempotency(caller.principal(), user, &idempotency_key, &format!("{amount}\n{reason}"))];
        let change = CreditChange { kind: LedgerKind::Consume, amount: -amount, source: reason, at: self.clock.now() };
        let balance = match self.store.credits().apply(user, &change, &once, &[]).await? {
            Applied::Applied(entry) => entry.balance_after,
            Applied::Duplicate { balance_after: Some(balance) } => balance,
            Applied::Duplicate { balance_after: None } => self.store.credits().account(user).await?.balance,
            Applied::Mismatch => return Err(CreditError::IdempotencyMismatch),
            Applied::Insufficient { balance } => return Err(CreditError::Insufficient { balance, asked: amount }),
            Applied::Overflow => return Err(CreditError::Overflow),
        };
        tracing::info!(user = %user, caller = %caller.arn, amount, "credits consumed");
        Ok(balance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::use_cases::testing::{Fixture, service_caller};

    fn consumption(amount: i64, key: &str) -> Consumption {
        Consumption { amount, idempotency_key: key.into(), reason: "summary".into() }
    }

    #[tokio::test]
    async fn a_debit_happens_once_per_key_caller_and_user_and_never_overdraws() {
        let fixture = Fixture::new().await;
        let credits = fixture.credits();
        let ada = UserId::parse("auth0|ada").unwrap();
        fixture.grant(&ada, 10).await;
        let notes = service_caller("notes", &["credits"]);
        assert_eq!(credits.consume(&notes, &ada, consumption(4, "job-1")).await.unwrap(), 6);
        assert_eq!(credits.consume(&notes, &ada, consumption(4, "job-1")).await.unwrap(), 6, "a retry");
        let changed = credits.consume(&notes, &ada, consumption(5, "job-1")).await;
        assert!(matches!(changed, Err(CreditError::IdempotencyMismatch)));
        let other_service = service_caller("search", &["credits"]);
        assert_eq!(credits.consume(&other_service, &ada, consumption(4, "job-1")).await.unwrap(), 2, "its own key");
        let short = credits.consume(&notes, &ada, consumption(3, "job-2")).await;
        assert!(matches!(short, Err(CreditError::Insufficient { balance: 2, asked: 3 })));
        assert_eq!(credits.balance(&ada).await.unwrap(), (2, Tier::Free));
        for bad in [consumption(0, "k"), consumption(MAX_CONSUME + 1, "k"), consumption(1, ""), consumption(1, "a b")] {
            assert!(credits.consume(&notes, &ada, bad).await.is_err());
        }
        let statement = credits.statement(&ada, 10, None).await.unwrap();
        assert_eq!(statement.recent.items.len(), 3, "the grant and two debits");
        assert!(matches!(credits.statement(&ada, 0, None).await, Err(CreditError::InvalidLimit)));
    }
}
