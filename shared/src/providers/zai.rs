//! Zai (`provider-errors.md` §5): Z.ai internationally, Zhipu BigModel in China — separate accounts
//! with the same API, so a key's region is stored with it and decides where it is checked. Refusals
//! carry a business code in the body. The probe model is a paid one, since free "flash" models never
//! report an empty balance.

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::answer::Answer;
use super::outcome::{Failure, FailureKind};
use super::{LlmProvider, Probe, bearer};
use crate::endpoints::EndpointSetting;
use crate::model::{Provider, ZaiRegion};
use crate::secret::ApiKey;

const MODEL: &str = "glm-4.5";

const ENDPOINTS: [EndpointSetting; 2] = [
    EndpointSetting {
        name: "zai",
        var: "KEYWARD_ZAI_BASE_URL",
        official: "https://api.z.ai/api/paas/v4",
        sandbox_path: "/zai/api/paas/v4",
    },
    EndpointSetting {
        name: "zai-china",
        var: "KEYWARD_ZAI_CHINA_BASE_URL",
        official: "https://open.bigmodel.cn/api/paas/v4",
        sandbox_path: "/zai-china/api/paas/v4",
    },
];

pub struct Zai;

impl LlmProvider for Zai {
    fn provider(&self) -> Provider {
        Provider::Zai
    }

    fn display_name(&self) -> &'static str {
        "Zai"
    }

    fn key_hint(&self) -> &'static str {
        "<id>.<secret>"
    }

    fn console_url(&self) -> &'static str {
        "https://z.ai/manage-apikey/apikey-list"
    }

    fn endpoints(&self) -> &'static [EndpointSetting] {
        &ENDPOINTS
    }

    fn endpoint(&self, region: ZaiRegion) -> &'static EndpointSetting {
        match region {
            ZaiRegion::International => &ENDPOINTS[0],
            ZaiRegion::China => &ENDPOINTS[1],
        }
    }

    fn has_regions(&self) -> bool {
        true
    }

    fn check_shape(&self, key: &str) -> Result<(), &'static str> {
        match key.split_once('.') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() && !secret.contains('.') => Ok(()),
            _ => Err("Zai API keys have the form `<id>.<secret>`."),
        }
    }

    fn probe(&self) -> Probe {
        Probe {
            method: http::Method::POST,
            path: "/chat/completions".into(),
            body: Some(json!({ "model": MODEL, "messages": [{ "role": "user", "content": "ping" }], "max_tokens": 1 })),
        }
    }

    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap) {
        bearer(key, headers);
        headers.insert("accept-language", HeaderValue::from_static("en-US,en"));
    }

    fn judge(&self, answer: &Answer<'_>) -> Failure {
        let code = answer.error.code.as_deref();
        let kind = match code {
            Some("1000" | "1001" | "1002" | "1003" | "1004") => FailureKind::InvalidKey,
            Some("1110" | "1111" | "1112" | "1121") => FailureKind::KeyBlocked,
            Some("1113" | "1309") => FailureKind::NoCredits,
            Some("1005" | "1211" | "1220" | "1221" | "1222" | "1311") => FailureKind::NoPermission,
            Some("1261") => FailureKind::ContextTooLong,
            Some("1302" | "1303" | "1313") => FailureKind::RateLimited,
            Some("1304" | "1308" | "1310") => FailureKind::QuotaExhausted,
            Some("1120" | "1305" | "1312") => FailureKind::Overloaded,
            _ => answer.by_status(),
        };
        let mut failure = Failure::new(Provider::Zai, kind);
        failure.provider_code = answer.error.code.clone();
        failure.quota = match code {
            Some("1304") => Some("daily call".into()),
            Some("1310") => Some("weekly or monthly".into()),
            Some("1308") => Some("plan usage".into()),
            _ => None,
        };
        failure
    }

    fn sentence(&self, failure: &Failure) -> Option<String> {
        (failure.kind == FailureKind::NoCredits).then(|| {
            "Zai balance is empty or your resource package doesn't cover this model — recharge at z.ai.".into()
        })
    }
}
