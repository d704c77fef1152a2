//! `stripe-webhook`: Stripe webhooks turned into credits and plan tiers, exactly once; a user's
//! credits; and credit consumption by internal services.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::auth::{Grant, ServiceCaller};
use keyward::billing::{self, BillingError, events, signature};
use keyward::http::{ApiError, json_body, json_response, path_user, query_param, raw_body, route_key, route_not_found};
use keyward::model::{Tier, UserId, rfc3339};
use keyward::store::{Applied, CreditChange, LedgerEntry, LedgerKind, OnceKey, now_epoch};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "stripe-webhook";

/// Stripe's events are larger than keyward's own requests (an invoice carries its lines).
const MAX_EVENT_BYTES: usize = 512 * 1024;
/// The largest single consumption, a guard against unit mistakes (cents for credits, say).
const MAX_CONSUME: i64 = 1_000_000;

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/stripe-webhook" => Ok(health(state, FUNCTION)),
        "POST /webhooks/stripe" => webhook(state, req).await,
        "GET /me/credits" => my_credits(state, req).await,
        "GET /internal/users/{uid}/credits" => internal_credits(state, req).await,
        "POST /internal/users/{uid}/credits/consume" => consume(state, req).await,
        _ => Err(route_not_found()),
    }
}

fn not_configured() -> ApiError {
    ApiError::Unavailable {
        code: "stripe_not_configured",
        detail: "Stripe is not configured on this keyward deployment.".into(),
        retry_after_secs: 3600,
    }
}

#[derive(Serialize)]
struct Received {
    received: bool,
    outcome: &'static str,
}

/// `POST /webhooks/stripe`: verified on the raw bytes, then applied exactly once. Any answer but
/// 2xx makes Stripe deliver again (for three days), so only a delivery that is wrong is refused with
/// 400, and one keyward cannot place yet with 409.
async fn webhook(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let (Some(settings), Some(secrets)) = (state.config.stripe.as_ref(), state.stripe_secrets.as_ref()) else {
        return Err(not_configured());
    };
    let body = raw_body(req, MAX_EVENT_BYTES)?;
    let header = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    let secrets = signature::secrets_of(secrets.get().await?.expose());
    signature::verify(header, body, &secrets, now_epoch())
        .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    let event = events::parse(body).map_err(|e| ApiError::bad_request("invalid_event", e.to_string()))?;
    let outcome = billing::apply(&state.store, settings, &event).await.map_err(|e| match e {
        BillingError::UnknownUser => ApiError::Conflict {
            code: "customer_not_linked",
            detail: "No keyward user is linked to this event's customer yet; Stripe's retry will apply it.".into(),
        },
        BillingError::PaymentNotRecorded => ApiError::Conflict {
            code: "payment_not_recorded",
            detail: "keyward has not recorded the payment this event is about yet; Stripe's retry will apply it."
                .into(),
        },
        BillingError::WrongMode { .. } => ApiError::bad_request("livemode_mismatch", e.to_string()),
        BillingError::CreditsOutOfRange { .. } => ApiError::bad_request("invalid_credits", e.to_string()),
        BillingError::Overflow => {
            tracing::warn!(event = %event.id, "a Stripe event would overflow keyward's credit arithmetic; refused");
            ApiError::bad_request("credit_overflow", e.to_string())
        }
        BillingError::Store(e) => e.into(),
    })?;
    tracing::info!(event = %event.id, kind = %event.kind, outcome = outcome.as_str(), "stripe event");
    Ok(json_response(StatusCode::OK, &Received { received: true, outcome: outcome.as_str() }))
}

fn tier_and_allowance(state: &AppState, tier: Tier) -> (Tier, i64) {
    let allowance =
        state.config.stripe.as_ref().and_then(|s| s.monthly_allowances.get(&tier).copied()).unwrap_or_default();
    (tier, allowance)
}

/// The user's tier: the one their newest subscription event set, or free.
async fn tier_of(state: &AppState, user: &UserId) -> Result<Tier, ApiError> {
    let plan = state.store.credits().subscription(user).await?;
    Ok(plan.and_then(|p| Tier::parse(&p.tier)).unwrap_or(Tier::Free))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    id: String,
    kind: &'static str,
    amount: i64,
    balance_after: i64,
    source: String,
    at: String,
}

impl From<LedgerEntry> for EntryView {
    fn from(entry: LedgerEntry) -> Self {
        Self {
            id: entry.id,
            kind: entry.kind.as_str(),
            amount: entry.amount,
            balance_after: entry.balance_after,
            source: entry.source,
            at: rfc3339(entry.at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MyCredits {
    balance: i64,
    tier: &'static str,
    monthly_allowance: i64,
    recent: Vec<EntryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// `GET /me/credits?limit&cursor` → balance, tier, allowance and the ledger, newest first.
async fn my_credits(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let limit =
        match query_param(req, "limit") {
            None => 20,
            Some(raw) => raw.parse::<u32>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                ApiError::bad_request("invalid_limit", "`limit` must be a whole number from 1 to 100.")
            })?,
        };
    let account = state.store.credits().account(&claims.user).await?;
    let (tier, monthly_allowance) = tier_and_allowance(state, tier_of(state, &claims.user).await?);
    let page = state.store.credits().ledger(&claims.user, limit, query_param(req, "cursor")).await?;
    Ok(json_response(
        StatusCode::OK,
        &MyCredits {
            balance: account.balance,
            tier: tier.as_str(),
            monthly_allowance,
            recent: page.items.into_iter().map(EntryView::from).collect(),
            next_cursor: page.next,
        },
    ))
}

/// The user of an internal credits route, for a caller with the `credits` grant.
fn internal_user(state: &AppState, req: &Request) -> Result<(UserId, ServiceCaller), ApiError> {
    let caller = state.config.internal_principals.caller(req)?;
    caller.require(Grant::Credits)?;
    let user = path_user(req)?;
    Ok((user, caller))
}

#[derive(Serialize)]
struct Balance {
    balance: i64,
    tier: &'static str,
}

/// `GET /internal/users/{uid}/credits` → balance and tier.
async fn internal_credits(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let (user, _) = internal_user(state, req)?;
    let account = state.store.credits().account(&user).await?;
    let tier = tier_of(state, &user).await?;
    Ok(json_response(StatusCode::OK, &Balance { balance: account.balance, tier: tier.as_str() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConsumeRequest {
    amount: i64,
    idempotency_key: String,
    reason: String,
}

#[derive(Serialize)]
struct Consumed {
    balance: i64,
}

/// `POST /internal/users/{uid}/credits/consume` → one atomic, conditional debit per idempotency
/// key: 200 `{balance}`, the same answer for a repeated key, or 402 with nothing changed.
async fn consume(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let (user, caller) = internal_user(state, req)?;
    let request: ConsumeRequest = json_body(req)?;
    if !(1..=MAX_CONSUME).contains(&request.amount) {
        return Err(ApiError::bad_request("invalid_amount", format!("`amount` must be from 1 to {MAX_CONSUME}.")));
    }
    let key_ok = (1..=128).contains(&request.idempotency_key.len())
        && request.idempotency_key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !key_ok {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "`idempotencyKey` must be 1 to 128 characters of letters, digits, `-`, `_`, `.` or `:`.",
        ));
    }
    if request.reason.trim().is_empty() || request.reason.chars().count() > 200 {
        return Err(ApiError::bad_request("invalid_reason", "`reason` must be 1 to 200 characters."));
    }
    // A repeated key is a retry only with the same request: the amount and reason.
    let once = [OnceKey::idempotency(
        caller.principal(),
        &user,
        &request.idempotency_key,
        &format!("{}\n{}", request.amount, request.reason),
    )];
    let change =
        CreditChange { kind: LedgerKind::Consume, amount: -request.amount, source: request.reason, at: now_epoch() };
    let balance = match state.store.credits().apply(&user, &change, &once, &[]).await? {
        Applied::Applied(entry) => entry.balance_after,
        Applied::Duplicate { balance_after: Some(balance) } => balance,
        Applied::Duplicate { balance_after: None } => state.store.credits().account(&user).await?.balance,
        Applied::Mismatch => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_mismatch",
                detail: "This idempotencyKey was first used with another amount or reason; nothing was debited.".into(),
            });
        }
        Applied::Insufficient { balance } => {
            return Err(ApiError::PaymentRequired {
                code: "insufficient_credits",
                detail: format!(
                    "The user has {balance} credits, fewer than the {} asked; nothing changed.",
                    request.amount
                ),
            });
        }
        Applied::Overflow => {
            return Err(ApiError::bad_request("credit_overflow", "The balance cannot take this debit."));
        }
    };
    tracing::info!(user = %user, caller = %caller.arn, amount = request.amount, "credits consumed");
    Ok(json_response(StatusCode::OK, &Consumed { balance }))
}
