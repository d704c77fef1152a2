//! The one API Gateway API a function serves. API Gateway invokes the functions through their
//! resource policy, but any principal with `lambda:InvokeFunction` on a function can hand it an
//! event of the same shape, naming any IAM caller in `requestContext.authorizer.iam`. IAM is the
//! barrier (`template.yaml`'s invoke guard); this is the tripwire behind it: an event that names
//! another API, stage or account did not come through this stack's API, and is refused before any
//! handler reads or writes anything.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The API, stage and account this stack's API Gateway names in every event it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGateway {
    pub api_id: String,
    pub stage: String,
    pub account_id: String,
}

/// An event that did not come through this stack's API: what it claimed, for the log (each value
/// cut short; they are the sender's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignEvent {
    pub api_id: String,
    pub stage: String,
    pub account_id: String,
}

impl ApiGateway {
    /// `Ok` when `req` is an HTTP API event of this stack's API, stage and account.
    pub fn admit(&self, req: &Request) -> Result<(), ForeignEvent> {
        let claimed = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => {
                (ctx.apiid.as_deref(), ctx.stage.as_deref(), ctx.account_id.as_deref())
            }
            _ => (None, None, None),
        };
        if claimed == (Some(self.api_id.as_str()), Some(self.stage.as_str()), Some(self.account_id.as_str())) {
            return Ok(());
        }
        let shown = |value: Option<&str>| value.map_or_else(|| "(none)".to_owned(), |v| v.chars().take(64).collect());
        Err(ForeignEvent { api_id: shown(claimed.0), stage: shown(claimed.1), account_id: shown(claimed.2) })
    }
}

/// An internal-keys event naming `api`, `stage` and `account`, for the tests here and in `app`.
#[cfg(test)]
pub(crate) fn test_event(api: &str, stage: &str, account: &str) -> Request {
    let json = serde_json::json!({
        "version": "2.0", "routeKey": "GET /internal/users/{uid}/llm-keys",
        "rawPath": "/internal/users/u/llm-keys", "rawQueryString": "", "headers": {},
        "requestContext": {
            "accountId": account, "apiId": api, "domainName": "x", "domainPrefix": "x",
            "http": {"method": "GET", "path": "/internal/users/u/llm-keys", "protocol": "HTTP/1.1",
                     "sourceIp": "10.0.0.1", "userAgent": "t"},
            "requestId": "r", "routeKey": "GET /internal/users/{uid}/llm-keys", "stage": stage,
            "time": "12/Mar/2026:19:03:58 +0000", "timeEpoch": 1,
            "authorizer": {"iam": {"userArn": "arn:aws:iam::123456789012:role/notes", "accountId": "123456789012"}}
        },
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&json.to_string()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(api: &str, stage: &str, account: &str) -> Request {
        test_event(api, stage, account)
    }

    const OURS: (&str, &str, &str) = ("a1b2c3d4e5", "$default", "123456789012");

    fn gateway() -> ApiGateway {
        ApiGateway { api_id: OURS.0.into(), stage: OURS.1.into(), account_id: OURS.2.into() }
    }

    #[test]
    fn events_of_this_api_stage_and_account_are_admitted() {
        assert_eq!(gateway().admit(&event(OURS.0, OURS.1, OURS.2)), Ok(()));
    }

    #[test]
    fn an_event_naming_another_api_stage_or_account_is_foreign() {
        for (api, stage, account) in
            [("zzzzzzzzzz", OURS.1, OURS.2), (OURS.0, "prod", OURS.2), (OURS.0, OURS.1, "999999999999"), ("", "", "")]
        {
            let refused = gateway().admit(&event(api, stage, account)).unwrap_err();
            assert_eq!((refused.api_id.as_str(), refused.stage.as_str()), (api, stage));
        }
        let long = "x".repeat(500);
        assert_eq!(gateway().admit(&event(&long, OURS.1, OURS.2)).unwrap_err().api_id.len(), 64);
    }

    #[test]
    fn an_event_without_an_api_gateway_context_is_foreign() {
        let bare =
            lambda_http::http::Request::builder().uri("/internal/users/u/llm-keys").body(lambda_http::Body::Empty);
        let refused = gateway().admit(&bare.unwrap()).unwrap_err();
        assert_eq!(refused.api_id, "(none)");
    }
}
