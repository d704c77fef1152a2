//! What API Gateway's IAM authorization does for `/internal/*` routes: verify the SigV4 signature
//! (service `execute-api`) of the request as received, against a local credentials file that maps
//! access keys to principal ARNs. The canonical request is built by the `aws-sigv4` crate — the
//! same code the AWS SDK signs with — over exactly the headers the caller says it signed.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as SigningCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use http::HeaderMap;
use keyward::auth::service::account_of;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::PrimitiveDateTime;
use time::macros::format_description;
use zeroize::Zeroizing;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "execute-api";
/// How far a signature's time may be from the gateway's clock, as in AWS.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why API Gateway refuses a request before the function runs. The messages and error types are
/// the ones API Gateway answers with, so clients see the same failures locally as in AWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Forbidden")]
    Unsigned,
    #[error("{0}")]
    Incomplete(&'static str),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("Credential should be scoped to {0}.")]
    WrongScope(&'static str),
    #[error("Signature expired or not yet current: {0} is more than 5 minutes from the gateway's clock.")]
    Skewed(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

impl Rejection {
    /// API Gateway's `x-amzn-ErrorType` for the rejection.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Unsigned => "ForbiddenException",
            Self::Incomplete(_) | Self::WrongScope(_) => "IncompleteSignatureException",
            Self::UnknownKey => "UnrecognizedClientException",
            Self::Skewed(_) | Self::Mismatch => "InvalidSignatureException",
        }
    }
}

/// The caller API Gateway reports in `requestContext.authorizer.iam`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key: String,
    pub principal_arn: String,
    pub account_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CredentialEntry {
    access_key_id: String,
    #[serde(serialize_with = "expose")]
    secret_access_key: SecretString,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "expose_opt")]
    session_token: Option<SecretString>,
    principal_arn: String,
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

fn expose_opt<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => expose(secret, s),
        None => s.serialize_none(),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    credentials: Vec<CredentialEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// The access keys the gateway accepts, each mapped to the principal it stands for.
pub struct Credentials {
    by_access_key: HashMap<String, CredentialEntry>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_keys", &self.by_access_key.keys()).finish()
    }
}

/// The principal of the credentials the gateway creates for a fresh local data folder.
pub const LOCAL_PRINCIPAL: &str = "arn:aws:iam::000000000000:role/keyward-local-caller";

impl Credentials {
    /// Reads a credentials file: `{"credentials": [{"accessKeyId", "secretAccessKey",
    /// "sessionToken"?, "principalArn"}]}`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let raw =
            std::fs::read_to_string(path).map_err(|source| CredentialsError::Io { path: shown.clone(), source })?;
        let file: CredentialsFile = serde_json::from_str(&raw)
            .map_err(|e| CredentialsError::Invalid { path: shown.clone(), problem: e.to_string() })?;
        let mut by_access_key = HashMap::new();
        for entry in file.credentials {
            account_of(&entry.principal_arn).ok_or_else(|| CredentialsError::Invalid {
                path: shown.clone(),
                problem: format!("{} is not an IAM role, user or assumed-role ARN", entry.principal_arn),
            })?;
            if let Some(previous) = by_access_key.insert(entry.access_key_id.clone(), entry) {
                return Err(CredentialsError::Invalid {
                    path: shown,
                    problem: format!("access key {} appears twice", previous.access_key_id),
                });
            }
        }
        Ok(Self { by_access_key })
    }

    /// Reads `path`, first writing it (mode 0600) with one random key pair for [`LOCAL_PRINCIPAL`]
    /// when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, CredentialsError> {
        if !path.exists() {
            let io = |source| CredentialsError::Io { path: path.display().to_string(), source };
            let secret = Zeroizing::new(rand::random::<[u8; 30]>());
            let id = rand::random::<[u8; 8]>();
            let file = CredentialsFile {
                credentials: vec![CredentialEntry {
                    access_key_id: format!("AKIALOCAL{}", hex::encode_upper(id)),
                    secret_access_key: SecretString::from(hex::encode(*secret)),
                    session_token: None,
                    principal_arn: LOCAL_PRINCIPAL.to_owned(),
                }],
            };
            let json = serde_json::to_string_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
            keyward::files::create_private(path, json.as_bytes()).map_err(io)?;
        }
        keyward::files::ensure_own(path)
            .and_then(|()| keyward::files::ensure_private(path))
            .map_err(|problem| CredentialsError::Invalid { path: path.display().to_string(), problem })?;
        Self::load(path)
    }

    /// The SigV4 headers (service `execute-api`) an AWS SDK would add to a request, signed with the
    /// local caller's key pair (or the file's only one): how `keyward-local call` signs.
    pub fn sign(
        &self,
        region: &str,
        method: &str,
        url: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        let entry = match self.by_access_key.values().find(|e| e.principal_arn == LOCAL_PRINCIPAL) {
            Some(entry) => entry,
            None if self.by_access_key.len() == 1 => self.by_access_key.values().next().ok_or("no credentials")?,
            None => return Err(format!("the credentials file has no key pair for {LOCAL_PRINCIPAL}")),
        };
        let identity = SigningCredentials::new(
            &entry.access_key_id,
            entry.secret_access_key.expose_secret(),
            entry.session_token.as_ref().map(|t| t.expose_secret().to_owned()),
            None,
            "keyward-local",
        )
        .into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body))
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
    }

    /// Verifies the SigV4 `Authorization` header of a request as received.
    pub fn verify(
        &self,
        region: &str,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Caller, Rejection> {
        let authorization = headers.get(http::header::AUTHORIZATION).ok_or(Rejection::Unsigned)?;
        let auth = AuthorizationHeader::parse(authorization.to_str().map_err(|_| Rejection::Unsigned)?)?;
        let scope: Vec<&str> = auth.credential.split('/').collect();
        let [access_key, date, scope_region, service, "aws4_request"] = scope[..] else {
            return Err(Rejection::Incomplete(
                "Credential must have the form ACCESS_KEY/DATE/REGION/SERVICE/aws4_request.",
            ));
        };
        let entry = self.by_access_key.get(access_key).ok_or(Rejection::UnknownKey)?;
        if scope_region != region {
            return Err(Rejection::WrongScope("a valid region"));
        }
        if service != SERVICE {
            return Err(Rejection::WrongScope("correct service: 'execute-api'"));
        }

        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or(Rejection::Incomplete("Authorization header requires existence of a 'X-Amz-Date' header."))?;
        let signed_at =
            parse_amz_date(amz_date).ok_or(Rejection::Incomplete("X-Amz-Date must be YYYYMMDD'T'HHMMSS'Z'."))?;
        if !amz_date.starts_with(date) || date.len() != 8 {
            return Err(Rejection::Incomplete("The credential date must match the date of X-Amz-Date."));
        }
        let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
        if skew > MAX_SKEW {
            return Err(Rejection::Skewed(amz_date.to_owned()));
        }

        // API Gateway requires the host and the date to be signed.
        if !auth.signed_headers.contains(&"host") || !auth.signed_headers.contains(&"x-amz-date") {
            return Err(Rejection::Incomplete("SignedHeaders must include host and x-amz-date."));
        }
        let token = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
        match (&entry.session_token, token) {
            (None, None) => {}
            (Some(expected), Some(given))
                if bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes())) => {}
            _ => return Err(Rejection::UnknownKey),
        }

        let mut signed = Vec::new();
        for name in &auth.signed_headers {
            let values = headers.get_all(*name);
            if values.iter().next().is_none() {
                return Err(Rejection::Mismatch);
            }
            for value in values {
                signed.push((*name, value.to_str().map_err(|_| Rejection::Mismatch)?));
            }
        }
        let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).ok_or(Rejection::Mismatch)?;
        let uri = format!("http://{host}{path_and_query}");
        let request = SignableRequest::new(method, uri, signed.into_iter(), SignableBody::Bytes(body))
            .map_err(|_| Rejection::Mismatch)?;

        let identity = SigningCredentials::new(
            access_key,
            entry.secret_access_key.expose_secret(),
            token.map(str::to_owned),
            None,
            "keyward-local",
        )
        .into();
        let mut settings = SigningSettings::default();
        // Exactly the headers the caller signed are passed in; none may be dropped.
        settings.excluded_headers = None;
        let params = SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(signed_at)
            .settings(settings)
            .build()
            .map_err(|_| Rejection::Mismatch)?
            .into();
        let expected = sign(request, &params).map_err(|_| Rejection::Mismatch)?;
        if !bool::from(expected.signature().as_bytes().ct_eq(auth.signature.as_bytes())) {
            return Err(Rejection::Mismatch);
        }
        let account_id = account_of(&entry.principal_arn).unwrap_or_default();
        Ok(Caller { access_key: access_key.to_owned(), principal_arn: entry.principal_arn.clone(), account_id })
    }
}

struct AuthorizationHeader<'a> {
    credential: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl<'a> AuthorizationHeader<'a> {
    fn parse(value: &'a str) -> Result<Self, Rejection> {
        let Some(rest) = value.strip_prefix(ALGORITHM).and_then(|r| r.strip_prefix(' ')) else {
            return Err(Rejection::Incomplete("Only AWS4-HMAC-SHA256 signatures are accepted."));
        };
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim) {
            match part.split_once('=') {
                Some(("Credential", v)) => credential = Some(v),
                Some(("SignedHeaders", v)) => signed_headers = Some(v.split(';').collect()),
                Some(("Signature", v)) => signature = Some(v),
                _ => return Err(Rejection::Incomplete("Authorization header has an unknown part.")),
            }
        }
        match (credential, signed_headers, signature) {
            (Some(credential), Some(signed_headers), Some(signature)) => {
                Ok(Self { credential, signed_headers, signature })
            }
            _ => Err(Rejection::Incomplete(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
            )),
        }
    }
}

fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(value, &format).ok().map(|t| t.assume_utc().into())
}
