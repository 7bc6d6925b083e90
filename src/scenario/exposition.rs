//! Reading one sample out of a Prometheus text exposition (a plugin's `/metrics`).

/// The value of the series `series` (`name{labels}` exactly as exposed, or a bare name),
/// `None` when the exposition has no such series or its value is not a number.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP rds_csi_migration_migrations_total Migrations.\n\
        # TYPE rds_csi_migration_migrations_total counter\n\
        rds_csi_migration_migrations_total{result=\"failure\"} 0\n\
        rds_csi_migration_migrations_total{result=\"success\"} 2\n\
        rds_csi_migration_active_migrations 1\n\
        rds_csi_migration_active_migrations_peak 4\n\
        rds_csi_up 1 1700000000000\n";

    #[test]
    fn the_exact_series_is_read() {
        assert_eq!(
            sample(
                TEXT,
                "rds_csi_migration_migrations_total{result=\"success\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(TEXT, "rds_csi_migration_active_migrations"),
            Some(1.0)
        );
        assert_eq!(
            sample(TEXT, "rds_csi_up"),
            Some(1.0),
            "a timestamp is not the value"
        );
    }

    #[test]
    fn a_prefix_or_missing_series_is_none() {
        assert_eq!(sample(TEXT, "rds_csi_migration_migrations_total"), None);
        assert_eq!(sample(TEXT, "rds_csi_nothing"), None);
        assert_eq!(sample("x{a=\"b\"} NaNa", "x{a=\"b\"}"), None);
    }
}
