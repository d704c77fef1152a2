//! Google accounts (`protocols-security.md` §4): OAuth for web-server apps with offline access and
//! forced consent (so a refresh token comes with every connect), the account's address from
//! OpenID Connect's userinfo, refresh tokens that do not rotate, and RFC 7009 revocation.

use super::connection::{AccountSource, ConnectionSpec, EndpointSettings, ProblemCodes, Revocation, SettingVars};
use crate::endpoints::EndpointSetting;
use crate::model::{OAuthProvider, ProblemCode};

pub struct Google;

impl ConnectionSpec for Google {
    fn provider(&self) -> OAuthProvider {
        OAuthProvider::Google
    }

    fn display_name(&self) -> &'static str {
        "Google"
    }

    fn vars(&self) -> SettingVars {
        SettingVars {
            client_id: "KEYWARD_GOOGLE_CLIENT_ID",
            client_secret_arn: "KEYWARD_GOOGLE_CLIENT_SECRET_ARN",
            client_secret: "KEYWARD_GOOGLE_CLIENT_SECRET",
            redirect_url: "KEYWARD_GOOGLE_REDIRECT_URL",
            scopes: "KEYWARD_GOOGLE_SCOPES",
            refresh_margin_secs: "KEYWARD_GOOGLE_REFRESH_MARGIN_SECS",
        }
    }

    fn problem_codes(&self) -> ProblemCodes {
        ProblemCodes {
            not_configured: ProblemCode::GoogleNotConfigured,
            not_connected: ProblemCode::GoogleNotConnected,
            reconnect_required: ProblemCode::GoogleReconnectRequired,
            unavailable: ProblemCode::GoogleUnavailable,
            refused: ProblemCode::GoogleRefused,
        }
    }

    fn endpoints(&self) -> EndpointSettings {
        let setting =
            |var, official, sandbox_path| EndpointSetting { name: "google-oauth", var, official, sandbox_path };
        EndpointSettings {
            authorize: setting(
                "KEYWARD_GOOGLE_AUTHORIZE_URL",
                "https://accounts.google.com/o/oauth2/v2/auth",
                "/google/o/oauth2/v2/auth",
            ),
            token: setting("KEYWARD_GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token", "/google/token"),
            revoke: Some(setting(
                "KEYWARD_GOOGLE_REVOKE_URL",
                "https://oauth2.googleapis.com/revoke",
                "/google/revoke",
            )),
            userinfo: Some(setting(
                "KEYWARD_GOOGLE_USERINFO_URL",
                "https://openidconnect.googleapis.com/v1/userinfo",
                "/google/v1/userinfo",
            )),
        }
    }

    /// Who the account is, and its calendar.
    fn default_scopes(&self) -> &'static str {
        "openid email https://www.googleapis.com/auth/calendar"
    }

    fn sandbox_client(&self) -> (&'static str, &'static str) {
        ("keyward-sandbox.apps.googleusercontent.com", "sandbox-google-client-secret")
    }

    fn authorize_params(&self) -> &'static [(&'static str, &'static str)] {
        &[("access_type", "offline"), ("prompt", "consent"), ("include_granted_scopes", "true")]
    }

    fn account_source(&self) -> AccountSource {
        AccountSource::Userinfo
    }

    fn revocation(&self) -> Revocation {
        Revocation::Endpoint
    }

    fn consent_page(&self) -> &'static str {
        "https://myaccount.google.com/permissions"
    }
}
