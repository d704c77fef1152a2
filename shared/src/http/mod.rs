//! The HTTP edge: requests read strictly ([`request`]), answers built ([`response`]), and every
//! error of every layer mapped, in [`errors`], to one RFC 9457 problem ([`ApiError`]).

mod errors;
mod problem;
pub mod request;
pub mod response;

pub use problem::ApiError;
