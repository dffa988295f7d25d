//! `--metrics-addr`: the process's `metrics` recorder as a Prometheus
//! endpoint (`GET /metrics`), for `run` and `worker`.

use crate::Failure;
use backplane_host::observe::metrics::SECONDS_BUCKETS;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};

/// `ADDR` as a socket address: a port alone is loopback (`9464` is
/// `127.0.0.1:9464`); otherwise `host:port`.
pub fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    addr.to_socket_addrs()
        .map_err(|e| format!("`{addr}` is not an address to serve metrics at: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}` resolves to no address"))
}

/// Installs the Prometheus recorder and serves it at `addr` (on a thread
/// of the exporter's own, so a busy run still answers); returns the address
/// bound (port 0 picks one).
pub fn serve(addr: &str) -> Result<SocketAddr, Failure> {
    let invalid = |e: String| Failure::Invalid(format!("error: --metrics-addr: {e}"));
    let wanted = parse_addr(addr).map_err(invalid)?;
    // Bind here first: a taken port is an error now, not a warning later.
    let listener = TcpListener::bind(wanted)
        .map_err(|e| Failure::Environment(format!("error: --metrics-addr: cannot listen on {wanted}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Failure::Environment(format!("error: --metrics-addr: {e}")))?;
    drop(listener);
    PrometheusBuilder::new()
        .with_http_listener(bound)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| b.install())
        .map_err(|e| Failure::Environment(format!("error: --metrics-addr: cannot serve metrics at {bound}: {e}")))?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::parse_addr;

    #[test]
    fn a_port_alone_binds_loopback_only() {
        assert_eq!(parse_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert!(parse_addr("not an address").unwrap_err().contains("is not an address"));
    }
}
