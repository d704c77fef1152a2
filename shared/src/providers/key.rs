//! A user's pasted API key, checked for shape once at the edge: length, charset, and the few
//! per-provider facts that are certain (see `provider-errors.md`). Anything past the shape is the
//! provider's call to make.

use super::Provider;
use crate::secret::ApiKey;

/// Shortest key accepted: every provider's real keys are far longer.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key accepted (Gemini's newer keys and Zai's `<id>.<secret>` stay well below).
pub const MAX_KEY_LEN: usize = 512;

/// Why a pasted value cannot be a key of the provider. The sentences never quote the value.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyShapeError {
    #[error("The API key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} characters long.")]
    Length,
    #[error("The API key may contain only letters, digits and `-_.+/=`; check for spaces or quotes pasted with it.")]
    Charset,
    #[error("OpenAI API keys start with `sk-`.")]
    OpenAiPrefix,
    #[error("Anthropic API keys start with `sk-ant-`.")]
    AnthropicPrefix,
    #[error("This is a Claude subscription (OAuth) token, not an API key — create an API key in the Claude Console.")]
    AnthropicOAuthToken,
    #[error("This is a Google OAuth token or JWT, not a Gemini API key — create an API key in Google AI Studio.")]
    GoogleToken,
    #[error("Perplexity API keys start with `pplx-`.")]
    PerplexityPrefix,
    #[error("Zai API keys have the form `<id>.<secret>`.")]
    ZaiForm,
}

impl KeyShapeError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Length | Self::Charset => "invalid_key_format",
            _ => "wrong_key_kind",
        }
    }
}

/// Checks `raw` is shaped like a key of `provider` and takes it as a secret. Surrounding
/// whitespace (a common paste accident) is trimmed; whitespace inside is refused.
pub fn parse_api_key(provider: Provider, raw: &str) -> Result<ApiKey, KeyShapeError> {
    let key = raw.trim();
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(KeyShapeError::Length);
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+/=".contains(&b)) {
        return Err(KeyShapeError::Charset);
    }
    match provider {
        Provider::OpenAi if !key.starts_with("sk-") => Err(KeyShapeError::OpenAiPrefix),
        Provider::Anthropic if key.starts_with("sk-ant-oat") => Err(KeyShapeError::AnthropicOAuthToken),
        Provider::Anthropic if !key.starts_with("sk-ant-") => Err(KeyShapeError::AnthropicPrefix),
        // Gemini keys changed form in 2026 (`AIza…`, `AQ.…`): refuse only what is certainly not a key.
        Provider::Google if key.starts_with("ya29.") || key.starts_with("eyJ") => Err(KeyShapeError::GoogleToken),
        Provider::Perplexity if !key.starts_with("pplx-") => Err(KeyShapeError::PerplexityPrefix),
        Provider::Zai if !is_zai_form(key) => Err(KeyShapeError::ZaiForm),
        _ => Ok(ApiKey::new(key)),
    }
}

fn is_zai_form(key: &str) -> bool {
    matches!(key.split_once('.'), Some((id, secret)) if !id.is_empty() && !secret.is_empty() && !secret.contains('.'))
}

/// The masked form an owner sees: the first and last four characters (never more than 8 of the key).
pub fn preview(key: &ApiKey) -> String {
    let text = key.expose();
    // Keys are ASCII (checked by `parse_api_key`), so byte offsets are character offsets.
    format!("{}…{}", &text[..4], &text[text.len() - 4..])
}

/// Which of Zai's two platforms a Zai key belongs to; the two are separate accounts, so the region
/// is stored with the key and decides where it is validated and used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZaiRegion {
    /// Z.ai (`api.z.ai`).
    #[default]
    International,
    /// Zhipu BigModel (`open.bigmodel.cn`).
    China,
}

impl ZaiRegion {
    pub fn slug(self) -> &'static str {
        match self {
            Self::International => "international",
            Self::China => "china",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::International, Self::China].into_iter().find(|r| r.slug() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_providers_key_forms() {
        let cases = [
            (Provider::OpenAi, "sk-proj-abcdefghijklmnop1234"),
            (Provider::OpenAi, "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL"),
            (Provider::Anthropic, "sk-ant-api03-abcdefghijklmnop_-"),
            (Provider::Google, "AIzaSyA1234567890abcdefghijklmnopqrstu"),
            (Provider::Google, "AQ.Ab8RN6abcdefghijklmnop"),
            (Provider::Perplexity, "pplx-abcdefghijklmnop1234"),
            (Provider::Zai, "0123456789abcdef.ABCdefGHIjkl"),
        ];
        for (provider, raw) in cases {
            let key = parse_api_key(provider, &format!("  {raw}\n")).unwrap();
            assert_eq!(key.expose(), raw, "{provider}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_a_key_without_quoting_it() {
        let long = format!("sk-{}", "a".repeat(MAX_KEY_LEN));
        let cases = [
            (Provider::OpenAi, "sk-short", KeyShapeError::Length),
            (Provider::OpenAi, long.as_str(), KeyShapeError::Length),
            (Provider::OpenAi, "sk-proj-abc def ghijklmnop", KeyShapeError::Charset),
            (Provider::OpenAi, "\"sk-proj-abcdefghijklmnop\"", KeyShapeError::Charset),
            (Provider::OpenAi, "sk-proj-abcdéfghijklmnop", KeyShapeError::Charset),
            (Provider::OpenAi, "pplx-abcdefghijklmnop1234", KeyShapeError::OpenAiPrefix),
            (Provider::Anthropic, "sk-ant-oat01-abcdefghijklmnop", KeyShapeError::AnthropicOAuthToken),
            (Provider::Anthropic, "sk-proj-abcdefghijklmnop1234", KeyShapeError::AnthropicPrefix),
            (Provider::Google, "ya29.a0AfH6SMBabcdefghijkl", KeyShapeError::GoogleToken),
            (Provider::Google, "eyJhbGciOiJSUzI1NiJ9.e30.sig", KeyShapeError::GoogleToken),
            (Provider::Perplexity, "sk-abcdefghijklmnopqrstu", KeyShapeError::PerplexityPrefix),
            (Provider::Zai, "0123456789abcdefABCdefGHIjkl", KeyShapeError::ZaiForm),
            (Provider::Zai, "0123456789abcdef.ABC.defGHIjkl", KeyShapeError::ZaiForm),
            (Provider::Zai, ".0123456789abcdefABCdefGHIjkl", KeyShapeError::ZaiForm),
        ];
        for (provider, raw, want) in cases {
            let err = parse_api_key(provider, raw).unwrap_err();
            assert_eq!(err, want, "{provider} {raw:?}");
            assert!(!err.to_string().contains("abcdefghijklmnop"), "{err}");
        }
    }

    #[test]
    fn preview_shows_at_most_eight_characters() {
        let key = parse_api_key(Provider::OpenAi, "sk-proj-abcdefghijklmnop1234").unwrap();
        assert_eq!(preview(&key), "sk-p…1234");
        let shortest = parse_api_key(Provider::Perplexity, "pplx-0123456789a").unwrap();
        assert_eq!(preview(&shortest), "pplx…789a");
    }

    #[test]
    fn zai_regions_round_trip() {
        for region in [ZaiRegion::International, ZaiRegion::China] {
            assert_eq!(ZaiRegion::parse(region.slug()), Some(region));
        }
        assert_eq!(ZaiRegion::parse("China"), None);
    }
}
