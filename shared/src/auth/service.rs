//! Internal services: callers that API Gateway authenticated with IAM (SigV4). Their principal ARN
//! arrives in `requestContext.authorizer.iam`; an allow-list from config says what each may fetch.

use std::collections::{BTreeSet, HashMap};

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use super::AuthError;
use crate::model::{OAuthProvider, Provider};

/// Something an internal service may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// Fetch users' keys for one LLM provider.
    LlmKey(Provider),
    /// Fetch users' access tokens of their connected accounts at one OAuth provider.
    Connection(OAuthProvider),
    /// Read and consume users' credits.
    Credits,
}

impl Grant {
    /// `openai` (one provider), `llm-keys:*` (every provider), `google-oauth` (one OAuth
    /// provider's tokens), `credits`.
    fn parse_all(raw: &str) -> Result<Vec<Grant>, String> {
        if raw == "llm-keys:*" {
            return Ok(Provider::ALL.iter().copied().map(Grant::LlmKey).collect());
        }
        if raw == "credits" {
            return Ok(vec![Grant::Credits]);
        }
        if let Some(provider) = raw.strip_suffix("-oauth").and_then(|slug| slug.parse::<OAuthProvider>().ok()) {
            return Ok(vec![Grant::Connection(provider)]);
        }
        raw.parse::<Provider>()
            .map(|p| vec![Grant::LlmKey(p)])
            .map_err(|_| format!("unknown grant `{raw}` (a provider, llm-keys:*, <oauth provider>-oauth or credits)"))
    }
}

/// An IAM identity, normalised so an STS session of a role matches the role's ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Principal {
    partition: String,
    account: String,
    /// `role/NAME` or `user/NAME` (paths dropped: STS session ARNs do not carry them).
    identity: String,
}

impl Principal {
    /// Accepts `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, `…:user/[PATH/]NAME` and
    /// `arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/SESSION`.
    fn parse(arn: &str) -> Option<Self> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
            return None;
        };
        if *prefix != "arn" || !region.is_empty() || account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let segments: Vec<&str> = resource.split('/').collect();
        let identity = match (*service, segments.as_slice()) {
            ("iam", ["role", .., name]) if !name.is_empty() => format!("role/{name}"),
            ("iam", ["user", .., name]) if !name.is_empty() => format!("user/{name}"),
            ("sts", ["assumed-role", name, session]) if !name.is_empty() && !session.is_empty() => {
                format!("role/{name}")
            }
            _ => return None,
        };
        Some(Self { partition: (*partition).to_owned(), account: (*account).to_owned(), identity })
    }
}

/// The account of an IAM role, IAM user or STS assumed-role ARN; `None` for anything else.
pub fn account_of(arn: &str) -> Option<String> {
    Principal::parse(arn).map(|p| p.account)
}

/// Which IAM principals may call `/internal/*` routes, and for what.
#[derive(Debug, Clone, Default)]
pub struct InternalPrincipals(HashMap<Principal, BTreeSet<Grant>>);

impl InternalPrincipals {
    /// Parses `{"arn:aws:iam::123456789012:role/notes-service": ["openai", "anthropic"], …}`.
    pub fn from_json(raw: &str) -> Result<Self, String> {
        let map: HashMap<String, Vec<String>> =
            serde_json::from_str(raw).map_err(|_| "must be a JSON object of principal ARN to grant list".to_owned())?;
        let mut principals = HashMap::new();
        for (arn, grants) in map {
            let principal = Principal::parse(&arn).ok_or_else(|| format!("`{arn}` is not an IAM role or user ARN"))?;
            let mut set = BTreeSet::new();
            for grant in grants {
                set.extend(Grant::parse_all(&grant)?);
            }
            principals.insert(principal, set);
        }
        Ok(Self(principals))
    }

    /// Identifies the caller of an `/internal/*` request. No IAM context (the route was reached
    /// without API Gateway's IAM authorization) or a principal not on the list is refused.
    pub fn caller(&self, req: &Request) -> Result<ServiceCaller, AuthError> {
        let arn = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => {
                ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()).and_then(|iam| iam.user_arn.clone())
            }
            _ => None,
        }
        .ok_or(AuthError::NoServiceIdentity)?;
        self.caller_named(arn)
    }

    /// The caller API Gateway verified as `arn`, if the list allows it.
    pub fn caller_named(&self, arn: String) -> Result<ServiceCaller, AuthError> {
        let principal = Principal::parse(&arn).ok_or(AuthError::PrincipalNotAllowed)?;
        let grants = self.0.get(&principal).ok_or(AuthError::PrincipalNotAllowed)?.clone();
        let identity = format!("arn:{}:iam::{}:{}", principal.partition, principal.account, principal.identity);
        Ok(ServiceCaller { arn, identity, grants })
    }
}

/// An authenticated internal service and what it may do.
#[derive(Debug, Clone)]
pub struct ServiceCaller {
    /// The caller's ARN as API Gateway reported it, for the audit trail.
    pub arn: String,
    /// The role or user behind it (`arn:aws:iam::123456789012:role/notes`), whatever the session.
    identity: String,
    grants: BTreeSet<Grant>,
}

impl ServiceCaller {
    /// The IAM role or user calling, the same for each of its STS sessions.
    pub fn principal(&self) -> &str {
        &self.identity
    }

    pub fn may(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }

    pub fn require(&self, grant: Grant) -> Result<(), AuthError> {
        if self.may(grant) { Ok(()) } else { Err(AuthError::GrantMissing) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
        "arn:aws:iam::123456789012:role/service-role/notes": ["openai", "anthropic"],
        "arn:aws:iam::123456789012:user/ops": ["llm-keys:*", "credits", "microsoft-oauth"]
    }"#;

    fn request_with_arn(arn: Option<&str>) -> Request {
        let iam = arn.map_or(String::from("null"), |a| {
            format!(r#"{{"iam": {{"userArn": "{a}", "accountId": "123456789012"}}}}"#)
        });
        let event = format!(
            r#"{{"version":"2.0","routeKey":"GET /internal/x","rawPath":"/internal/x","rawQueryString":"",
            "headers":{{}},"requestContext":{{"accountId":"123456789012","apiId":"api","domainName":"x",
            "domainPrefix":"x","http":{{"method":"GET","path":"/internal/x","protocol":"HTTP/1.1",
            "sourceIp":"127.0.0.1","userAgent":"t"}},"requestId":"r","routeKey":"GET /internal/x",
            "stage":"$default","time":"12/Mar/2026:19:03:58 +0000","timeEpoch":1,"authorizer":{iam}}},
            "isBase64Encoded":false}}"#
        );
        lambda_http::request::from_str(&event).unwrap()
    }

    #[test]
    fn role_sessions_match_their_role_and_get_its_grants() {
        let list = InternalPrincipals::from_json(LIST).unwrap();
        let caller = list
            .caller(&request_with_arn(Some("arn:aws:sts::123456789012:assumed-role/notes/lambda-session")))
            .unwrap();
        assert!(caller.may(Grant::LlmKey(Provider::OpenAi)));
        assert!(!caller.may(Grant::LlmKey(Provider::Zai)));
        assert!(!caller.may(Grant::Credits));
        assert_eq!(caller.require(Grant::Connection(OAuthProvider::Google)), Err(AuthError::GrantMissing));

        assert_eq!(caller.principal(), "arn:aws:iam::123456789012:role/notes");
        let ops = list.caller(&request_with_arn(Some("arn:aws:iam::123456789012:user/ops"))).unwrap();
        assert!(Provider::ALL.iter().all(|p| ops.may(Grant::LlmKey(*p))));
        assert!(ops.may(Grant::Credits));
        assert!(ops.may(Grant::Connection(OAuthProvider::Microsoft)));
        assert!(!ops.may(Grant::Connection(OAuthProvider::Google)));
    }

    #[test]
    fn unknown_or_missing_principals_are_refused() {
        let list = InternalPrincipals::from_json(LIST).unwrap();
        let cases = [
            (None, AuthError::NoServiceIdentity),
            (Some("arn:aws:sts::999999999999:assumed-role/notes/s"), AuthError::PrincipalNotAllowed),
            (Some("arn:aws:sts::123456789012:assumed-role/other/s"), AuthError::PrincipalNotAllowed),
            (Some("arn:aws-cn:iam::123456789012:user/ops"), AuthError::PrincipalNotAllowed),
            (Some("arn:aws:iam::123456789012:user/ops/../notes"), AuthError::PrincipalNotAllowed),
            (Some("not an arn"), AuthError::PrincipalNotAllowed),
        ];
        for (arn, expected) in cases {
            assert_eq!(list.caller(&request_with_arn(arn)).unwrap_err(), expected, "{arn:?}");
        }
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "[]",
            r#"{"arn:aws:iam::123:role/x": ["openai"]}"#,
            r#"{"arn:aws:iam::123456789012:role/x": ["openai", "everything"]}"#,
            r#"{"arn:aws:s3:::bucket": ["openai"]}"#,
            r#"{"arn:aws:iam::123456789012:role/x": ["yahoo-oauth"]}"#,
        ] {
            assert!(InternalPrincipals::from_json(bad).is_err(), "{bad}");
        }
    }
}
