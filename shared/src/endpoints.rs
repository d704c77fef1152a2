//! Third-party endpoints keyward calls, as configuration knows them: the variable that sets one,
//! its official URL, and its path under the sandbox's stand-ins.

use std::net::IpAddr;

use url::Url;

/// One endpoint's setting.
#[derive(Debug)]
pub struct EndpointSetting {
    /// What health output calls it when a stand-in answers for it (`openai`, `zai-china`).
    pub name: &'static str,
    pub var: &'static str,
    pub official: &'static str,
    pub sandbox_path: &'static str,
}

/// Whether `url` names this machine (where only the sandbox's stand-ins listen).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}
