//! The leaf types every layer shares, parsed once at the edge: who a user is, which provider,
//! tier and client something belongs to, and the clock and randomness everything else takes.

mod client;
mod clock;
mod cookie;
mod ids;
mod oauth;
mod problem;
mod provider;
mod random;
mod scope;
mod tier;
mod time;

pub use client::ClientKind;
pub use clock::{Clock, ManualClock, SystemClock};
pub use cookie::Cookie;
pub use ids::{InvalidUserId, UserId};
pub use oauth::{OAuthProvider, UnknownOAuthProvider};
pub use problem::ProblemCode;
pub use provider::{Provider, UnknownProvider, ZaiRegion};
pub use random::{random_id, random_secret};
pub use scope::{Credential, Scope, UnknownScope};
pub use tier::Tier;
pub use time::rfc3339;
