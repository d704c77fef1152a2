//! The LLM providers whose keys keyward stores: the shape of their keys, the validation call, and
//! what their answers to it mean.

mod classify;
mod key;
mod outcome;
mod validate;

pub use classify::{ProviderResponse, classify};
pub use key::{KeyShapeError, MAX_KEY_LEN, MIN_KEY_LEN, ZaiRegion, parse_api_key, preview};
pub use outcome::{Failure, FailureKind, Outcome, RateLimit};
pub use validate::{KeyValidator, ProviderEndpoints};

use std::fmt;
use std::str::FromStr;

/// One of the five supported LLM providers. The lowercase slug is the wire and storage name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Google Gemini (AI Studio / Generative Language API).
    Google,
    OpenAi,
    Anthropic,
    Perplexity,
    /// Zai (GLM), international or China endpoint.
    Zai,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown provider; expected one of google, openai, anthropic, perplexity, zai")]
pub struct UnknownProvider;

impl Provider {
    pub const ALL: [Provider; 5] =
        [Provider::Google, Provider::OpenAi, Provider::Anthropic, Provider::Perplexity, Provider::Zai];

    pub fn slug(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Perplexity => "perplexity",
            Provider::Zai => "zai",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Google => "Google Gemini",
            Provider::OpenAi => "OpenAI",
            Provider::Anthropic => "Anthropic",
            Provider::Perplexity => "Perplexity",
            Provider::Zai => "Zai",
        }
    }
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Exact lowercase slugs only: `OpenAI`, ` openai` or `openai/../x` are not providers.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Provider::ALL.into_iter().find(|p| p.slug() == raw).ok_or(UnknownProvider)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.slug().parse::<Provider>(), Ok(p));
        }
    }

    #[test]
    fn near_misses_are_unknown() {
        for raw in ["OpenAI", " openai", "openai/", "openai/../zai", "", "gemini%00"] {
            assert_eq!(raw.parse::<Provider>(), Err(UnknownProvider), "{raw:?}");
        }
    }
}
