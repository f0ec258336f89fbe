//! [`AllowedHosts`]: the names the dashboard answers for, and the checks that keep other
//! sites out.
//!
//! A browser sends a page's requests wherever that page's name resolves. A site that points
//! its own name at the dashboard's address (DNS rebinding) would otherwise read every page and,
//! being same-origin with itself, send actions too; a page of another site can send a request
//! whatever its name. So every request's `Host` must be a name the dashboard is reachable as,
//! and every action must also come from a page of one of those names (its `Origin`, or its
//! `Referer` where a browser sends no `Origin`).
//!
//! Invariants: the list always holds the listen address's `host:port`, plus `localhost`,
//! `127.0.0.1` and `[::1]` on that port when it listens on loopback or a wildcard address;
//! the operator adds more (`--allowed-host`, `frontend.dashboard_allowed_hosts`). Names are
//! compared in lower case, IPv6 addresses in their canonical form. A missing or unreadable
//! header is refused, never taken for an allowed one.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The names the dashboard answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    allowed: Vec<AllowedHost>,
}

/// One name: a host, and its port if only that port is meant (without one, any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower case; an IPv6 address in brackets, canonical.
    host: String,
    port: Option<u16>,
}

/// The longest header value repeated in a reason or a log line.
const SHOWN: usize = 100;

impl AllowedHosts {
    /// What a dashboard listening on `listen` is reachable as, plus `extra`.
    pub fn new(listen: SocketAddr, extra: &[AllowedHost]) -> Self {
        let port = Some(listen.port());
        let ip = listen.ip();
        let mut allowed = Vec::new();
        if !ip.is_unspecified() {
            let host = match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            };
            allowed.push(AllowedHost { host, port });
        }
        if ip.is_loopback() || ip.is_unspecified() {
            for host in ["localhost", "127.0.0.1", "[::1]"] {
                let name = AllowedHost { host: host.to_owned(), port };
                if !allowed.contains(&name) {
                    allowed.push(name);
                }
            }
        }
        for name in extra {
            if !allowed.contains(name) {
                allowed.push(name.clone());
            }
        }
        AllowedHosts { allowed }
    }

    /// The names, as an operator writes them (for the start-up log line).
    pub fn names(&self) -> Vec<String> {
        self.allowed.iter().map(AllowedHost::to_string).collect()
    }

    /// Whether a request's `Host` header names the dashboard; the reason if not.
    pub fn check_host(&self, host: Option<&str>) -> Result<(), String> {
        let Some(host) = host else {
            return Err("a request needs a Host header".to_owned());
        };
        // The dashboard speaks plain HTTP: a Host without a port is port 80.
        match authority(host, 80) {
            Some((name, port)) if self.allows(&name, port) => Ok(()),
            // The allowed names are not listed: the page of a rebinding site reads this.
            _ => Err(format!(
                "Host {:?} is not a name this dashboard answers for (its operator can add one \
                 with --allowed-host or frontend.dashboard_allowed_hosts)",
                shown(host)
            )),
        }
    }

    /// Whether an action comes from a page of an allowed name: its `Origin`, or, without one,
    /// its `Referer`; the reason if not.
    pub fn check_origin(&self, origin: Option<&str>, referer: Option<&str>) -> Result<(), String> {
        let (what, value, url) = match (origin, referer) {
            (Some(origin), _) => ("Origin", origin, origin_authority(origin, false)),
            (None, Some(referer)) => ("Referer", referer, origin_authority(referer, true)),
            (None, None) => {
                return Err("an action needs an Origin (or Referer) header naming this \
                            dashboard: it comes from another site, or from no page"
                    .to_owned())
            }
        };
        match url {
            Some((name, port)) if self.allows(&name, port) => Ok(()),
            _ => Err(format!(
                "an action from another site is refused: {what} {:?} is not a name this \
                 dashboard answers for",
                shown(value)
            )),
        }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|a| a.host == host && a.port.is_none_or(|p| p == port))
    }
}

impl FromStr for AllowedHost {
    type Err = String;

    /// `name`, `name:port`, an IPv4 address with or without a port, or an IPv6 address in
    /// brackets (`[fd00::1]:8080`).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid = || {
            format!(
                "{:?} is not a host name or address, with an optional port (jobs.example.com, \
                 jobs.example.com:8443, [fd00::1]:8080)",
                shown(text)
            )
        };
        let (host, port) = split_port(text).ok_or_else(invalid)?;
        let host = host_name(host).ok_or_else(invalid)?;
        Ok(AllowedHost { host, port })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// `host[:port]` as (host, port), `port` defaulting to `default_port`.
fn authority(text: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = split_port(text)?;
    Some((host_name(host)?, port.unwrap_or(default_port)))
}

/// The authority of an `Origin` (`scheme://host[:port]`) or, with `path`, of a `Referer` (a
/// whole URL), as (host, port); `None` for anything else, `null` included.
fn origin_authority(text: &str, path: bool) -> Option<(String, u16)> {
    let (scheme, rest) = text.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    // An Origin is exactly scheme://host[:port] (a trailing `/` tolerated); a Referer goes
    // on with a path, a query or a fragment. A `user@` part fails as a host name.
    let host = match path {
        true => &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())],
        false => rest.strip_suffix('/').unwrap_or(rest),
    };
    authority(host, default_port)
}

/// Splits `host[:port]`; `None` if the port is not a number or the shape is wrong.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if text.starts_with('[') {
        let close = text.find(']')?;
        let (host, rest) = text.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// A host as compared: a name of letters, digits, `-`, `_` and `.` in lower case, or an IPv6
/// address in brackets in its canonical form.
fn host_name(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return Some(format!("[{}]", inner.parse::<Ipv6Addr>().ok()?));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if host.is_empty() || host.len() > 253 || !host.bytes().all(ok) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// At most [`SHOWN`] characters of a value a client sent.
fn shown(value: &str) -> String {
    value.chars().take(SHOWN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<AllowedHost> = extra.iter().map(|e| e.parse().unwrap()).collect();
        AllowedHosts::new(listen.parse().unwrap(), &extra)
    }

    #[test]
    fn loopback_and_wildcard_listeners_answer_for_the_local_names_on_their_port() {
        let local = hosts("127.0.0.1:8080", &[]);
        assert_eq!(local.names(), ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"]);
        for ok in ["127.0.0.1:8080", "localhost:8080", "LocalHost:8080", "[::1]:8080"] {
            assert_eq!(local.check_host(Some(ok)), Ok(()), "{ok}");
        }
        for refused in [
            "evil.example:8080",
            "127.0.0.1",
            "127.0.0.1:8081",
            "localhost",
            "127.0.0.1:8080.evil.example",
            "127.0.0.1:08080x",
            "user@127.0.0.1:8080",
            "",
            " ",
            "[::1",
            "::1:8080",
            "[::1]8080",
        ] {
            assert!(local.check_host(Some(refused)).is_err(), "{refused:?} was allowed");
        }
        assert!(local.check_host(None).is_err());

        let wildcard = hosts("0.0.0.0:9000", &[]);
        assert_eq!(wildcard.names(), ["localhost:9000", "127.0.0.1:9000", "[::1]:9000"]);
        let v6 = hosts("[::]:9000", &[]);
        assert_eq!(v6.check_host(Some("[0:0:0:0:0:0:0:1]:9000")), Ok(()), "canonical form");
        // An address of the machine's network: that address only; names are the operator's.
        let lan = hosts("10.1.2.3:8080", &[]);
        assert_eq!(lan.names(), ["10.1.2.3:8080"]);
        assert!(lan.check_host(Some("localhost:8080")).is_err());
    }

    #[test]
    fn the_operator_adds_names_with_or_without_a_port() {
        let proxied = hosts("127.0.0.1:8080", &["Jobs.Example.com", "proxy.internal:8443"]);
        // Without a port: any port, and none (port 80).
        for ok in ["jobs.example.com", "jobs.example.com:443", "JOBS.example.com:8080"] {
            assert_eq!(proxied.check_host(Some(ok)), Ok(()), "{ok}");
        }
        assert_eq!(proxied.check_host(Some("proxy.internal:8443")), Ok(()));
        assert!(proxied.check_host(Some("proxy.internal:9999")).is_err());
        assert!(proxied.check_host(Some("proxy.internal")).is_err());
        assert!(proxied.check_host(Some("example.com")).is_err());
        assert_eq!(proxied.check_origin(Some("https://jobs.example.com"), None), Ok(()));
        assert_eq!(proxied.check_origin(Some("http://proxy.internal:8443"), None), Ok(()));
        assert!(proxied.check_origin(Some("https://proxy.internal"), None).is_err(), "port 443");
        for bad in ["", "a b", "host:", "host:99999", "host:-1", "[nope]", "h/x", "a:1:2", "é"] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad:?} was read");
        }
        assert_eq!("[FD00::1]:80".parse::<AllowedHost>().unwrap().to_string(), "[fd00::1]:80");
    }

    #[test]
    fn an_action_comes_from_a_page_of_an_allowed_name() {
        let local = hosts("127.0.0.1:8080", &[]);
        for ok in [
            (Some("http://127.0.0.1:8080"), None),
            (Some("http://localhost:8080/"), None),
            (None, Some("http://localhost:8080/#/job/x")),
            (None, Some("http://127.0.0.1:8080")),
            (Some("http://[::1]:8080"), Some("http://evil.example/")),
        ] {
            assert_eq!(local.check_origin(ok.0, ok.1), Ok(()), "{ok:?}");
        }
        for refused in [
            (None, None),
            (Some("null"), None),
            (Some("http://evil.example"), None),
            (Some("http://evil.example:8080"), None),
            // The Origin is what counts when there is one.
            (Some("http://evil.example"), Some("http://127.0.0.1:8080/")),
            (None, Some("http://evil.example/page?from=http://127.0.0.1:8080")),
            (None, Some("http://127.0.0.1:8080@evil.example/")),
            (Some("http://127.0.0.1"), None),
            (Some("https://127.0.0.1:8081"), None),
            (Some("http://127.0.0.1:8080/path"), None),
            (Some("ftp://127.0.0.1:8080"), None),
            (Some("127.0.0.1:8080"), None),
            (None, Some("/relative")),
        ] {
            assert!(local.check_origin(refused.0, refused.1).is_err(), "{refused:?} was allowed");
        }
        let reason = local.check_origin(Some(&"x".repeat(10_000)), None).unwrap_err();
        assert!(reason.len() < 400, "a reason of {} bytes", reason.len());
    }
}
