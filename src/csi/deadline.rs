//! The deadline of an RPC, taken from the caller's `grpc-timeout` header.
//!
//! Every external operation (SSH commands, mounts, device waits) runs under the deadline of
//! the RPC that asked for it, so nothing outlives its caller (docs/architecture.md, "Failure
//! handling in one place").

use std::time::Duration;

use tokio::time::Instant;

/// Used when the caller sent no deadline: long enough for a slow RDS, short enough that a
/// wedged call is noticed. The CSI sidecars always send one.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// Parses a `grpc-timeout` value: an integer of at most 8 digits and a unit (H M S m u n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (num, unit) = v.split_at(v.len() - 1);
    if !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The instant by which the RPC must answer: the caller's timeout less a small margin
/// (5%, at most 500 ms), so our DEADLINE_EXCEEDED naming the operation that ran out of time
/// reaches the caller before its own timer (and tonic's) cuts the call off with a bare
/// "Timeout expired".
pub fn of<T>(req: &tonic::Request<T>) -> Instant {
    let timeout = req
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(DEFAULT_RPC_TIMEOUT);
    let margin = (timeout / 20).min(Duration::from_millis(500));
    Instant::now() + (timeout - margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "10", "10x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deadline_follows_the_header() {
        let mut req = tonic::Request::new(());
        req.metadata_mut()
            .insert("grpc-timeout", "500m".parse().unwrap());
        let d = of(&req) - Instant::now();
        assert!(d <= Duration::from_millis(500) && d > Duration::from_millis(400));
        let d = of(&tonic::Request::new(())) - Instant::now();
        assert!(d > Duration::from_secs(100));
    }
}
