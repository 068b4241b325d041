//! Token buckets per client key (an address, or a participant token), and who the client
//! is behind a trusted reverse proxy.

use std::collections::HashMap;
use std::net::IpAddr;

use actix_web::dev::ServiceRequest;
use ipnet::IpNet;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Past this many tracked clients, buckets that have refilled are forgotten.
const MAX_TRACKED: usize = 100_000;

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate_per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the client must slow down.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > MAX_TRACKED {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's address as a trusted proxy reports it, or `None` to keep the peer address
/// (no proxies configured, a peer that is not one of them, or no usable header). The
/// `Forwarded` header wins over `X-Forwarded-For`; the chain is read from the right, and the
/// first hop that is not itself a trusted proxy is the client (a client cannot forge the
/// hops its proxies append).
pub fn forwarded_client(req: &ServiceRequest, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !is_trusted(peer, proxies) {
        return None;
    }
    let header = |name: &str| {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let hops: Vec<Option<IpAddr>> = if let Some(fwd) = header("forwarded") {
        fwd.split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                })
            })
            .collect()
    } else {
        header("x-forwarded-for")?
            .split(',')
            .map(parse_hop)
            .collect()
    };
    let mut client = None;
    for hop in hops.into_iter().rev() {
        let ip = hop?;
        client = Some(ip);
        if !is_trusted(ip, proxies) {
            break;
        }
    }
    client
}

fn is_trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let v = raw.trim().trim_matches('"');
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn client(headers: &[(&str, &str)], peer: &str) -> Option<IpAddr> {
        let proxies = vec![
            crate::config::parse_cidr("10.0.0.0/8").expect("cidr"),
            crate::config::parse_cidr("127.0.0.1").expect("ip"),
        ];
        let mut req = TestRequest::default().peer_addr(peer.parse().expect("peer"));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        forwarded_client(&req.to_srv_request(), &proxies)
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        // A proxy appends the address it saw; what the client wrote on the left is ignored.
        let xff = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.2.3")];
        assert_eq!(client(&xff, "127.0.0.1:5000"), ip("203.0.113.7"));
        // The same header from a stranger is not believed.
        assert_eq!(client(&xff, "198.51.100.1:5000"), None);
        let fwd = [("Forwarded", "for=\"[2001:db8::1]:4711\";proto=https")];
        assert_eq!(client(&fwd, "10.9.9.9:1"), ip("2001:db8::1"));
        assert_eq!(client(&[("X-Forwarded-For", "junk")], "127.0.0.1:1"), None);
        assert_eq!(client(&[], "127.0.0.1:1"), None);
    }

    #[test]
    fn burst_then_refused_per_key() {
        let limiter = RateLimiter::new(0.001, 3.0);
        assert!((0..3).all(|_| limiter.allow("a")));
        assert!(!limiter.allow("a"));
        assert!(limiter.allow("b"));
    }
}
