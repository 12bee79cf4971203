//! The URL policy, table-driven: which webhook URLs are refused and which are allowed.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::net::IpAddr;

use conveyor_webhooks::url_policy::non_public_range;
use conveyor_webhooks::{UrlPolicy, WebhookError};

/// URLs refused at configuration time under the production policy, with a word the refusal
/// must contain.
const REFUSED: &[(&str, &str)] = &[
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10:8080/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://172.16.0.1/hook", "private"),
    ("https://172.31.255.255/hook", "private"),
    ("https://192.168.1.20/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.10.1/", "link-local"),
    ("http://0.0.0.0:8080/", "this network"),
    ("http://0.1.2.3/", "this network"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://100.127.255.254/", "CGNAT"),
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://192.0.2.10/", "documentation"),
    // Other spellings of 127.0.0.1 that the URL parser normalizes.
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::]/hook", "unspecified"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
    ("http://[2002:c0a8:0101::1]/", "private"),
    ("http://[fc00::1]/hook", "unique local"),
    ("http://[fd12:3456:789a::1]/hook", "unique local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[febf::1]/hook", "link-local"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://[2001:db8::1]/hook", "documentation"),
    ("http://[::127.0.0.1]/hook", "IPv4-compatible"),
    // Host names that can only be internal.
    ("http://localhost:3000/hook", "private network"),
    ("http://LOCALHOST./hook", "private network"),
    ("http://api.localhost/hook", "private network"),
    ("http://printer.local/hook", "private network"),
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        "private network",
    ),
    ("http://redis:6379/", "private network"),
    ("http://router.home.arpa/", "private network"),
];

/// URLs that are not webhook URLs at all.
const INVALID: &[&str] = &[
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com/",
    "not a url",
    "https://user:password@example.com/hook",
    "https://token@example.com/hook",
    "http://",
];

/// Public URLs the production policy accepts.
const ALLOWED: &[&str] = &[
    "https://hooks.example.com/conveyor",
    "https://example.com:8443/a/b?c=d",
    "http://93.184.216.34/hook",
    "https://8.8.8.8/",
    "http://100.63.255.255/",
    "http://100.128.0.0/",
    "http://172.15.255.255/",
    "http://172.32.0.1/",
    "http://169.253.255.255/",
    "http://[2606:4700:4700::1111]/hook",
    "http://[::ffff:93.184.216.34]/hook",
    "http://[2002:5db8:d822::1]/",
];

#[test]
fn non_public_addresses_and_internal_names_are_refused() {
    for (url, word) in REFUSED {
        match UrlPolicy::PUBLIC_ONLY.check_url(url) {
            Err(WebhookError::UrlRefused { reason }) => {
                assert!(reason.contains(word), "{url}: `{reason}` lacks `{word}`")
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn malformed_urls_are_invalid() {
    for url in INVALID {
        assert!(
            matches!(
                UrlPolicy::PUBLIC_ONLY.check_url(url),
                Err(WebhookError::InvalidUrl { .. })
            ),
            "{url}"
        );
        // Allowing private networks does not make them valid.
        assert!(UrlPolicy::ALLOW_PRIVATE.check_url(url).is_err(), "{url}");
    }
}

#[test]
fn public_urls_are_allowed() {
    for url in ALLOWED {
        let checked = UrlPolicy::PUBLIC_ONLY.check_url(url);
        assert!(checked.is_ok(), "{url}: {checked:?}");
    }
}

#[test]
fn allowing_private_networks_lets_every_address_through() {
    for (url, _) in REFUSED {
        assert!(UrlPolicy::ALLOW_PRIVATE.check_url(url).is_ok(), "{url}");
    }
    assert_eq!(UrlPolicy::default(), UrlPolicy::PUBLIC_ONLY);
}

#[test]
fn delivery_time_check_leaves_names_to_dns_but_still_refuses_literals() {
    // Names are judged by the addresses they resolve to at delivery time.
    assert!(
        UrlPolicy::PUBLIC_ONLY
            .check_delivery_url("http://localhost:3000/hook")
            .is_ok()
    );
    assert!(
        UrlPolicy::PUBLIC_ONLY
            .check_delivery_url("http://[::ffff:127.0.0.1]/hook")
            .is_err()
    );
    assert!(
        UrlPolicy::PUBLIC_ONLY
            .check_delivery_url("ftp://example.com/")
            .is_err()
    );
}

#[test]
fn address_classification_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("127.0.0.1", Some("loopback, 127.0.0.0/8")),
        ("10.255.255.255", Some("private, 10.0.0.0/8")),
        ("169.254.169.254", Some("cloud metadata service")),
        ("169.254.0.1", Some("link-local, 169.254.0.0/16")),
        (
            "100.64.0.0",
            Some("shared address space (CGNAT), 100.64.0.0/10"),
        ),
        ("0.0.0.0", Some("this network, 0.0.0.0/8")),
        ("::1", Some("loopback, ::1/128")),
        ("::ffff:192.168.0.1", Some("private, 192.168.0.0/16")),
        ("::ffff:8.8.8.8", None),
        ("fc00::", Some("unique local, fc00::/7")),
        ("fdff:ffff::1", Some("unique local, fc00::/7")),
        ("fe80::abcd", Some("link-local, fe80::/10")),
        ("2606:4700::1111", None),
        ("2a00:1450:4001::1", None),
    ];
    for (text, expected) in cases {
        let address: IpAddr = text.parse().unwrap();
        assert_eq!(non_public_range(address), *expected, "{text}");
    }
}
