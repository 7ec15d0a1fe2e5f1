//! The `famfs` and `mkfs.famfs` command line tools (see Documentation/cli.md).

pub mod devices;
pub mod famfs_cmd;
pub mod man;
pub mod mkfs_cmd;
pub mod pattern;
pub mod size;
pub mod target;

/// Exit code for operational errors (usage errors exit 2 through clap).
pub const EXIT_ERROR: i32 = 1;

/// Prints an error chain the way the tools do and returns the exit code.
pub fn report(prog: &str, e: &anyhow::Error) -> i32 {
    eprint!("{prog}: {e}");
    for c in e.chain().skip(1) {
        eprint!(": {c}");
    }
    eprintln!();
    EXIT_ERROR
}

/// Parses an octal mode.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| format!("invalid mode {s:?}: expected octal, e.g. 0644"))?;
    if m > 0o7777 {
        return Err(format!("invalid mode {s:?}: at most 07777"));
    }
    Ok(m)
}

/// Parses a size argument for clap.
pub fn parse_size_arg(s: &str) -> Result<u64, String> {
    size::parse_size(s)
}
