//! Per-client limits on the routes anyone may call: starting a device sign-in, starting a web
//! sign-in, refreshing a session. Each costs keyward an Auth0 call (or a KMS one), so a script
//! looping on one must be slowed down long before Auth0's own tenant-wide limit is. A client is its
//! source address as API Gateway saw it (an IPv6 client by its /64, the block one host gets). Each
//! admitted request costs one conditional DynamoDB `UpdateItem`.

use std::net::IpAddr;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::store::{Allowance, Store, StoreError};

/// The anonymous actions that are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousAction {
    DeviceStart,
    Login,
    Refresh,
}

impl AnonymousAction {
    fn bucket(self) -> &'static str {
        match self {
            Self::DeviceStart => "device-start",
            Self::Login => "login",
            Self::Refresh => "refresh",
        }
    }
}

/// How many of each a client may do per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousLimits {
    pub device_starts: u32,
    pub logins: u32,
    pub refreshes: u32,
}

impl AnonymousLimits {
    /// Ten device sign-ins, thirty web sign-ins and sixty refreshes a minute: more than a person
    /// (or an office behind one address) does, fewer than a script does.
    pub const DEFAULT: Self = Self { device_starts: 10, logins: 30, refreshes: 60 };

    fn of(&self, action: AnonymousAction) -> u32 {
        match action {
            AnonymousAction::DeviceStart => self.device_starts,
            AnonymousAction::Login => self.logins,
            AnonymousAction::Refresh => self.refreshes,
        }
    }
}

const WINDOW_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("Too many requests from this address; try again in {retry_after_secs} s.")]
    Limited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Takes one `action` from the calling client's allowance for this minute, or refuses.
pub async fn admit(
    store: &Store,
    limits: &AnonymousLimits,
    req: &Request,
    action: AnonymousAction,
    now: i64,
) -> Result<(), ThrottleError> {
    let client = client_of(req);
    let bucket = format!("{}:{client}", action.bucket());
    match store.limits().take_anonymous(&bucket, limits.of(action), WINDOW_SECS, now).await? {
        Allowance::Granted => Ok(()),
        Allowance::Refused { retry_after_secs } => {
            tracing::info!(action = action.bucket(), "anonymous request limited");
            Err(ThrottleError::Limited { retry_after_secs })
        }
    }
}

/// The client a request came from: API Gateway's `sourceIp`, an IPv6 address cut to its /64.
fn client_of(req: &Request) -> String {
    let source = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
        _ => None,
    };
    match source {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        // Only a request that did not come through API Gateway has none; they share one allowance.
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> Request {
        let json = serde_json::json!({
            "version": "2.0", "routeKey": "POST /auth/device/start", "rawPath": "/auth/device/start",
            "rawQueryString": "", "headers": {},
            "requestContext": {"accountId": "000000000000", "apiId": "local", "domainName": "x", "domainPrefix": "x",
                "http": {"method": "POST", "path": "/auth/device/start", "protocol": "HTTP/1.1", "sourceIp": ip, "userAgent": "t"},
                "requestId": "r", "routeKey": "POST /auth/device/start", "stage": "$default",
                "time": "12/Mar/2026:19:03:58 +0000", "timeEpoch": 1},
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&json.to_string()).unwrap()
    }

    #[test]
    fn clients_are_addresses_and_ipv6_hosts_their_64() {
        assert_eq!(client_of(&from("203.0.113.7")), "203.0.113.7");
        assert_eq!(client_of(&from("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(client_of(&from("2001:db8:1:2:bbbb::9")), "2001:db8:1:2::/64");
        assert_eq!(client_of(&from("::ffff:198.51.100.1")), "198.51.100.1");
        assert_eq!(client_of(&from("not an address")), "unknown");
    }
}
