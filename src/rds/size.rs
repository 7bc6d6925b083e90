//! Byte-exact sizes (docs/architecture.md, "Correctness rules", rule 1): round requests **up**, never down; render sizes in the
//! largest binary unit RouterOS accepts that divides them exactly; parse human sizes with
//! integer arithmetic only, so `1.5GiB` is exactly 1 610 612 736 bytes and `0.3KiB` is an error.

use thiserror::Error;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;
pub const PIB: u64 = 1 << 50;
pub const EIB: u64 = 1 << 60;

/// Smallest volume the driver creates. Requests below it (including "no preference", 0)
/// get this size: tiny file disks are useless and a filesystem needs room for metadata.
pub const MIN_VOLUME_BYTES: u64 = GIB;

/// Volumes are created in multiples of 1 MiB, so `routeros_size_arg` always renders them
/// with a unit suffix and RouterOS never has to round them.
pub const VOLUME_GRANULARITY: u64 = MIB;

/// Longest fractional part accepted; 10^30 still fits a u128 with room for the unit.
const MAX_FRACTION_DIGITS: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    #[error("size is empty")]
    Empty,
    #[error("size {input:?} is not a number with an optional binary unit (K, M, G, T, P, E, optionally followed by iB)")]
    Malformed { input: String },
    #[error("size {input:?} is not a whole number of bytes")]
    NotIntegral { input: String },
    #[error("size {input:?} does not fit in 64 bits")]
    Overflow { input: String },
    #[error("rounding granularity must be non-zero")]
    ZeroGranularity,
    #[error("rounding {bytes} bytes up to a multiple of {granularity} overflows 64 bits")]
    RoundingOverflow { bytes: u64, granularity: u64 },
    #[error("a volume of at least {required} bytes rounds up to {rounded} bytes, above the limit of {limit} bytes")]
    AboveLimit {
        required: u64,
        rounded: u64,
        limit: u64,
    },
}

/// Renders `bytes` for a RouterOS `file-size=` argument in the largest binary unit that
/// divides it exactly (`1073741824` → `1G`, `1610612736` → `1536M`, `1000` → `1000`).
/// Exactness matters: RouterOS would round a fractional size, and not necessarily up.
pub fn routeros_size_arg(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_string();
    }
    for (unit, suffix) in [(TIB, "T"), (GIB, "G"), (MIB, "M"), (KIB, "K")] {
        if bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Rounds `bytes` up to the next multiple of `granularity` (unchanged if already one).
pub fn round_up_to(bytes: u64, granularity: u64) -> Result<u64, SizeError> {
    if granularity == 0 {
        return Err(SizeError::ZeroGranularity);
    }
    let rem = bytes % granularity;
    if rem == 0 {
        return Ok(bytes);
    }
    bytes
        .checked_add(granularity - rem)
        .ok_or(SizeError::RoundingOverflow { bytes, granularity })
}

/// The size to create for a CSI capacity range: at least `required_bytes` and
/// [`MIN_VOLUME_BYTES`], rounded up to [`VOLUME_GRANULARITY`]; an error if that exceeds
/// `limit_bytes` (0 means no limit), because shrinking below the request is never allowed.
pub fn plan_volume_size(required_bytes: u64, limit_bytes: u64) -> Result<u64, SizeError> {
    let rounded = round_up_to(required_bytes.max(MIN_VOLUME_BYTES), VOLUME_GRANULARITY)?;
    if limit_bytes != 0 && rounded > limit_bytes {
        return Err(SizeError::AboveLimit {
            required: required_bytes,
            rounded,
            limit: limit_bytes,
        });
    }
    Ok(rounded)
}

/// Parses a size typed by a user (`100G`, `512M`, `1T`, `1.5GiB`, `4096`): binary units,
/// exact. Used for the simulator's `--pool-size`.
pub fn parse_user_size(input: &str) -> Result<u64, SizeError> {
    parse_scaled(input.trim())
}

/// Parses a size printed by RouterOS: `50.0GiB`, `1024.0MiB`, `512KiB`, a plain integer, or
/// a space-grouped integer (`7 949 127 950 336`).
pub fn parse_routeros_bytes(input: &str) -> Result<u64, SizeError> {
    let input = input.trim();
    if input.contains(' ') {
        return parse_grouped_u64(input).ok_or_else(|| SizeError::Malformed {
            input: input.to_string(),
        });
    }
    parse_scaled(input)
}

/// Parses an integer that RouterOS may print grouped by spaces (`53 687 091 200`): either
/// plain digits, or a 1–3 digit group followed by groups of exactly three digits separated by
/// single spaces. `None` on anything else, including overflow.
pub fn parse_grouped_u64(input: &str) -> Option<u64> {
    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    let mut groups = input.split(' ');
    let first = groups.next()?;
    if !digits(first) {
        return None;
    }
    let mut value: u64 = 0;
    for b in first.bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    let mut grouped = false;
    for group in groups {
        if group.len() != 3 || !digits(group) {
            return None;
        }
        let g = group
            .bytes()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
        value = value.checked_mul(1000)?.checked_add(g)?;
        grouped = true;
    }
    // A leading group is 1-3 digits; ungrouped digits may be any length.
    (!grouped || first.len() <= 3).then_some(value)
}

/// Renders an integer grouped by spaces in threes, as RouterOS prints `size=`.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Renders a size the way RouterOS prints `file-size=`: one decimal in the largest binary
/// unit not above it (`50.0GiB`), rounded half up. This is lossy, exactly like the real
/// output, which is why the model prefers the exact `size=` field.
pub fn human_size(bytes: u64) -> String {
    let units = [
        (EIB, "EiB"),
        (PIB, "PiB"),
        (TIB, "TiB"),
        (GIB, "GiB"),
        (MIB, "MiB"),
        (KIB, "KiB"),
    ];
    for (unit, suffix) in units {
        if bytes >= unit {
            let unit = u128::from(unit);
            let tenths = (u128::from(bytes) * 10 + unit / 2) / unit;
            return format!("{}.{}{suffix}", tenths / 10, tenths % 10);
        }
    }
    bytes.to_string()
}

fn unit_multiplier(suffix: &str) -> Option<u64> {
    let mut chars = suffix.chars();
    let letter = match chars.next() {
        None => return Some(1),
        Some(c) => c.to_ascii_uppercase(),
    };
    let rest = chars.as_str();
    if letter == 'B' {
        return rest.is_empty().then_some(1);
    }
    let unit = match letter {
        'K' => KIB,
        'M' => MIB,
        'G' => GIB,
        'T' => TIB,
        'P' => PIB,
        'E' => EIB,
        _ => return None,
    };
    // `GB` is refused on purpose: it is ambiguous between 10^9 and 2^30.
    matches!(rest, "" | "i" | "iB").then_some(unit)
}

fn parse_scaled(input: &str) -> Result<u64, SizeError> {
    if input.is_empty() {
        return Err(SizeError::Empty);
    }
    let malformed = || SizeError::Malformed {
        input: input.to_string(),
    };
    let number_end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let (number, suffix) = input.split_at(number_end);
    let unit = unit_multiplier(suffix).ok_or_else(malformed)?;
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty()
        || frac_part.contains('.')
        || (number.contains('.') && frac_part.is_empty())
    {
        return Err(malformed());
    }
    // Trailing zeros carry no value; dropping them keeps `50.000GiB` cheap and exact.
    let frac_part = frac_part.trim_end_matches('0');
    if frac_part.len() > MAX_FRACTION_DIGITS {
        return Err(malformed());
    }
    let overflow = || SizeError::Overflow {
        input: input.to_string(),
    };
    let mut mantissa: u128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    let scale = 10u128.pow(frac_part.len() as u32);
    let scaled = mantissa
        .checked_mul(u128::from(unit))
        .ok_or_else(overflow)?;
    if scaled % scale != 0 {
        return Err(SizeError::NotIntegral {
            input: input.to_string(),
        });
    }
    u64::try_from(scaled / scale).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_arg_uses_largest_exact_unit() {
        assert_eq!(routeros_size_arg(1_073_741_824), "1G");
        assert_eq!(routeros_size_arg(1_610_612_736), "1536M");
        assert_eq!(routeros_size_arg(1000), "1000");
        assert_eq!(routeros_size_arg(0), "0");
        assert_eq!(routeros_size_arg(2048), "2K");
        assert_eq!(routeros_size_arg(3 * TIB), "3T");
        assert_eq!(routeros_size_arg(PIB), "1024T");
        assert_eq!(routeros_size_arg(GIB + 512), "1073742336");
        assert_eq!(routeros_size_arg(GIB + KIB), "1048577K");
        assert_eq!(routeros_size_arg(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn size_arg_round_trips_through_user_parser() {
        for bytes in [
            1,
            512,
            1000,
            KIB,
            1_610_612_736,
            5 * TIB,
            GIB + 512,
            u64::MAX,
        ] {
            assert_eq!(parse_user_size(&routeros_size_arg(bytes)), Ok(bytes));
        }
    }

    #[test]
    fn rounding_goes_up_never_down() {
        assert_eq!(round_up_to(0, MIB), Ok(0));
        assert_eq!(round_up_to(1, MIB), Ok(MIB));
        assert_eq!(round_up_to(MIB, MIB), Ok(MIB));
        assert_eq!(round_up_to(MIB + 1, MIB), Ok(2 * MIB));
        assert_eq!(round_up_to(5, 0), Err(SizeError::ZeroGranularity));
        assert_eq!(
            round_up_to(u64::MAX, MIB),
            Err(SizeError::RoundingOverflow {
                bytes: u64::MAX,
                granularity: MIB
            })
        );
    }

    #[test]
    fn one_and_a_half_gib_request_never_yields_one_gib() {
        let planned = plan_volume_size(GIB + GIB / 2, 0).unwrap();
        assert_eq!(planned, 1_610_612_736);
        assert_eq!(routeros_size_arg(planned), "1536M");
        // One byte over a MiB boundary rounds up a whole MiB.
        assert_eq!(plan_volume_size(2 * GIB + 1, 0), Ok(2 * GIB + MIB));
    }

    #[test]
    fn small_and_empty_requests_get_the_minimum() {
        assert_eq!(plan_volume_size(0, 0), Ok(MIN_VOLUME_BYTES));
        assert_eq!(plan_volume_size(1, 0), Ok(MIN_VOLUME_BYTES));
        assert_eq!(plan_volume_size(0, 2 * GIB), Ok(MIN_VOLUME_BYTES));
    }

    #[test]
    fn limit_below_the_rounded_size_is_refused() {
        assert_eq!(
            plan_volume_size(GIB + 1, GIB + 2),
            Err(SizeError::AboveLimit {
                required: GIB + 1,
                rounded: GIB + MIB,
                limit: GIB + 2
            })
        );
        assert!(plan_volume_size(0, 512 * MIB).is_err());
        assert_eq!(plan_volume_size(GIB + 1, GIB + MIB), Ok(GIB + MIB));
        assert!(matches!(
            plan_volume_size(u64::MAX, 0),
            Err(SizeError::RoundingOverflow { .. })
        ));
    }

    #[test]
    fn user_sizes_parse_in_binary_units() {
        assert_eq!(parse_user_size("100G"), Ok(100 * GIB));
        assert_eq!(parse_user_size("512M"), Ok(512 * MIB));
        assert_eq!(parse_user_size("1T"), Ok(TIB));
        assert_eq!(parse_user_size("4096"), Ok(4096));
        assert_eq!(parse_user_size(" 2GiB "), Ok(2 * GIB));
        assert_eq!(parse_user_size("3Gi"), Ok(3 * GIB));
        assert_eq!(parse_user_size("1k"), Ok(KIB));
        assert_eq!(parse_user_size("10B"), Ok(10));
        assert_eq!(
            parse_user_size("16E"),
            Err(SizeError::Overflow {
                input: "16E".into()
            })
        );
        assert_eq!(parse_user_size("15E"), Ok(15 * EIB));
        for bad in [
            "", "G", "1GB", "1X", "-1G", "1 G", "1.G", ".5G", "1.2.3G", "1GiBB", "0x10",
        ] {
            assert!(parse_user_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn human_sizes_are_exact_or_refused() {
        assert_eq!(parse_routeros_bytes("50.0GiB"), Ok(50 * GIB));
        assert_eq!(parse_routeros_bytes("1024.0MiB"), Ok(GIB));
        assert_eq!(parse_routeros_bytes("10.0GiB"), Ok(10 * GIB));
        assert_eq!(parse_routeros_bytes("512KiB"), Ok(512 * KIB));
        assert_eq!(parse_routeros_bytes("1.5TiB"), Ok(TIB + TIB / 2));
        assert_eq!(parse_routeros_bytes("0.5KiB"), Ok(512));
        assert_eq!(
            parse_routeros_bytes("7 949 127 950 336"),
            Ok(7_949_127_950_336)
        );
        assert_eq!(parse_routeros_bytes("53687091200"), Ok(53_687_091_200));
        assert_eq!(
            parse_routeros_bytes("0.3KiB"),
            Err(SizeError::NotIntegral {
                input: "0.3KiB".into()
            })
        );
        assert_eq!(
            parse_routeros_bytes("1.0001B"),
            Err(SizeError::NotIntegral {
                input: "1.0001B".into()
            })
        );
        for bad in [
            "7 94 127",
            "1 0000",
            " ",
            "12 345GiB",
            "1,5GiB",
            "18 446 744 073 709 551 616",
        ] {
            assert!(
                parse_routeros_bytes(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(
            parse_routeros_bytes("18 446 744 073 709 551 615"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn grouping_renders_like_routeros() {
        assert_eq!(group_digits(53_687_091_200), "53 687 091 200");
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1 000");
        assert_eq!(group_digits(u64::MAX), "18 446 744 073 709 551 615");
        for v in [0, 7, 1000, 123_456, 7_949_127_950_336, u64::MAX] {
            assert_eq!(parse_grouped_u64(&group_digits(v)), Some(v));
        }
    }

    #[test]
    fn human_rendering_matches_routeros_samples() {
        assert_eq!(human_size(50 * GIB), "50.0GiB");
        assert_eq!(human_size(100 * GIB), "100.0GiB");
        assert_eq!(human_size(GIB + GIB / 2), "1.5GiB");
        assert_eq!(human_size(512), "512");
        assert_eq!(human_size(u64::MAX), "16.0EiB");
    }
}
