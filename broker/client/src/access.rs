//! Access points (`-n host:port;host:port`) and connections: the one place that decides how a
//! tool reaches a broker node.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, error_chain};

/// How long to wait for a TCP connection to one address before giving up on it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The environment variable RocketMQ's tools read when `-n` is not given.
const ACCESS_POINT_ENV: &str = "NAMESRV_ADDR";

/// The addresses of `flag` (a tool's `-n`), or of `$NAMESRV_ADDR` when it is absent, in order.
///
/// # Errors
/// [`ClientError::NoAccessPoint`] when neither is set; see [`parse_access_point`].
pub fn access_point(flag: Option<&str>) -> Result<Vec<String>, ClientError> {
    match flag {
        Some(raw) => parse_access_point(raw),
        None => {
            let raw = std::env::var(ACCESS_POINT_ENV).map_err(|_| ClientError::NoAccessPoint)?;
            parse_access_point(&raw)
        }
    }
}

/// The `;`-separated addresses of `raw`, trimmed, empty entries dropped, in order.
///
/// # Errors
/// [`ClientError::EmptyAccessPoint`] when no address remains.
pub fn parse_access_point(raw: &str) -> Result<Vec<String>, ClientError> {
    let addrs: Vec<String> = raw
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::EmptyAccessPoint {
            raw: raw.to_string(),
        });
    }
    Ok(addrs)
}

/// An endpoint for `addr` (`host:port`, or a URI with a scheme) with the connect timeout and
/// `TCP_NODELAY` every client uses; callers may override either before connecting.
///
/// # Errors
/// [`ClientError::BadAddress`] when `addr` makes no URI.
pub fn endpoint(addr: &str) -> Result<Endpoint, ClientError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|source| ClientError::BadAddress {
        addr: addr.to_string(),
        source,
    })?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// A connected channel to `addr`.
///
/// # Errors
/// [`ClientError::BadAddress`], or [`ClientError::Connect`] when no connection was made.
#[tracing::instrument(level = "debug", skip_all, fields(addr = %addr))]
pub async fn connect(addr: &str) -> Result<Channel, ClientError> {
    endpoint(addr)?
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// The first of `addrs` that accepts a connection, and its channel.
///
/// # Errors
/// [`ClientError::NoneReachable`] with every address's failure.
pub async fn first_reachable(addrs: &[String]) -> Result<(String, Channel), ClientError> {
    let mut failures = Vec::new();
    for addr in addrs {
        match connect(addr).await {
            Ok(channel) => return Ok((addr.clone(), channel)),
            Err(e) => failures.push(error_chain(&e)),
        }
    }
    Err(ClientError::NoneReachable { failures })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn access_points_split_on_semicolons() {
        let addrs = parse_access_point(" a:1; ;b:2;").unwrap();
        assert_eq!(addrs, ["a:1", "b:2"]);
        assert_eq!(parse_access_point("c:3").unwrap(), ["c:3"]);
        let empty = parse_access_point(";").unwrap_err();
        assert!(matches!(&empty, ClientError::EmptyAccessPoint { raw } if raw == ";"));
        assert!(empty.to_string().contains("-n"));
    }

    #[test]
    fn a_flag_wins_over_the_environment() {
        // Whatever $NAMESRV_ADDR holds in the test environment, the flag decides.
        assert_eq!(access_point(Some("x:1")).unwrap(), ["x:1"]);
    }

    #[test]
    fn endpoints_take_bare_addresses_and_uris() {
        let bare = endpoint("127.0.0.1:9").unwrap();
        assert_eq!(bare.uri().scheme_str(), Some("http"));
        assert_eq!(bare.uri().port_u16(), Some(9));
        assert_eq!(
            endpoint("https://h:1").unwrap().uri().scheme_str(),
            Some("https")
        );
        assert!(matches!(
            endpoint("bad address"),
            Err(ClientError::BadAddress { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_addresses_are_all_reported() {
        // Port 1 on loopback refuses connections.
        let addrs = vec!["127.0.0.1:1".to_string(), "127.0.0.1:1".to_string()];
        let err = first_reachable(&addrs).await.unwrap_err();
        let ClientError::NoneReachable { failures } = &err else {
            panic!("{err}");
        };
        assert_eq!(failures.len(), 2);
        assert!(
            failures[0].starts_with("cannot connect to 127.0.0.1:1: "),
            "{err}"
        );
    }
}
