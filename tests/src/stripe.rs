//! Stripe as the tests play it: the endpoint's secrets, signed deliveries, and events built from
//! the real-shaped samples in `events/stripe/`.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use keyward::model::UserId;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::api::LocalApi;

/// The endpoint's secrets while one is rolled: the current one first, the previous still active.
pub const ENDPOINT_SECRETS: [&str; 2] = ["whsec_test_current_7f3a9c2e5b1d4f60", "whsec_test_previous_2b8e4d6a0c9f1e37"];
/// The sandbox's subscription prices (local mode's default mapping), for aws mode.
pub const PRICE_TIERS: &str = r#"{"price_sandbox_pro":"pro","price_sandbox_enterprise":"enterprise"}"#;

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// `v1` for `body` at `t` under `secret`, as Stripe computes it.
pub fn v1(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A header as Stripe sends it now, with a fake `v0` as test-mode events carry.
pub fn header(body: &[u8]) -> String {
    let t = now();
    format!("t={t},v1={},v0={}", v1(ENDPOINT_SECRETS[0], t, body), "0".repeat(64))
}

/// `POST /webhooks/stripe` with `header` (none when `None`).
pub async fn deliver_with(api: &LocalApi, body: &[u8], header: Option<&str>) -> reqwest::Response {
    let mut request = api.client.post(api.url("/webhooks/stripe")).header("content-type", "application/json");
    if let Some(header) = header {
        request = request.header("stripe-signature", header);
    }
    request.body(body.to_vec()).send().await.expect("deliver")
}

/// A correctly signed delivery of `event`; returns the status and keyward's `outcome`.
pub async fn deliver(api: &LocalApi, event: &Value) -> (u16, String) {
    let body = serde_json::to_vec(event).expect("event JSON");
    let response = deliver_with(api, &body, Some(&header(&body))).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let outcome = answer["outcome"].as_str().or(answer["code"].as_str()).unwrap_or_default().to_owned();
    (status, outcome)
}

/// Delivers `event` as Stripe does: an answer of 5xx (keyward refusing for now) is retried after a
/// pause, as Stripe retries it; returns the first answer that is not.
pub async fn deliver_until_answered(api: &LocalApi, event: &Value) -> (u16, String) {
    for attempt in 1..=5 {
        let answer = deliver(api, event).await;
        if answer.0 < 500 {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
    }
    deliver(api, event).await
}

/// A sample event from `events/stripe/`.
pub fn sample(name: &str) -> Value {
    let path = format!("{}/../events/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample event")).expect("sample JSON")
}

/// A paid checkout by `user` granting `credits` for `amount_total` cents.
pub fn checkout(event_id: &str, session_id: &str, user: &UserId, credits: i64, amount_total: i64) -> Value {
    let mut event = sample("checkout.session.completed");
    event["id"] = json!(event_id);
    let session = &mut event["data"]["object"];
    session["id"] = json!(session_id);
    session["client_reference_id"] = json!(user.as_str());
    session["metadata"] = json!({ "credits": credits.to_string(), "user_id": user.as_str() });
    session["amount_total"] = json!(amount_total);
    session["payment_intent"] = json!(format!("pi_{}", &session_id[3..]));
    session["customer"] = json!(format!("cus_{}", user_suffix(user)));
    event
}

/// A subscription event (`created`, `updated` or `deleted`) of `user`'s subscription at `created`.
pub fn subscription(event_id: &str, kind: &str, created: i64, user: &UserId, price: &str, status: &str) -> Value {
    let mut event = sample(&format!("customer.subscription.{kind}"));
    event["id"] = json!(event_id);
    event["created"] = json!(created);
    let object = &mut event["data"]["object"];
    object["status"] = json!(status);
    object["metadata"] = json!({ "user_id": user.as_str() });
    object["customer"] = json!(format!("cus_{}", user_suffix(user)));
    object["items"]["data"][0]["price"]["id"] = json!(price);
    event
}

/// A paid invoice (basil shape) of `user`'s subscription on `price` for the period starting at
/// `period_start`: a new period's (`subscription_cycle`), for the sample's $19.00.
pub fn invoice(event_id: &str, invoice_id: &str, user: &UserId, price: &str, period_start: i64) -> Value {
    let mut event = sample("invoice.paid");
    event["id"] = json!(event_id);
    let object = &mut event["data"]["object"];
    object["id"] = json!(invoice_id);
    object["billing_reason"] = json!("subscription_cycle");
    object["customer"] = json!(format!("cus_{}", user_suffix(user)));
    object["parent"]["subscription_details"]["metadata"] = json!({ "user_id": user.as_str() });
    object["parent"]["subscription_details"]["subscription"] = json!(format!("sub_{}", user_suffix(user)));
    object["period_end"] = json!(period_start);
    let line = &mut object["lines"]["data"][0];
    line["pricing"]["price_details"]["price"] = json!(price);
    line["parent"]["subscription_item_details"]["subscription"] = json!(format!("sub_{}", user_suffix(user)));
    line["period"] = json!({ "start": period_start, "end": period_start + 30 * 86_400 });
    event
}

/// `invoice_payment.paid`: `invoice_id` was paid with the payment intent `payment_intent`.
pub fn invoice_payment(event_id: &str, invoice_id: &str, payment_intent: &str) -> Value {
    let mut event = sample("invoice_payment.paid");
    event["id"] = json!(event_id);
    event["data"]["object"]["invoice"] = json!(invoice_id);
    event["data"]["object"]["payment"] = json!({ "type": "payment_intent", "payment_intent": payment_intent });
    event
}

/// The payment intent of the checkout `session_id` ([`checkout`] names it so).
pub fn payment_of(session_id: &str) -> String {
    format!("pi_{}", &session_id[3..])
}

/// `charge.refunded` at `created` for `payment_intent`'s charge, with its cumulative
/// `amount_refunded` and, as API versions before 2022-11-15 do, its refunds `(id, cents, status)`.
pub fn charge_refunded(
    event_id: &str,
    created: i64,
    payment_intent: &str,
    amount_refunded: i64,
    listed: &[(&str, i64, &str)],
) -> Value {
    let mut event = sample("charge.refunded");
    event["id"] = json!(event_id);
    event["created"] = json!(created);
    let object = &mut event["data"]["object"];
    object["payment_intent"] = json!(payment_intent);
    object["amount_refunded"] = json!(amount_refunded);
    object["refunds"]["data"] = listed
        .iter()
        .map(|(id, amount, status)| {
            json!({ "id": id, "object": "refund", "amount": amount, "status": status, "created": created - 1 })
        })
        .collect();
    event
}

/// A `refund.*` event (`created`, `updated`, `failed`) at `created` about the refund `refund_id`
/// of `payment_intent`, made at `made_at`.
pub fn refund(
    event_id: &str,
    (kind, created): (&str, i64),
    refund_id: &str,
    payment_intent: &str,
    (amount, status, made_at): (i64, &str, i64),
) -> Value {
    let mut event = sample("refund.created");
    event["id"] = json!(event_id);
    event["type"] = json!(format!("refund.{kind}"));
    event["created"] = json!(created);
    let object = &mut event["data"]["object"];
    object["id"] = json!(refund_id);
    object["payment_intent"] = json!(payment_intent);
    object["amount"] = json!(amount);
    object["status"] = json!(status);
    object["created"] = json!(made_at);
    event
}

/// A `charge.dispute.*` event (`created`, `updated`, `closed`) at `created` about `payment_intent`.
pub fn dispute(
    event_id: &str,
    (kind, created): (&str, i64),
    dispute_id: &str,
    payment_intent: &str,
    (amount, status): (i64, &str),
) -> Value {
    let mut event = sample("charge.dispute.created");
    event["id"] = json!(event_id);
    event["type"] = json!(format!("charge.dispute.{kind}"));
    event["created"] = json!(created);
    let object = &mut event["data"]["object"];
    object["id"] = json!(dispute_id);
    object["payment_intent"] = json!(payment_intent);
    object["amount"] = json!(amount);
    object["status"] = json!(status);
    event
}

/// A customer id per user, so events of one user share one customer.
pub fn customer_of(user: &UserId) -> String {
    format!("cus_{}", user_suffix(user))
}

fn user_suffix(user: &UserId) -> String {
    user.as_str().chars().filter(char::is_ascii_alphanumeric).collect()
}
