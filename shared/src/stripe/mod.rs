//! Stripe as keyward reads it: a webhook delivery's signature ([`signature`]), its event
//! ([`events`]), and the endpoint's settings. What an event does to credits is the billing use case.

pub mod events;
pub mod signature;

use std::collections::HashMap;

use crate::model::Tier;
use crate::secret_store::SecretSetting;

/// How keyward reads Stripe: the webhook endpoint's secrets and what each price stands for.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// One `whsec_…`, or several (comma-separated) while one is rolled.
    pub webhook_secret: SecretSetting,
    /// Which of Stripe's modes the endpoint takes events of; the other mode's are refused.
    pub mode: StripeMode,
    /// Subscription price id → tier (`pro`, `enterprise`).
    pub price_tiers: HashMap<String, Tier>,
    /// Credits each paid invoice of a tier grants.
    pub monthly_allowances: HashMap<Tier, i64>,
    /// Whether a `$0` payment grants credits: a subscription invoice's (a trial) its period's
    /// allowance, a checkout's (a 100% promotion code) its `metadata.credits`.
    pub grant_free_payments: bool,
    /// The most credits one checkout's `metadata.credits` may grant.
    pub max_purchase_credits: i64,
}

/// Stripe's live mode (real money) or test mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeMode {
    Live,
    Test,
}

impl std::fmt::Display for StripeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Live => "live-mode",
            Self::Test => "test-mode",
        })
    }
}
