//! Per-client limits on the routes anyone may call: starting a device sign-in, starting a web
//! sign-in, refreshing a session. Each costs keyward an Auth0 call (or a KMS one), so a script
//! looping on one must be slowed down long before Auth0's own tenant-wide limit is. A client is its
//! source address as API Gateway saw it (an IPv6 client by its /64, the block one host gets). Each
//! admitted request costs one conditional DynamoDB `UpdateItem`.

use std::net::IpAddr;

use crate::model::Clock;
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

/// The client a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(String);

impl ClientAddress {
    /// From API Gateway's `sourceIp`: an IPv4 address as is, an IPv6 address cut to its /64. Only a
    /// request that did not come through API Gateway has none; all such share one allowance.
    pub fn from_source_ip(source: Option<&str>) -> Self {
        let name = match source.and_then(|ip| ip.parse::<IpAddr>().ok()) {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            None => "unknown".to_owned(),
        };
        Self(name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("Too many requests from this address; try again in {retry_after_secs} s.")]
    Limited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The limits anonymous callers get.
pub struct Throttle<'a> {
    pub store: &'a Store,
    pub limits: &'a AnonymousLimits,
    pub clock: &'a dyn Clock,
}

impl Throttle<'_> {
    /// Takes one `action` from `client`'s allowance for this minute, or refuses.
    pub async fn admit(&self, client: &ClientAddress, action: AnonymousAction) -> Result<(), ThrottleError> {
        let bucket = format!("{}:{}", action.bucket(), client.0);
        match self.store.limits().take_anonymous(&bucket, self.limits.of(action), WINDOW_SECS, self.clock.now()).await?
        {
            Allowance::Granted => Ok(()),
            Allowance::Refused { retry_after_secs } => {
                tracing::info!(action = action.bucket(), "anonymous request limited");
                Err(ThrottleError::Limited { retry_after_secs })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ManualClock;
    use crate::use_cases::testing::embedded_store;

    #[test]
    fn clients_are_addresses_and_ipv6_hosts_their_64() {
        let name = |ip| ClientAddress::from_source_ip(Some(ip)).0;
        assert_eq!(name("203.0.113.7"), "203.0.113.7");
        assert_eq!(name("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(name("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
        assert_eq!(name("::ffff:198.51.100.1"), "198.51.100.1");
        assert_eq!(name("not an address"), "unknown");
        assert_eq!(ClientAddress::from_source_ip(None).0, "unknown");
    }

    #[tokio::test]
    async fn each_client_gets_its_own_allowance_and_it_renews_with_the_minute() {
        let (_dir, store) = embedded_store();
        let clock = ManualClock::at(1_800_000_000);
        let limits = AnonymousLimits { device_starts: 2, logins: 1, refreshes: 1 };
        let throttle = Throttle { store: &store, limits: &limits, clock: &clock };
        let (one, other) =
            (ClientAddress::from_source_ip(Some("203.0.113.7")), ClientAddress::from_source_ip(Some("203.0.113.8")));
        for _ in 0..2 {
            throttle.admit(&one, AnonymousAction::DeviceStart).await.unwrap();
        }
        let refused = throttle.admit(&one, AnonymousAction::DeviceStart).await.unwrap_err();
        assert!(matches!(refused, ThrottleError::Limited { retry_after_secs } if (1..=60).contains(&retry_after_secs)));
        throttle.admit(&other, AnonymousAction::DeviceStart).await.expect("another address has its own");
        throttle.admit(&one, AnonymousAction::Login).await.expect("another action has its own");
        clock.advance(60);
        throttle.admit(&one, AnonymousAction::DeviceStart).await.expect("a new minute");
    }
}
