//! The device flow (RFC 8628) for CLIs and phones, through Auth0's native client. keyward enforces
//! the polling interval itself (a poll that comes too soon is answered `slow_down` without asking
//! Auth0, and the interval grows for good), reads Auth0's answers by their `error`, never their
//! status, and hands out tokens exactly once per device code.

use super::sessions::{SessionError, Sessions};
use super::throttle::{AnonymousAction, ClientAddress, Throttle, ThrottleError};
use crate::auth::auth0::{Auth0Error, TokenSet};
use crate::model::ClientKind;
use crate::secret::{DeviceCode, SessionHandle, digest};
use crate::store::StoreError;

/// The codes to show the person, and how often the device may poll.
pub struct DeviceStart {
    pub device_code: DeviceCode,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: i64,
}

/// RFC 8628's answers to a poll.
pub enum Poll {
    AuthorizationPending {
        interval: i64,
    },
    SlowDown {
        interval: i64,
    },
    ExpiredToken,
    AccessDenied,
    /// A code keyward never issued.
    InvalidGrant,
    /// The person approved: Auth0's tokens, and the first handle of a keyward session.
    SignedIn {
        tokens: TokenSet,
        handle: SessionHandle,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Limited(#[from] ThrottleError),
    #[error(transparent)]
    Auth0(#[from] Auth0Error),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Devices<'a> {
    pub sessions: Sessions<'a>,
}

impl Devices<'_> {
    /// Starts a device sign-in for `client`.
    pub async fn start(&self, client: &ClientAddress) -> Result<DeviceStart, DeviceError> {
        let sessions = &self.sessions;
        let throttle = Throttle { store: sessions.store, limits: sessions.limits, clock: sessions.clock };
        throttle.admit(client, AnonymousAction::DeviceStart).await?;
        let device = sessions.auth0.device_code().await?;
        let interval = i64::try_from(device.interval).unwrap_or(5).max(1);
        let expires_in = i64::try_from(device.expires_in).unwrap_or(900);
        let valid_until = sessions.clock.now() + expires_in;
        sessions.store.devices().create(&digest(device.device_code.expose()), interval, valid_until).await?;
        Ok(DeviceStart {
            device_code: device.device_code,
            user_code: device.user_code,
            verification_uri: device.verification_uri,
            verification_uri_complete: device.verification_uri_complete,
            expires_in: device.expires_in,
            interval,
        })
    }

    /// One poll of a device code.
    pub async fn poll(&self, code: &DeviceCode) -> Result<Poll, DeviceError> {
        let sessions = &self.sessions;
        let hash = digest(code.expose());
        let devices = sessions.store.devices();
        let Some(grant) = devices.get(&hash).await? else { return Ok(Poll::InvalidGrant) };
        let now_ms = sessions.clock.now_millis();
        if grant.spent {
            return Ok(Poll::ExpiredToken);
        }
        if now_ms / 1_000 >= grant.valid_until {
            devices.spend(&hash).await?;
            return Ok(Poll::ExpiredToken);
        }
        if !devices.take_poll(&hash, now_ms, grant.interval).await? {
            return Ok(Poll::SlowDown { interval: devices.slow_down(&hash, now_ms).await? });
        }
        let tokens = match sessions.auth0.poll_device(code).await {
            Ok(tokens) => tokens,
            Err(Auth0Error::Refused { error }) => {
                return Ok(match error.as_str() {
                    "authorization_pending" => Poll::AuthorizationPending { interval: grant.interval },
                    "slow_down" => Poll::SlowDown { interval: devices.slow_down(&hash, now_ms).await? },
                    "expired_token" | "invalid_grant" => {
                        devices.spend(&hash).await?;
                        Poll::ExpiredToken
                    }
                    other => {
                        // RFC 8628: any other error ends polling.
                        devices.spend(&hash).await?;
                        if other != "access_denied" {
                            tracing::warn!(error = %other, "Auth0 ended the device flow");
                        }
                        Poll::AccessDenied
                    }
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !devices.spend(&hash).await? {
            return Ok(Poll::ExpiredToken);
        }
        let (_, handle) = sessions.complete(&tokens, ClientKind::Device).await?;
        Ok(Poll::SignedIn { tokens, handle })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::use_cases::testing::Fixture;

    fn client() -> ClientAddress {
        ClientAddress::from_source_ip(Some("203.0.113.9"))
    }

    #[tokio::test]
    async fn polls_follow_rfc_8628_and_tokens_come_once() {
        let fixture = Fixture::with_sandbox().await;
        let devices = fixture.devices();
        let start = devices.start(&client()).await.unwrap();
        assert!(start.interval >= 1);
        let pending = devices.poll(&start.device_code).await.unwrap();
        assert!(matches!(pending, Poll::AuthorizationPending { interval } if interval == start.interval));
        let too_soon = devices.poll(&start.device_code).await.unwrap();
        let Poll::SlowDown { interval } = too_soon else { panic!("a poll within the interval is slowed down") };
        assert_eq!(interval, start.interval + 5, "and the interval grows for good");

        fixture.approve_device(&start.user_code, "ada@example.com").await;
        fixture.clock.advance(interval);
        assert!(matches!(devices.poll(&start.device_code).await.unwrap(), Poll::SignedIn { .. }));
        fixture.clock.advance(interval);
        assert!(matches!(devices.poll(&start.device_code).await.unwrap(), Poll::ExpiredToken), "once");
        let unknown = devices.poll(&DeviceCode::new("never-issued")).await.unwrap();
        assert!(matches!(unknown, Poll::InvalidGrant));
    }

    #[tokio::test]
    async fn a_code_past_its_lifetime_is_expired_without_asking_auth0() {
        let fixture = Fixture::with_sandbox().await;
        let devices = fixture.devices();
        let start = devices.start(&client()).await.unwrap();
        fixture.clock.advance(i64::try_from(start.expires_in).unwrap());
        assert!(matches!(devices.poll(&start.device_code).await.unwrap(), Poll::ExpiredToken));
        assert!(matches!(devices.poll(&start.device_code).await.unwrap(), Poll::ExpiredToken));
    }
}
