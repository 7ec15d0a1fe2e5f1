//! Sizes as people write and read them.
//!
//! Size arguments: "4096", "4k", "64K", "2M", "2MiB", "1G", "1T" (binary multiples; the suffix
//! is case-blind and may end in "b", "ib" or "iB"), or hexadecimal "0x800000" as the C tools take
//! sizes.

/// Parses a size; errors name the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    // Leading blanks as strtoul skips them (shell arithmetic produces them); trailing ones too.
    let t = s.trim();
    // Hexadecimal, as the C tools take sizes (strtoull base 0): 0x800000.
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16)
            .map_err(|_| format!("invalid size {s:?}: bad hexadecimal number"));
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a number with an optional k/M/G/T suffix")
    })?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("invalid size suffix in {s:?}: use k, M, G or T")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Formats bytes for people (binary units).
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let good: &[(&str, u64)] = &[
            ("4096", 4096),
            ("4k", 4096),
            ("64K", 64 << 10),
            ("2M", 2 << 20),
            ("2MiB", 2 << 20),
            ("8G", 8 << 30),
            (" 1G", 1 << 30),
            ("1T ", 1 << 40),
            ("3b", 3),
            ("5kB", 5 << 10),
            ("0x800000", 0x80_0000),
            ("0X10", 16),
        ];
        for &(s, want) in good {
            assert_eq!(parse_size(s), Ok(want), "{s:?}");
        }
    }

    #[test]
    fn bad_sizes() {
        let bad: &[(&str, &str)] = &[
            ("", "expected a number"),
            ("x", "expected a number"),
            ("-1", "expected a number"),
            ("5Q", "use k, M, G or T"),
            ("2 M", "use k, M, G or T"),
            ("0xg", "bad hexadecimal"),
            ("99999999999999999999", "expected a number"),
            ("99999999T", "too large"),
        ];
        for &(s, why) in bad {
            let e = parse_size(s).expect_err(s);
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human(3 << 20), "3.0 MiB");
        assert_eq!(human(5), "5 B");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
