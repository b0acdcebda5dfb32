//! Which downstream a request goes to: the key of its breaker.

use http::header::HOST;

/// Makes the key of a request: the downstream whose breaker guards it.
///
/// [`Authority`] is the default for `http::Request`. Any `Fn(&Request, &mut String)` is one
/// too: it writes the key into the string it is given (empty when called), which the service
/// keeps from call to call, so making a key allocates nothing once the string has grown.
///
/// # Example
///
/// ```
/// use breakwater::circuit_breaker::keyed::MakeKey;
///
/// // One breaker per tenant, from a header.
/// let by_tenant = |request: &http::Request<()>, key: &mut String| {
///     let tenant = request.headers().get("x-tenant").and_then(|v| v.to_str().ok());
///     key.push_str(tenant.unwrap_or("unknown"));
/// };
/// let request = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// let mut key = String::new();
/// by_tenant.make_key(&request, &mut key);
/// assert_eq!(key, "acme");
/// ```
pub trait MakeKey<Request> {
    /// Writes the key of `request` into `key`, which is empty.
    fn make_key(&self, request: &Request, key: &mut String);
}

impl<F, Request> MakeKey<Request> for F
where
    F: Fn(&Request, &mut String),
{
    fn make_key(&self, request: &Request, key: &mut String) {
        self(request, key);
    }
}

/// The default key of an `http::Request`: its scheme and authority, with the scheme's default
/// port filled in and the host in lower case (`https://api.example.com:443`), so that
/// `https://API.example.com/` and `https://api.example.com:443/x` share a breaker.
///
/// When the URI has no authority (a request as a server sees it), the `Host` header gives it,
/// with the URI's scheme or `http`. A request with neither gets the empty key: one breaker for
/// all of them. User information in the authority is left out.
///
/// # Example
///
/// ```
/// use breakwater::circuit_breaker::keyed::{Authority, MakeKey};
///
/// let key = |request: http::Request<()>| {
///     let mut key = String::new();
///     Authority.make_key(&request, &mut key);
///     key
/// };
/// assert_eq!(key(http::Request::get("https://LOCALHOST/pay").body(()).unwrap()), "https://localhost:443");
/// assert_eq!(key(http::Request::get("http://[::1]:8080/").body(()).unwrap()), "http://[::1]:8080");
/// let proxied = http::Request::get("/pay").header("host", "pg.local:9000").body(()).unwrap();
/// assert_eq!(key(proxied), "http://pg.local:9000");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Authority;

impl<B> MakeKey<http::Request<B>> for Authority {
    fn make_key(&self, request: &http::Request<B>, key: &mut String) {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        let (host, port) = match uri.authority() {
            Some(authority) => (authority.host(), authority.port_u16()),
            None => match request.headers().get(HOST).and_then(|h| h.to_str().ok()) {
                Some(host) => split_host(host.trim()),
                None => return,
            },
        };
        if host.is_empty() {
            return;
        }
        key.push_str(scheme);
        key.push_str("://");
        key.push_str(host);
        // Scheme and host are case-insensitive; the key holds nothing else yet.
        key.make_ascii_lowercase();
        let port = port.or(match scheme {
            s if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("ws") => Some(80),
            s if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => Some(443),
            _ => None,
        });
        if let Some(port) = port {
            push_port(key, port);
        }
    }
}

/// `:port`, without the formatting machinery (this runs on every call).
fn push_port(key: &mut String, port: u16) {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut rest = port;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    key.push(':');
    for &digit in &digits[start..] {
        key.push(char::from(digit));
    }
}

/// `host` and `port` of a `Host` header: `name`, `name:port`, `[v6]` or `[v6]:port`.
fn split_host(header: &str) -> (&str, Option<u16>) {
    let (host, rest) = match header.strip_prefix('[') {
        Some(v6) => match v6.find(']') {
            Some(end) => (&header[..end + 2], &v6[end + 1..]),
            None => return (header, None),
        },
        None => match header.rsplit_once(':') {
            Some((host, _)) => (host, header.get(host.len()..).unwrap_or("")),
            None => (header, ""),
        },
    };
    let port = rest.strip_prefix(':').and_then(|p| p.parse().ok());
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(request: &http::Request<()>) -> String {
        let mut key = String::new();
        Authority.make_key(request, &mut key);
        key
    }

    #[test]
    fn authorities_are_normalised() {
        let get = |uri: &str| key_of(&http::Request::get(uri).body(()).unwrap());
        assert_eq!(get("http://Example.COM/a"), "http://example.com:80");
        assert_eq!(get("http://example.com:80/b"), "http://example.com:80");
        assert_eq!(
            get("https://user:pw@example.com/"),
            "https://example.com:443"
        );
        assert_eq!(get("https://example.com:8443"), "https://example.com:8443");
        assert_eq!(get("grpc://inventory:50051"), "grpc://inventory:50051");
        assert_eq!(get("ftp://files"), "ftp://files");
        assert_eq!(get("/relative"), "");
    }

    #[test]
    fn the_host_header_stands_in_for_a_missing_authority() {
        let with_host = |host: &str| {
            key_of(
                &http::Request::get("/x")
                    .header(HOST, host)
                    .body(())
                    .unwrap(),
            )
        };
        assert_eq!(with_host("Shop.example"), "http://shop.example:80");
        assert_eq!(with_host("shop.example:8080"), "http://shop.example:8080");
        assert_eq!(with_host("[::1]"), "http://[::1]:80");
        assert_eq!(with_host("[::1]:9000"), "http://[::1]:9000");
        assert_eq!(with_host(""), "");
        assert_eq!(split_host("[::1"), ("[::1", None));
        for port in [0, 7, 10, 80, 65_535] {
            let mut key = String::new();
            push_port(&mut key, port);
            assert_eq!(key, format!(":{port}"));
        }
    }
}
