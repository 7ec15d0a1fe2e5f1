//! The `famfs` and `mkfs.famfs` command line tools (see Documentation/cli.md).

pub mod cmd;
pub mod dax;
pub mod devices;
pub mod famfs_cmd;
pub mod man;
pub mod mkfs_cmd;
pub mod pattern;
pub mod shadow;
pub mod target;

/// Exit code for operational errors (usage errors exit 2 through clap).
pub const EXIT_ERROR: i32 = 1;

/// Prints an error chain the way the tools do and returns the exit code. An error writing to a
/// standard output whose reader went away (`famfs ... | head`) is not printed: the tool ends
/// quietly, as a C tool killed by SIGPIPE does.
pub fn report(prog: &str, e: &anyhow::Error) -> i32 {
    if famfs_cmdline::pipe::is_broken_stdout(e.as_ref()) {
        return famfs_cmdline::pipe::EXIT_BROKEN_PIPE;
    }
    eprint!("{prog}: {e}");
    for c in e.chain().skip(1) {
        eprint!(": {c}");
    }
    eprintln!();
    EXIT_ERROR
}

/// Parses an octal mode.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("invalid mode {s:?}: expected octal, e.g. 0644"))?;
    if m > 0o7777 {
        return Err(format!("invalid mode {s:?}: at most 07777"));
    }
    Ok(m)
}

/// Parses a size argument for clap.
pub fn parse_size_arg(s: &str) -> Result<u64, String> {
    famfs_cmdline::size::parse_size(s)
}

/// Parses a number as C's `strtoul(s, NULL, 0)` reads one: leading blanks (what shell arithmetic
/// in C scripts produces), an optional `+`, then decimal, `0x` hexadecimal or `0` octal. Unlike
/// strtoul, trailing characters are refused rather than ignored, and a negative number or one
/// out of range is an error, not a wrapped value.
pub fn parse_c_ulong(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.strip_prefix('+').unwrap_or(t);
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (h, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        (&t[1..], 8)
    } else {
        (t, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "invalid number {s:?}: expected decimal, 0x hexadecimal or 0 octal digits"
        ));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("number {s:?} is too large"))
}

/// [`parse_c_ulong`] for a 32-bit value (uid, gid).
pub fn parse_c_u32(s: &str) -> Result<u32, String> {
    let n = parse_c_ulong(s)?;
    u32::try_from(n).map_err(|_| format!("number {s:?} is too large (at most {})", u32::MAX))
}

/// [`parse_c_ulong`] for a count (threads).
pub fn parse_c_usize(s: &str) -> Result<usize, String> {
    let n = parse_c_ulong(s)?;
    usize::try_from(n).map_err(|_| format!("number {s:?} is too large"))
}

/// A thread count as the C tools take it: 1 to 256.
pub fn parse_threadct(s: &str) -> Result<usize, String> {
    match parse_c_usize(s)? {
        n @ 1..=256 => Ok(n),
        n => Err(format!("thread count {n} out of range: 1 to 256")),
    }
}

/// `-?` is help, as in the C tools (until a `--`).
pub fn help_alias(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut seen_dashdash = false;
    args.into_iter()
        .map(|a| {
            if a == "--" {
                seen_dashdash = true;
            }
            if !seen_dashdash && a == "-?" {
                std::ffi::OsString::from("--help")
            } else {
                a
            }
        })
        .collect()
}
