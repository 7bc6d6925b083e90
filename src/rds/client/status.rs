//! What the RDS says about itself: its identity (the health probe) and the pool's capacity.

use tokio::time::Instant;

use super::{unparsable, RdsClient};
use crate::rds::command::Command;
use crate::rds::error::RdsError;
use crate::rds::model::PoolCapacity;
use crate::rds::parse::parse_items;

impl RdsClient {
    /// `/system identity print`: proves the RDS answers; returns its identity name.
    pub async fn health(&self, deadline: Instant) -> Result<String, RdsError> {
        let cmd = Command::identity();
        let out = self.read(&cmd, deadline).await?;
        out.lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("name:").or_else(|| l.strip_prefix("name="))
            })
            .map(|v| v.trim().trim_matches('"').to_string())
            .next()
            .ok_or_else(|| unparsable(&cmd, format!("no `name:` line in {out:?}")))
    }

    /// Size and free space of the configured pool.
    pub async fn pool_capacity(&self, deadline: Instant) -> Result<PoolCapacity, RdsError> {
        let cmd = Command::pool_capacity(&self.inner.cfg.pool);
        let out = self.read(&cmd, deadline).await?;
        let items = parse_items(&out).map_err(|e| unparsable(&cmd, e))?;
        let pool = PoolCapacity::from_items(&items).map_err(|e| unparsable(&cmd, e))?;
        // Saturating: a pool over 8 EiB shows as i64::MAX rather than wrapping negative.
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.inner.metrics.pool_size.set(gauge(pool.size));
        self.inner.metrics.pool_free.set(gauge(pool.free));
        Ok(pool)
    }
}
