//! Parsing of listen addresses given on the command line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the CSI gRPC server listens: `unix:///path/to.sock` or `tcp://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "expected unix:///absolute/path.sock or tcp://host:port";
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!("{EXPECTED} (the unix path must be absolute)"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    return Ok(Endpoint::Tcp(addr.to_owned()))
                }
                _ => return Err(format!("{EXPECTED} (bad host:port {addr:?})")),
            }
        }
        Err(EXPECTED.to_owned())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The metrics/health listen address: `host:port`, `:port` (all interfaces), or empty (off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsAddress(pub Option<SocketAddr>);

impl FromStr for MetricsAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(MetricsAddress(None));
        }
        let full = if s.starts_with(':') {
            format!("0.0.0.0{s}")
        } else {
            s.to_owned()
        };
        full.parse::<SocketAddr>()
            .map(|a| MetricsAddress(Some(a)))
            .map_err(|_| "expected host:port, :port, or empty to disable (e.g. :9809)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:///csi/csi.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/csi/csi.sock".into())
        );
        assert_eq!(
            "tcp://127.0.0.1:10000".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("127.0.0.1:10000".into())
        );
        for bad in [
            "",
            "/csi/csi.sock",
            "unix://relative.sock",
            "tcp://host",
            "tcp://:1",
            "http://x:1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn metrics_addresses_parse() {
        assert_eq!("".parse::<MetricsAddress>().unwrap(), MetricsAddress(None));
        assert_eq!(
            ":9809".parse::<MetricsAddress>().unwrap().0.unwrap().port(),
            9809
        );
        assert!("127.0.0.1:1".parse::<MetricsAddress>().unwrap().0.is_some());
        assert!("nope".parse::<MetricsAddress>().is_err());
    }
}
