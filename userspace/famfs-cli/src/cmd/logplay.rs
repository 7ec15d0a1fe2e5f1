//! `famfs logplay`, and its C-compatible `--shadow` tree.

use super::common::*;
use crate::dax::set_daxmode_fsdev;
use crate::target::Target;
use anyhow::{bail, Context, Result};
use clap::Args;
use famfs_meta::Access;
use std::path::{Path, PathBuf};

/// Play the log and report what it holds.
#[derive(Args, Debug)]
pub struct LogplayArgs {
    /// Dry run (report only).
    #[arg(short = 'n', long, visible_alias = "dryrun")]
    pub dry_run: bool,
    /// C famfs: play as a client. Accepted: our log play never writes, on any host.
    #[arg(short = 'c', long)]
    pub client: bool,
    /// With --shadow: read the superblock and log from this device or image (only with
    /// --shadow, as in C; otherwise use --device DEV).
    #[arg(short = 'd', long = "daxdev", value_name = "DEV")]
    pub daxdev: Option<PathBuf>,
    /// C famfs: read the log through mmap. Accepted: the only way here.
    #[arg(short = 'm', long)]
    pub mmap: bool,
    /// C famfs: read the log with read(2). Accepted: the log is always mapped here. Not with
    /// -m (as in C).
    #[arg(short = 'r', long, conflicts_with = "mmap")]
    pub read: bool,
    /// Play the log into the C famfs's shadow tree under PATH (an existing directory; the
    /// tree goes to PATH/root): a directory per logged directory and a YAML file per file.
    #[arg(short = 'S', long, value_name = "PATH")]
    pub shadow: Option<PathBuf>,
    /// With --shadow: read every shadow YAML file back and check it describes the logged
    /// file (always on with -d/--daxdev, as in C).
    #[arg(short = 's', long, requires = "shadow")]
    pub shadowtest: bool,
    /// Leave the devdax device bound to fsdev_dax afterwards (as the C famfs does; `famfs
    /// mount` in module mode needs it). The log is read in either mode.
    #[arg(long)]
    pub set_daxmode: bool,
    /// Mount point (not needed with --device).
    pub mpt: Option<PathBuf>,
}

pub fn run(cli: &GlobalArgs, a: &LogplayArgs) -> Result<bool> {
    let o = LogplayOpts {
        dry_run: a.dry_run,
        client: a.client,
        daxdev: &a.daxdev,
        mmap: a.mmap,
        read: a.read,
        shadow: &a.shadow,
        shadowtest: a.shadowtest,
        mpt: &a.mpt,
    };
    cmd_logplay(cli, &o)?;
    if a.set_daxmode {
        match a.daxdev.as_ref().or(cli.device.as_ref()) {
            Some(d) => set_daxmode_fsdev("famfs logplay", d)?,
            None => eprintln!("famfs logplay: note: --set-daxmode without a device (-d/--device DEV): nothing to rebind"),
        }
    }
    Ok(true)
}

/// Reads an xattr of `path` (a famfs mount's root answers `user.famfs.*`).
pub fn get_xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    let n = rustix::fs::getxattr(path, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

/// Options of `famfs logplay`.
struct LogplayOpts<'a> {
    dry_run: bool,
    client: bool,
    daxdev: &'a Option<PathBuf>,
    mmap: bool,
    read: bool,
    shadow: &'a Option<PathBuf>,
    shadowtest: bool,
    mpt: &'a Option<PathBuf>,
}

fn cmd_logplay(cli: &GlobalArgs, o: &LogplayOpts) -> Result<()> {
    if o.daxdev.is_some() && o.shadow.is_none() {
        bail!("logplay -d/--daxdev DEV is only used with --shadow (as in the C famfs); to play the log of a device or image, use --device DEV");
    }
    if let Some(dir) = o.shadow {
        return shadow_logplay(cli, o, dir);
    }
    note(
        "logplay",
        o.client,
        "-c/--client",
        "this log play never writes, on any host",
    );
    note("logplay", o.mmap, "-m/--mmap", "the log is always mapped");
    note(
        "logplay",
        o.read,
        "-r/--read",
        "the log is always mapped (and cache lines invalidated first)",
    );
    let device = cli.device.clone();
    let dry_run = o.dry_run;
    let mpt = o.mpt;
    let hint = mpt.clone().unwrap_or_else(|| PathBuf::from("."));
    if device.is_none() && !dry_run {
        // On a mount the server owns the namespace: ask it to play the log tail now.
        if let Some(m) = crate::target::find_mount(&hint) {
            let v = get_xattr(&m, "user.famfs.logplay").with_context(|| {
                format!(
                    "{}: cannot make the famfs server play the log (xattr user.famfs.logplay)",
                    m.display()
                )
            })?;
            println!(
                "{}: server {}",
                m.display(),
                String::from_utf8_lossy(&v).trim_end()
            );
        }
    }
    let t = Target::open(device.as_deref(), &hint, Access::ReadOnly)?;
    let ns = t.fs.namespace();
    println!(
        "{}played {} log entries: {} files, {} directories{}{}",
        if dry_run { "(dry run) " } else { "" },
        t.fs.played(),
        ns.file_count(),
        ns.dir_count(),
        match t.fs.daxdevs().len() {
            0 => String::new(),
            n => format!(", {n} ADD_DAXDEV"),
        },
        if t.mpt.is_some() {
            " (the FUSE server plays the log itself; nothing to instantiate)"
        } else {
            ""
        }
    );
    if cli.verbose > 0 {
        for n in ns.nodes().skip(1) {
            println!(
                "  {} /{}",
                if n.is_dir() { "dir " } else { "file" },
                ns.path_of(n.ino).unwrap_or_default()
            );
        }
        for d in t.fs.daxdevs() {
            println!("  {}", daxdev_line(d));
        }
    }
    for p in t.fs.problems() {
        println!("  warning: {p}");
    }
    Ok(())
}

/// `famfs logplay --shadow DIR`: the C famfs's shadow tree (crate::shadow), from --daxdev DEV,
/// --device DEV or the mount MPT. Existing files and directories are kept (a second run over the
/// same tree adds what the log gained). Errors are counted, reported, and make the exit code 1.
fn shadow_logplay(cli: &GlobalArgs, o: &LogplayOpts, dir: &Path) -> Result<()> {
    use crate::shadow::{shadow_file, shadow_root, ShadowFile, ShadowStats};
    use famfs_format::LogEntryBody;
    println!("Logplay: running in shadow test mode");
    let device = o.daxdev.clone().or_else(|| cli.device.clone());
    let test = o.shadowtest || o.daxdev.is_some();
    let hint = o.mpt.clone().unwrap_or_else(|| PathBuf::from("."));
    let t = Target::open(device.as_deref(), &hint, Access::ReadOnly)?;
    let root = shadow_root(dir)?;
    let sb = t.fs.superblock().clone();
    let mut st = ShadowStats::default();
    let mut errors: Vec<String> = Vec::new();
    let verbose = cli.verbose > 0;
    if !o.dry_run {
        // The meta files (not counted: the C tool counts them apart).
        let meta = root.join(".meta");
        if !meta.is_dir() {
            std::fs::create_dir(&meta)
                .with_context(|| format!("cannot create {}", meta.display()))?;
        }
        let mut mst = ShadowStats::default();
        let log_mode = if t.fs.role() == famfs_meta::Role::Master {
            0o644
        } else {
            0o444
        };
        let sbf = ShadowFile::meta(".meta/.superblock", 0, famfs_format::LOG_OFFSET, 0o444);
        let logf = ShadowFile::meta(".meta/.log", famfs_format::LOG_OFFSET, sb.log_len, log_mode);
        for (name, f) in [(".superblock", sbf), (".log", logf)] {
            if let Err(e) = shadow_file(&meta.join(name), &f, false, &mut mst, verbose) {
                errors.push(format!("{e:#}"));
            }
        }
    }
    let h = t.fs.log_header()?;
    for i in 0..h.next_index() {
        let entry =
            t.fs.media()
                .read_log_entry(&sb, i)
                .with_context(|| format!("log entry {i}"))?;
        st.entries += 1;
        match entry.body {
            LogEntryBody::File(f) => {
                if o.dry_run {
                    continue;
                }
                let path = root.join(f.path.as_str());
                if let Err(e) =
                    shadow_file(&path, &ShadowFile::of_entry(&f), test, &mut st, verbose)
                {
                    errors.push(format!("{e:#}"));
                }
            }
            LogEntryBody::Mkdir(d) => {
                if o.dry_run {
                    continue;
                }
                let path = root.join(d.path.as_str());
                match std::fs::symlink_metadata(&path) {
                    Ok(md) if md.is_dir() => st.dirs_existed += 1,
                    Ok(_) => {
                        st.dir_errors += 1;
                        errors.push(format!(
                            "{}: something other than a directory where one should be",
                            path.display()
                        ));
                    }
                    Err(_) => {
                        use std::os::unix::fs::DirBuilderExt;
                        let made = std::fs::DirBuilder::new()
                            .mode(d.mode & 0o7777)
                            .create(&path);
                        // As the C tool: the owner is set only when both ids are non-zero.
                        let owned = made.and_then(|()| {
                            if d.uid != 0 && d.gid != 0 {
                                std::os::unix::fs::chown(&path, Some(d.uid), Some(d.gid))
                            } else {
                                Ok(())
                            }
                        });
                        match owned {
                            Ok(()) => st.dirs_created += 1,
                            Err(e) => {
                                st.dir_errors += 1;
                                errors.push(format!(
                                    "cannot create directory {}: {e}",
                                    path.display()
                                ));
                            }
                        }
                    }
                }
            }
            LogEntryBody::Delete(d) if !o.dry_run => {
                // The shadow tree shows the namespace: a deleted node leaves it.
                let path = root.join(d.path.as_str());
                let _ = if d.is_dir() {
                    std::fs::remove_dir(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
            LogEntryBody::AddDaxdev(_) | LogEntryBody::Delete(_) | LogEntryBody::Reclaim(_) => {}
        }
    }
    println!(
        "famfs_logplay(shadow): {} log entries; {} new files; {} new directories",
        st.entries, st.files_created, st.dirs_created
    );
    if verbose {
        println!(
            "\tCreated:  {} files, {} directories",
            st.files_created, st.dirs_created
        );
        println!(
            "\tExisted: {} files, {} directories",
            st.files_existed, st.dirs_existed
        );
    }
    if st.file_errors > 0 || st.dir_errors > 0 {
        println!(
            "\t{} file errors and {} dir errors",
            st.file_errors, st.dir_errors
        );
    }
    if st.yaml_checked > 0 {
        println!("\tshadow yaml checked for {} files", st.yaml_checked);
        println!("\tthere were {} yaml errors detected", st.yaml_errors);
    }
    for e in &errors {
        eprintln!("famfs logplay: {e}");
    }
    if !errors.is_empty() {
        bail!(
            "{} errors playing the log into the shadow tree {}",
            errors.len(),
            root.display()
        );
    }
    Ok(())
}
