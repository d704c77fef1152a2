//! `stripe-webhook`: Stripe's events turned into credits and plan tiers exactly once, a user's
//! credits, and credit consumption by internal services — adapted from HTTP to the billing and
//! credits use cases.

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::auth::{Need, ServiceCaller, UserCaller};
use keyward::http::ApiError;
use keyward::http::request::{json_body, path_user, query_param, raw_body};
use keyward::http::response::json_response;
use keyward::model::{Scope, rfc3339};
use keyward::store::LedgerEntry;
use keyward::use_cases::credits::Consumption;
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "stripe-webhook";

/// Stripe's events are larger than keyward's own requests (an invoice carries its lines).
const MAX_EVENT_BYTES: usize = 512 * 1024;

pub fn routes() -> Routes {
    Routes::new(FUNCTION)
        .public("POST /webhooks/stripe", |state, req| Box::pin(webhook(state, req)))
        .user("GET /me/credits", Scope::CreditsRead, |state, req, caller| Box::pin(my_credits(state, req, caller)))
        .service("GET /internal/users/{uid}/credits", Need::Credits, |state, req, _| {
            Box::pin(internal_credits(state, req))
        })
        .service("POST /internal/users/{uid}/credits/consume", Need::Credits, |state, req, caller| {
            Box::pin(consume(state, req, caller))
        })
}

#[derive(Serialize)]
struct Received {
    received: bool,
    outcome: &'static str,
}

/// `POST /webhooks/stripe`: verified on the raw bytes, then applied exactly once.
async fn webhook(state: &AppState, req: &Request) -> Answer {
    let billing = state.billing()?;
    let body = raw_body(req, MAX_EVENT_BYTES)?;
    let signature = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    let (_, outcome) = billing.receive(body, signature).await?;
    Ok(json_response(StatusCode::OK, &Received { received: true, outcome: outcome.as_str() }))
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
async fn my_credits(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let limit = match query_param(req, "limit") {
        None => 20,
        // Out of range or not a number alike: the use case refuses what is not 1 to 100.
        Some(raw) => raw.parse::<u32>().unwrap_or(0),
    };
    let statement = state.credits().statement(&caller.user, limit, query_param(req, "cursor")).await?;
    Ok(json_response(
        StatusCode::OK,
        &MyCredits {
            balance: statement.balance,
            tier: statement.tier.as_str(),
            monthly_allowance: statement.monthly_allowance,
            recent: statement.recent.items.into_iter().map(EntryView::from).collect(),
            next_cursor: statement.recent.next,
        },
    ))
}

#[derive(Serialize)]
struct Balance {
    balance: i64,
    tier: &'static str,
}

/// `GET /internal/users/{uid}/credits` → balance and tier.
async fn internal_credits(state: &AppState, req: &Request) -> Answer {
    let (balance, tier) = state.credits().balance(&path_user(req)?).await?;
    Ok(json_response(StatusCode::OK, &Balance { balance, tier: tier.as_str() }))
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

/// `POST /internal/users/{uid}/credits/consume` → 200 `{balance}`, the same answer for a repeated
/// key, or 402 with nothing changed.
async fn consume(state: &AppState, req: &Request, caller: &ServiceCaller) -> Answer {
    let user = path_user(req)?;
    let request: ConsumeRequest = json_body(req)?;
    let consumption =
        Consumption { amount: request.amount, idempotency_key: request.idempotency_key, reason: request.reason };
    let balance = state.credits().consume(caller, &user, consumption).await.map_err(ApiError::from)?;
    Ok(json_response(StatusCode::OK, &Consumed { balance }))
}
