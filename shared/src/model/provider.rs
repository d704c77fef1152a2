//! Which LLM provider a key is for. The slug is the wire and storage name; everything else about a
//! provider (its keys, its validation call, its answers) is its module in `providers`.

use std::fmt;
use std::str::FromStr;

/// Declares the providers: each line is one provider's variant and slug.
macro_rules! providers {
    ($($(#[$doc:meta])* $variant:ident => $slug:literal,)*) => {
        /// One of the LLM providers whose keys keyward stores.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Provider {
            $($(#[$doc])* $variant,)*
        }

        impl Provider {
            pub const ALL: &'static [Provider] = &[$(Provider::$variant,)*];

            pub fn slug(self) -> &'static str {
                match self {
                    $(Provider::$variant => $slug,)*
                }
            }
        }
    };
}

providers! {
    /// Google Gemini (AI Studio / Generative Language API), `google` in URLs and storage.
    Gemini => "google",
    OpenAi => "openai",
    Anthropic => "anthropic",
    Perplexity => "perplexity",
    /// Zai (GLM), international or China endpoint.
    Zai => "zai",
    /// OpenRouter, one key for many models.
    OpenRouter => "openrouter",
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown provider")]
pub struct UnknownProvider;

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Exact lowercase slugs only: `OpenAI`, ` openai` or `openai/../x` are not providers.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Provider::ALL.iter().copied().find(|p| p.slug() == raw).ok_or(UnknownProvider)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
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
    fn slugs_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.slug().parse::<Provider>(), Ok(*p));
        }
    }

    #[test]
    fn near_misses_are_unknown() {
        for raw in ["OpenAI", " openai", "openai/", "openai/../zai", "", "gemini%00"] {
            assert_eq!(raw.parse::<Provider>(), Err(UnknownProvider), "{raw:?}");
        }
    }

    #[test]
    fn zai_regions_round_trip() {
        for region in [ZaiRegion::International, ZaiRegion::China] {
            assert_eq!(ZaiRegion::parse(region.slug()), Some(region));
        }
        assert_eq!(ZaiRegion::parse("China"), None);
    }
}
