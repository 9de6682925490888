//! Who may use the admin API: a request must carry the admin token as a bearer token, name the
//! admin listener in its `Host` (a page on another origin that rebinds its DNS name to
//! 127.0.0.1 sends its own name), and, when it changes anything, carry no `Origin` (browsers
//! add one to cross-site requests; the CLI and scripts do not). The token is compared in
//! constant time.

use crate::ApiError;
use crate::error::ErrorCode;
use http::{Method, Request, header};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

/// Shortest admin token accepted: a generated one has 64 characters; a set one must still be
/// long enough that it cannot be guessed over the network.
pub const TOKEN_CHARS_MIN: usize = 32;

pub struct Access {
    /// SHA-256 of the token: compared digest to digest, so neither the token's bytes nor its
    /// length show in the comparison's time.
    token_digest: [u8; 32],
    port: u16,
    /// Names (lower case) accepted in `Host` besides IP addresses and `localhost`.
    hosts: Vec<String>,
}

impl Access {
    pub fn new(token: &str, listener: SocketAddr, hosts: Vec<String>) -> Self {
        Self {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            port: listener.port(),
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    pub fn check<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        self.check_host(request)?;
        let changes = !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if changes && request.headers().contains_key(header::ORIGIN) {
            return Err(ApiError::new(
                ErrorCode::OriginRefused,
                "the admin API does not take state-changing requests from browsers \
                 (the request has an `Origin` header)",
            ));
        }
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the admin API needs `Authorization: Bearer <admin token>` (admin.token, \
                     REVENANT_ADMIN_TOKEN, or the file <data>/admin.token)",
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.token_digest)) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InvalidToken,
                "the bearer token is not the admin token",
            ))
        }
    }

    /// The `Host` check alone: what the health endpoints ask of a request (they say nothing a
    /// supervisor without the token may not know).
    pub fn check_host<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        // HTTP/2 carries the host in the URI's authority; HTTP/1.1 in `Host`.
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let refused = || {
            ApiError::new(
                ErrorCode::HostRefused,
                format!(
                    "`Host: {host}` is not this admin listener (an address or localhost with \
                     port {}, or a name in admin.hosts)",
                    self.port
                ),
            )
        };
        let authority: http::uri::Authority = host.parse().map_err(|_| refused())?;
        if authority.port_u16() != Some(self.port) {
            return Err(refused());
        }
        let name = authority.host().to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        // An address cannot be rebound; a name can, unless it is ours.
        let ours = literal.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || self
                .hosts
                .iter()
                .any(|h| *h == name || *h == host.to_ascii_lowercase());
        if ours { Ok(()) } else { Err(refused()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new(
            "0123456789abcdef0123456789abcdef",
            "127.0.0.1:8081".parse().unwrap(),
            vec!["Admin.Internal".into()],
        )
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/components");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    const GOOD: &str = "Bearer 0123456789abcdef0123456789abcdef";

    #[test]
    fn the_token_is_required_and_must_match() {
        let a = access();
        let code = |h: &[(&str, &str)]| a.check(&request("GET", h)).err().map(|e| e.code);
        let host = ("host", "127.0.0.1:8081");
        assert_eq!(code(&[host]), Some(ErrorCode::Unauthenticated));
        assert_eq!(
            code(&[host, ("authorization", "Bearer wrong")]),
            Some(ErrorCode::InvalidToken)
        );
        assert_eq!(
            code(&[
                host,
                ("authorization", "Basic 0123456789abcdef0123456789abcdef")
            ]),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(code(&[host, ("authorization", GOOD)]), None);
    }

    #[test]
    fn only_this_listener_as_host() {
        let a = access();
        let auth = ("authorization", GOOD);
        let code = |host: &str| {
            a.check(&request("GET", &[("host", host), auth]))
                .err()
                .map(|e| e.code)
        };
        for ok in [
            "127.0.0.1:8081",
            "localhost:8081",
            "[::1]:8081",
            "admin.internal:8081",
        ] {
            assert_eq!(code(ok), None, "{ok}");
        }
        for bad in [
            "evil.example:8081",
            "127.0.0.1:8080",
            "localhost",
            "127.0.0.1",
            "a b",
        ] {
            assert_eq!(code(bad), Some(ErrorCode::HostRefused), "{bad}");
        }
    }

    #[test]
    fn browsers_cannot_change_anything() {
        let a = access();
        let with_origin = [
            ("host", "127.0.0.1:8081"),
            ("authorization", GOOD),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(
            a.check(&request("POST", &with_origin))
                .err()
                .map(|e| e.code),
            Some(ErrorCode::OriginRefused)
        );
        assert!(a.check(&request("GET", &with_origin)).is_ok());
    }
}
