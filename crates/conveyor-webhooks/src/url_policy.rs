//! Which webhook URLs Conveyor will call (protection against server-side request forgery).
//!
//! A webhook URL is chosen by a customer, and the worker that calls it sits inside our network,
//! so an unchecked URL would let anyone make the fleet fetch internal services or the cloud
//! metadata endpoint. URLs are checked twice: when an endpoint is configured ([`UrlPolicy::check_url`]:
//! scheme, literal addresses, obviously internal host names) and at every delivery, where the
//! host is resolved by us and every resolved address is checked before the connection is made
//! to exactly that address (see the delivery module), so DNS rebinding cannot slip through.
//!
//! Operators of demos and tests, whose receivers run on loopback, turn the check off with
//! [`UrlPolicy::allow_private_networks`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::WebhookError;

/// Whether private, loopback, link-local and other non-public addresses may be called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlPolicy {
    /// Allow every address, including loopback and private networks. Defaults to `false`;
    /// only demos and tests set it.
    #[serde(default)]
    pub allow_private_networks: bool,
}

/// Host name suffixes that only ever name machines inside a private network.
const INTERNAL_SUFFIXES: &[&str] = &[
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".home.arpa",
];

impl UrlPolicy {
    /// Only public addresses (the production setting).
    pub const PUBLIC_ONLY: UrlPolicy = UrlPolicy {
        allow_private_networks: false,
    };
    /// Every address (demos and tests).
    pub const ALLOW_PRIVATE: UrlPolicy = UrlPolicy {
        allow_private_networks: true,
    };

    /// Checks a URL when an endpoint is configured.
    ///
    /// Refuses anything but `http`/`https`, URLs with user info (they would end up in delivery
    /// logs), literal addresses outside the public internet, and host names that can only be
    /// internal (`localhost`, `*.internal`, single-label names resolved through search domains).
    /// Host names that look public are checked again after DNS resolution at delivery time.
    pub fn check_url(&self, url: &str) -> Result<Url, WebhookError> {
        self.check(url, true)
    }

    /// Checks a URL just before a delivery attempt: the same rules as
    /// [`check_url`](Self::check_url) except the host name heuristics, because at delivery time
    /// the resolved addresses themselves are checked, which is the authoritative test.
    pub fn check_delivery_url(&self, url: &str) -> Result<Url, WebhookError> {
        self.check(url, false)
    }

    fn check(&self, url: &str, check_host_names: bool) -> Result<Url, WebhookError> {
        let parsed = Url::parse(url).map_err(|err| WebhookError::InvalidUrl {
            reason: err.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::InvalidUrl {
                reason: format!("scheme `{}` is not http or https", parsed.scheme()),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(WebhookError::InvalidUrl {
                reason: "user name and password in the URL are not supported".to_owned(),
            });
        }
        // The WHATWG parser has already turned every spelling of an address (`0x7f.1`,
        // `2130706433`) into dotted decimal, so whatever parses as an address here is the
        // address that would really be dialled.
        let host = parsed.host_str().ok_or_else(|| WebhookError::InvalidUrl {
            reason: "the URL has no host".to_owned(),
        })?;
        let literal = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        match literal.parse::<IpAddr>() {
            Ok(address) => self.check_address(address)?,
            Err(_) if check_host_names => self.check_host_name(host)?,
            Err(_) => {}
        }
        Ok(parsed)
    }

    /// Checks one address the delivery would connect to.
    pub fn check_address(&self, address: IpAddr) -> Result<(), WebhookError> {
        if self.allow_private_networks {
            return Ok(());
        }
        match non_public_range(address) {
            None => Ok(()),
            Some(range) => Err(WebhookError::UrlRefused {
                reason: format!("{address} is in a non-public range ({range})"),
            }),
        }
    }

    fn check_host_name(&self, host: &str) -> Result<(), WebhookError> {
        if self.allow_private_networks {
            return Ok(());
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let internal = host == "localhost"
            || INTERNAL_SUFFIXES
                .iter()
                .any(|suffix| host.ends_with(suffix))
            || !host.contains('.');
        if internal {
            return Err(WebhookError::UrlRefused {
                reason: format!("host `{host}` can only name a machine on a private network"),
            });
        }
        Ok(())
    }
}

/// The non-public range an address falls in, or `None` for a public unicast address.
///
/// IPv6 addresses that embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by the
/// embedded address, since that is where the packets end up.
pub fn non_public_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

/// IPv4 special-purpose ranges (RFC 6890 and friends) as (network, prefix length, name).
const V4_RANGES: &[(Ipv4Addr, u8, &str)] = &[
    // Listed before link-local so the message names it.
    (
        Ipv4Addr::new(169, 254, 169, 254),
        32,
        "cloud metadata service",
    ),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network, 0.0.0.0/8"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private, 10.0.0.0/8"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space (CGNAT), 100.64.0.0/10",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback, 127.0.0.0/8"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local, 169.254.0.0/16",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private, 172.16.0.0/12"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments, 192.0.0.0/24",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation, 192.0.2.0/24",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private, 192.168.0.0/16"),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking, 198.18.0.0/15",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation, 198.51.100.0/24",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation, 203.0.113.0/24",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast, 224.0.0.0/4"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved and broadcast, 240.0.0.0/4",
    ),
];

fn non_public_v4(address: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(address);
    V4_RANGES
        .iter()
        .find(|(network, prefix, _)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
            bits & mask == u32::from(*network) & mask
        })
        .map(|(_, _, name)| *name)
}

/// IPv6 ranges refused outright, as (network, prefix length, name).
const V6_RANGES: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified, ::/128"),
    (Ipv6Addr::LOCALHOST, 128, "loopback, ::1/128"),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        "IPv4-compatible (deprecated), ::/96",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64, 64:ff9b:1::/48",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only, 100::/64",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments, 2001::/23",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation, 2001:db8::/32",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local, fc00::/7",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local, fe80::/10",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local (deprecated), fec0::/10",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast, ff00::/8",
    ),
];

fn non_public_v6(address: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(address);
    let segments = address.segments();
    // IPv4-mapped (::ffff:a.b.c.d): the socket layer dials the IPv4 address.
    if let Some(v4) = address.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    // NAT64 well-known prefix (64:ff9b::/96): a translator forwards to the embedded address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return non_public_v4(Ipv4Addr::from(bits as u32));
    }
    // 6to4 (2002::/16): the relay forwards to the IPv4 address in bits 16..48.
    if segments[0] == 0x2002 {
        let embedded = Ipv4Addr::from((bits >> 80) as u32);
        return non_public_v4(embedded);
    }
    V6_RANGES
        .iter()
        .find(|(network, prefix, _)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
            bits & mask == u128::from(*network) & mask
        })
        .map(|(_, _, name)| *name)
}
