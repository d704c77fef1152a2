//! A user's pasted API key, checked for shape once at the edge: length and charset for every
//! provider, then the few facts about its own keys that a provider's module is certain of (see
//! `provider-errors.md`). Anything past the shape is the provider's call to make.

use super::spec;
use crate::model::{ProblemCode, Provider};
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
    /// Not this provider's kind of key; the provider's sentence says what it is instead.
    #[error("{0}")]
    WrongKind(&'static str),
}

impl KeyShapeError {
    pub fn code(self) -> ProblemCode {
        match self {
            Self::Length | Self::Charset => ProblemCode::InvalidKeyFormat,
            Self::WrongKind(_) => ProblemCode::WrongKeyKind,
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
    spec(provider).check_shape(key).map_err(KeyShapeError::WrongKind)?;
    Ok(ApiKey::new(key))
}

/// The masked form an owner sees: the first and last four characters (never more than 8 of the key).
pub fn preview(key: &ApiKey) -> String {
    let text = key.expose();
    // Keys are ASCII (checked by `parse_api_key`), so byte offsets are character offsets.
    format!("{}…{}", &text[..4], &text[text.len() - 4..])
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
            (Provider::Gemini, "AIzaSyA1234567890abcdefghijklmnopqrstu"),
            (Provider::Gemini, "AQ.Ab8RN6abcdefghijklmnop"),
            (Provider::Perplexity, "pplx-abcdefghijklmnop1234"),
            (Provider::Zai, "0123456789abcdef.ABCdefGHIjkl"),
            (Provider::OpenRouter, "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        ];
        for (provider, raw) in cases {
            let key = parse_api_key(provider, &format!("  {raw}\n")).unwrap();
            assert_eq!(key.expose(), raw, "{provider}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_a_key_without_quoting_it() {
        let long = format!("sk-{}", "a".repeat(MAX_KEY_LEN));
        let wrong = |provider, raw| (provider, raw, "wrong_key_kind");
        let cases = [
            (Provider::OpenAi, "sk-short", "invalid_key_format"),
            (Provider::OpenAi, long.as_str(), "invalid_key_format"),
            (Provider::OpenAi, "sk-proj-abc def ghijklmnop", "invalid_key_format"),
            (Provider::OpenAi, "\"sk-proj-abcdefghijklmnop\"", "invalid_key_format"),
            (Provider::OpenAi, "sk-proj-abcdéfghijklmnop", "invalid_key_format"),
            wrong(Provider::OpenAi, "pplx-abcdefghijklmnop1234"),
            wrong(Provider::OpenAi, "sk-or-v1-abcdefghijklmnop1234"),
            wrong(Provider::Anthropic, "sk-ant-oat01-abcdefghijklmnop"),
            wrong(Provider::Anthropic, "sk-proj-abcdefghijklmnop1234"),
            wrong(Provider::Gemini, "ya29.a0AfH6SMBabcdefghijkl"),
            wrong(Provider::Gemini, "eyJhbGciOiJSUzI1NiJ9.e30.sig"),
            wrong(Provider::Perplexity, "sk-abcdefghijklmnopqrstu"),
            wrong(Provider::Zai, "0123456789abcdefABCdefGHIjkl"),
            wrong(Provider::Zai, "0123456789abcdef.ABC.defGHIjkl"),
            wrong(Provider::Zai, ".0123456789abcdefABCdefGHIjkl"),
            wrong(Provider::OpenRouter, "sk-proj-abcdefghijklmnop1234"),
        ];
        for (provider, raw, code) in cases {
            let err = parse_api_key(provider, raw).unwrap_err();
            assert_eq!(err.code().as_str(), code, "{provider} {raw:?}");
            assert!(!err.to_string().contains("abcdefghijklmnop"), "{err}");
        }
        let oauth = parse_api_key(Provider::Anthropic, "sk-ant-oat01-abcdefghijklmnop").unwrap_err();
        assert!(oauth.to_string().contains("subscription"), "{oauth}");
    }

    #[test]
    fn preview_shows_at_most_eight_characters() {
        let key = parse_api_key(Provider::OpenAi, "sk-proj-abcdefghijklmnop1234").unwrap();
        assert_eq!(preview(&key), "sk-p…1234");
        let shortest = parse_api_key(Provider::Perplexity, "pplx-0123456789a").unwrap();
        assert_eq!(preview(&shortest), "pplx…789a");
    }
}
