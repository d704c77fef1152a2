//! Microsoft accounts, work and personal (`platform-notes.md` §3): the identity platform v2.0's
//! authorization code flow with PKCE and offline access (`Calendars.Read` by default), the account's
//! address from the ID token (`email`, else `preferred_username`), and refresh tokens that replace
//! themselves on every use. The v2.0 endpoint has no revocation of one grant: disconnecting forgets
//! the tokens, and the user withdraws the consent at their account's apps page.
//!
//! The tenant is part of the endpoints' path (`common` takes work and personal accounts); a
//! single-tenant app sets `KEYWARD_MICROSOFT_AUTHORIZE_URL` and `…_TOKEN_URL` to its tenant's.

use super::connection::{AccountSource, ConnectionSpec, EndpointSettings, ProblemCodes, Revocation, SettingVars};
use crate::endpoints::EndpointSetting;
use crate::model::{OAuthProvider, ProblemCode};

pub struct Microsoft;

impl ConnectionSpec for Microsoft {
    fn provider(&self) -> OAuthProvider {
        OAuthProvider::Microsoft
    }

    fn display_name(&self) -> &'static str {
        "Microsoft"
    }

    fn vars(&self) -> SettingVars {
        SettingVars {
            client_id: "KEYWARD_MICROSOFT_CLIENT_ID",
            client_secret_arn: "KEYWARD_MICROSOFT_CLIENT_SECRET_ARN",
            client_secret: "KEYWARD_MICROSOFT_CLIENT_SECRET",
            redirect_url: "KEYWARD_MICROSOFT_REDIRECT_URL",
            scopes: "KEYWARD_MICROSOFT_SCOPES",
            refresh_margin_secs: "KEYWARD_MICROSOFT_REFRESH_MARGIN_SECS",
        }
    }

    fn problem_codes(&self) -> ProblemCodes {
        ProblemCodes {
            not_configured: ProblemCode::MicrosoftNotConfigured,
            not_connected: ProblemCode::MicrosoftNotConnected,
            reconnect_required: ProblemCode::MicrosoftReconnectRequired,
            unavailable: ProblemCode::MicrosoftUnavailable,
            refused: ProblemCode::MicrosoftRefused,
        }
    }

    fn endpoints(&self) -> EndpointSettings {
        let setting =
            |var, official, sandbox_path| EndpointSetting { name: "microsoft-oauth", var, official, sandbox_path };
        EndpointSettings {
            authorize: setting(
                "KEYWARD_MICROSOFT_AUTHORIZE_URL",
                "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                "/microsoft/common/oauth2/v2.0/authorize",
            ),
            token: setting(
                "KEYWARD_MICROSOFT_TOKEN_URL",
                "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                "/microsoft/common/oauth2/v2.0/token",
            ),
            revoke: None,
            userinfo: None,
        }
    }

    /// Who the account is (ID token with its address), a refresh token, and the calendar.
    fn default_scopes(&self) -> &'static str {
        "openid email profile offline_access https://graph.microsoft.com/Calendars.Read"
    }

    fn sandbox_client(&self) -> (&'static str, &'static str) {
        ("00000000-0000-4000-8000-00000000beef", "sandbox-microsoft-client-secret")
    }

    fn authorize_params(&self) -> &'static [(&'static str, &'static str)] {
        &[("response_mode", "query")]
    }

    fn account_source(&self) -> AccountSource {
        AccountSource::IdToken
    }

    fn revocation(&self) -> Revocation {
        Revocation::ForgetOnly
    }

    /// Personal accounts; a work or school account's are at https://myapps.microsoft.com.
    fn consent_page(&self) -> &'static str {
        "https://account.live.com/consent/Manage"
    }

    /// `invalid_grant` (expired, revoked, password changed), and the grant needing the user again.
    fn reconnect_errors(&self) -> &'static [&'static str] {
        &["invalid_grant", "interaction_required", "consent_required"]
    }
}
