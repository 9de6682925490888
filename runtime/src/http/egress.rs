//! The egress policy: which addresses a guest's outgoing HTTP may connect to. It is checked by
//! the connector on every address a host name resolves to, just before connecting (so DNS
//! rebinding and other spellings of an address, `127.1`, `2130706433`, `0x7f000001`,
//! `[::ffff:127.0.0.1]`, meet the same rule as `127.0.0.1`), never by the guest.
//!
//! Refused by default: addresses that are not on the public internet (loopback, private,
//! link-local, shared, unique-local, multicast, unspecified, broadcast, reserved) and this node's
//! own listeners. The project file's `outgoing_http.allow` opens what a project needs: a host
//! name (`api.internal`, `*.svc.local`), an address or CIDR (`10.1.2.3`, `10.0.0.0/8`,
//! `[fd00::]/8` or `fd00::/8`), each with an optional port (`:8080`). An explicit rule wins over
//! the defaults, own listeners included.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;

/// One entry of `outgoing_http.allow`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    target: Target,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A host name as written in URLs, lower case, without a trailing dot.
    Host(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Suffix(String),
    Net(IpNet),
}

impl AllowRule {
    /// Parses `host`, `*.suffix`, `address`, `cidr`, each optionally with `:port` (bracket an
    /// IPv6 address or network to give it a port: `[::1]:8080`, `[fd00::]/8:443`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| format!("`{text}` is not an allow rule: {why}");
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (target, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| bad("no closing `]`"))?;
            let (prefix, port) = match after.strip_prefix('/') {
                Some(rest) => match rest.split_once(':') {
                    Some((len, port)) => (Some(len), Some(port)),
                    None => (Some(rest), None),
                },
                None => match after {
                    "" => (None, None),
                    _ => (
                        None,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| bad("expected `:port` after `]`"))?,
                        ),
                    ),
                },
            };
            let net = match prefix {
                Some(len) => format!("{inside}/{len}"),
                None => inside.to_string(),
            };
            (net, port)
        } else if text.matches(':').count() == 1 {
            let (target, port) = text.split_once(':').expect("one colon");
            (target.to_string(), Some(port))
        } else {
            (text.to_string(), None)
        };
        let port = match port {
            None | Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            ),
        };
        let target = if let Ok(net) = target.parse::<IpNet>() {
            Target::Net(net.trunc())
        } else if let Ok(ip) = target.parse::<IpAddr>() {
            Target::Net(IpNet::from(canonical(ip)))
        } else if target.contains('/') {
            return Err(bad("the network is not a CIDR like 10.0.0.0/8"));
        } else {
            let name = target.trim_end_matches('.').to_ascii_lowercase();
            let (wild, name) = match name.strip_prefix("*.") {
                Some(rest) => (true, rest.to_string()),
                None => (false, name),
            };
            let valid = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !valid {
                return Err(bad("not a host name, an address or a CIDR"));
            }
            if wild {
                Target::Suffix(name)
            } else {
                Target::Host(name)
            }
        };
        Ok(Self { target, port })
    }

    fn matches(&self, host: &str, addr: SocketAddr) -> bool {
        if self.port.is_some_and(|p| p != addr.port()) {
            return false;
        }
        match &self.target {
            Target::Host(name) => host == name,
            Target::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.')),
            Target::Net(net) => net.contains(&canonical(addr.ip())),
        }
    }
}

/// Why an address was refused: shown to the guest and recorded in its oplog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

#[derive(Debug, Default)]
pub struct EgressPolicy {
    allow: Vec<AllowRule>,
    /// Addresses this node listens on (public, admin): refused unless a rule names them.
    own: RwLock<Vec<SocketAddr>>,
}

impl EgressPolicy {
    pub fn new(allow: Vec<AllowRule>) -> Self {
        Self {
            allow,
            own: RwLock::new(Vec::new()),
        }
    }

    pub fn add_own_listener(&self, addr: SocketAddr) {
        self.own.write().expect("never poisoned").push(addr);
    }

    /// Whether a request to `host` (as written in the URL) may connect to `addr`, one of the
    /// addresses it resolved to.
    pub fn check(&self, host: &str, addr: SocketAddr) -> Result<(), Refusal> {
        let host = normal_host(host);
        if self.allow.iter().any(|rule| rule.matches(&host, addr)) {
            return Ok(());
        }
        let ip = canonical(addr.ip());
        let shown = SocketAddr::new(ip, addr.port());
        let own = self.own.read().expect("never poisoned");
        if own.iter().any(|l| {
            l.port() == addr.port()
                && (canonical(l.ip()) == ip || (l.ip().is_unspecified() && is_local(ip)))
        }) {
            return Err(Refusal(format!(
                "refused by the egress policy: {host} resolves to {shown}, one of this node's \
                 own listeners (a rule in outgoing_http.allow would open it)"
            )));
        }
        if let Some(kind) = special(ip) {
            return Err(Refusal(format!(
                "refused by the egress policy: {host} resolves to {shown}, {kind} address \
                 (add it to outgoing_http.allow to reach it)"
            )));
        }
        Ok(())
    }
}

/// A URL's host as rules compare it: lower case, no brackets, no trailing dot.
fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// IPv4 addresses written as IPv6 (`::ffff:a.b.c.d`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether `ip` is one of this machine's addresses: binding a socket to it succeeds only then.
/// (The standard library lists no interfaces; this asks the kernel the one question needed.)
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The kind of a non-public address, or `None` for an address on the public internet.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u8) -> bool {
    ipnet::Ipv4Net::new(Ipv4Addr::from(net), len)
        .expect("valid prefix")
        .contains(&ip)
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    Some(if ip.is_loopback() {
        "a loopback"
    } else if ip.is_unspecified() || in_v4(ip, [0, 0, 0, 0], 8) {
        "an unspecified (\"this network\")"
    } else if ip.is_private() {
        "a private"
    } else if ip.is_link_local() {
        "a link-local"
    } else if in_v4(ip, [100, 64, 0, 0], 10) {
        "a shared (carrier-grade NAT)"
    } else if ip.is_multicast() {
        "a multicast"
    } else if ip.is_broadcast() || in_v4(ip, [240, 0, 0, 0], 4) {
        "a reserved"
    } else if in_v4(ip, [192, 0, 0, 0], 24) || in_v4(ip, [198, 18, 0, 0], 15) {
        "a special-purpose"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // Addresses that carry an IPv4 address are judged by it: NAT64 (64:ff9b::/96), 6to4
    // (2002::/16) and the deprecated IPv4-compatible form (::a.b.c.d).
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return special_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return special_v4(embedded(segments[1], segments[2]));
    }
    Some(if ip.is_loopback() {
        "a loopback"
    } else if ip.is_unspecified() {
        "an unspecified"
    } else if segments[..6] == [0; 6] {
        return special_v4(embedded(segments[6], segments[7])).or(Some("a reserved"));
    } else if ip.is_unique_local() {
        "a unique-local"
    } else if ip.is_unicast_link_local() || (segments[0] & 0xffc0) == 0xfec0 {
        "a link-local"
    } else if ip.is_multicast() {
        "a multicast"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        let policy = EgressPolicy::default();
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
        ] {
            let refused = policy.check("h", at(ip, 80));
            assert!(refused.is_err(), "{ip} is refused");
        }
        for ip in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
        ] {
            assert_eq!(policy.check("h", at(ip, 80)), Ok(()), "{ip} is public");
        }
    }

    #[test]
    fn the_refusal_names_the_address_and_its_kind() {
        let policy = EgressPolicy::default();
        let Refusal(message) = policy
            .check("LocalHost.", at("::ffff:127.0.0.1", 9000))
            .unwrap_err();
        assert!(
            message.contains("localhost resolves to 127.0.0.1:9000, a loopback address"),
            "{message}"
        );
        assert!(message.contains("outgoing_http.allow"), "{message}");
    }

    #[test]
    fn rules_open_hosts_networks_and_ports() {
        let rules = [
            "localhost:8080",
            "10.0.0.0/8",
            "[::1]:9000",
            "*.svc.local",
            "fd00::/8",
        ];
        let policy =
            EgressPolicy::new(rules.iter().map(|r| AllowRule::parse(r).unwrap()).collect());
        assert_eq!(policy.check("localhost", at("127.0.0.1", 8080)), Ok(()));
        assert!(policy.check("localhost", at("127.0.0.1", 8081)).is_err());
        assert!(policy.check("127.0.0.1", at("127.0.0.1", 8080)).is_err());
        assert_eq!(policy.check("x", at("10.9.9.9", 1)), Ok(()));
        assert_eq!(policy.check("x", at("::ffff:10.9.9.9", 1)), Ok(()));
        assert_eq!(policy.check("[::1]", at("::1", 9000)), Ok(()));
        assert!(policy.check("[::1]", at("::1", 9001)).is_err());
        assert_eq!(policy.check("a.svc.local", at("192.168.0.1", 80)), Ok(()));
        assert!(policy.check("svc.local", at("192.168.0.1", 80)).is_err());
        assert!(
            policy
                .check("evilsvc.local", at("192.168.0.1", 80))
                .is_err()
        );
        assert_eq!(policy.check("x", at("fd12::1", 443)), Ok(()));
    }

    #[test]
    fn own_listeners_are_refused_even_on_public_addresses() {
        let policy = EgressPolicy::default();
        policy.add_own_listener(at("93.184.215.14", 8081));
        assert!(policy.check("x", at("93.184.215.14", 8081)).is_err());
        assert_eq!(policy.check("x", at("93.184.215.14", 8080)), Ok(()));
        let allowed = EgressPolicy::new(vec![AllowRule::parse("127.0.0.1:8081").unwrap()]);
        allowed.add_own_listener(at("127.0.0.1", 8081));
        assert_eq!(allowed.check("127.0.0.1", at("127.0.0.1", 8081)), Ok(()));
    }

    #[test]
    fn bad_rules_say_why() {
        for (rule, why) in [
            ("", "empty"),
            ("host:99999", "port"),
            ("host:0", "port"),
            ("10.0.0.0/99", "CIDR"),
            ("[::1", "`]`"),
            ("bad host!", "host name"),
        ] {
            let e = AllowRule::parse(rule).unwrap_err();
            assert!(e.contains(why), "{rule}: {e}");
        }
        assert_eq!(
            AllowRule::parse("[fd00::]/8:443").unwrap(),
            AllowRule {
                target: Target::Net("fd00::/8".parse().unwrap()),
                port: Some(443)
            }
        );
    }
}
