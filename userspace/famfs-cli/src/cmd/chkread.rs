//! `famfs chkread`.

use super::common::*;
use anyhow::{bail, Context, Result};
use clap::Args;
use famfs_format::format_uuid;
use std::path::{Path, PathBuf};

/// Read a meta file (.meta/.superblock or .meta/.log, or a copy of one) and check it.
#[derive(Args, Debug)]
pub struct ChkreadArgs {
    /// FILE must be a superblock (C famfs -s); its fields are printed as C prints them.
    #[arg(short = 's', long, conflicts_with = "log")]
    pub superblock: bool,
    /// FILE must be a log (C famfs -l); its header is printed as C prints it.
    #[arg(short = 'l', long)]
    pub log: bool,
    /// The file.
    pub file: PathBuf,
}

pub fn run(_: &GlobalArgs, a: &ChkreadArgs) -> Result<bool> {
    cmd_chkread(&a.file, a.superblock, a.log)
}

/// `famfs chkread`: checks a superblock or log meta file (or a copy of one).
fn cmd_chkread(file: &Path, want_sb: bool, want_log: bool) -> Result<bool> {
    use famfs_format::{
        LogEntry, LogHeader, Superblock, LOG_ENTRY_SIZE, LOG_HEADER_SIZE, LOG_MAGIC, SB_MAGIC,
    };
    let b = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let word = |at: usize| {
        b.get(at..at + 8)
            .map(|m| u64::from_le_bytes(m.try_into().unwrap_or_default()))
            .unwrap_or(0)
    };
    let magic = word(0);
    if want_sb && magic != SB_MAGIC {
        bail!(
            "{}: -s: not a famfs superblock (magic {magic:#x}, want {SB_MAGIC:#x})",
            file.display()
        );
    }
    if want_log && magic != LOG_MAGIC {
        bail!(
            "{}: -l: not a famfs log (magic {magic:#x}, want {LOG_MAGIC:#x})",
            file.display()
        );
    }
    if magic == SB_MAGIC {
        let sb = Superblock::decode(&b)
            .with_context(|| format!("{}: bad superblock", file.display()))?;
        if want_sb {
            println!("famfs superblock:");
            println!("\tmagic:       {magic:x}");
            println!("\tversion:     {}", word(8));
            println!("\tlog offset:  {}", word(16));
            println!("\tlog len:     {}", sb.log_len);
        }
        println!(
            "{}: valid superblock (fs uuid {}, log {} bytes, device {} bytes)",
            file.display(),
            format_uuid(&sb.fs_uuid),
            sb.log_len,
            sb.device_size
        );
        return Ok(true);
    }
    if magic == LOG_MAGIC {
        let len = word(8);
        let h = LogHeader::decode(&b, len)
            .with_context(|| format!("{}: bad log header", file.display()))?;
        let n = h.next_index();
        if want_log {
            println!("famfs log:");
            println!("\tmagic:      {magic:x}");
            println!("\tlen:        {len}");
            println!("\tlast index: {}", word(16));
            println!("\tnext index: {n}");
        }
        let mut bad = 0;
        for i in 0..n {
            let off = LOG_HEADER_SIZE + i as usize * LOG_ENTRY_SIZE;
            let ok = b
                .get(off..off + LOG_ENTRY_SIZE)
                .is_some_and(|e| LogEntry::decode(e, i).is_ok());
            if !ok {
                println!("  entry {i}: damaged");
                bad += 1;
            }
        }
        println!("{}: log with {n} entries, {bad} damaged", file.display());
        return Ok(bad == 0);
    }
    bail!(
        "{}: neither a famfs superblock nor a famfs log (magic {magic:#x})",
        file.display()
    )
}
