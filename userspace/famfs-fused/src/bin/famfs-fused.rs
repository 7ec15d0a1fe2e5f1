//! famfs-fused: mount a famfs device or image through FUSE (Documentation/fuse-server.md).
//!
//! Without `-f` it daemonizes and returns only when the mount works (the meta files are
//! visible), printing role and mode; it exits non-zero with the error otherwise.

use anyhow::{bail, Context, Result};
use clap::Parser;
use famfs_fused::cli::Args;
use famfs_fused::{check_mountable, Server, ServerOptions, Stats};
use nix::sys::signal::{SigSet, Signal};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The server's logger: env_logger on stderr, until the daemon detaches from its terminal; from
/// then on (unless --log-file keeps stderr) syslog (facility daemon, ident famfs-fused), which the
/// journal collects, so that errors of a detached server can be found
/// (`journalctl -t famfs-fused`).
struct ServerLog {
    stderr: env_logger::Logger,
    syslog: AtomicBool,
}

static LOGGER: std::sync::OnceLock<ServerLog> = std::sync::OnceLock::new();

impl log::Log for ServerLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.stderr.enabled(m)
    }

    fn log(&self, r: &log::Record) {
        if !self.stderr.matches(r) {
            return;
        }
        if self.syslog.load(Ordering::Relaxed) {
            use nix::syslog::Severity as S;
            let sev = match r.level() {
                log::Level::Error => S::LOG_ERR,
                log::Level::Warn => S::LOG_WARNING,
                log::Level::Info => S::LOG_INFO,
                _ => S::LOG_DEBUG,
            };
            let _ = nix::syslog::syslog(sev, &format!("{}", r.args()));
        } else {
            self.stderr.log(r);
        }
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

/// From now on, log to syslog (the daemon's stderr is about to go to /dev/null).
fn log_to_syslog() {
    use nix::syslog::{openlog, Facility, LogFlags};
    if let Some(l) = LOGGER.get() {
        if openlog(
            Some(c"famfs-fused"),
            LogFlags::LOG_PID,
            Facility::LOG_DAEMON,
        )
        .is_ok()
        {
            l.syslog.store(true, Ordering::Relaxed);
        }
    }
}

fn secs(v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("bad time {v}"))
}

fn main() {
    // Hidden: `famfs-fused --gen-man DIR` writes famfs-fused(8) (make install); checked before
    // parsing, as DEVICE and MOUNTPOINT are required otherwise.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 3 && argv[1] == "--gen-man" {
        match famfs_fused::cli::write_man_page(std::path::Path::new(&argv[2])) {
            Ok(p) => println!("{}", p.display()),
            Err(e) => {
                eprintln!("famfs-fused: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    let args = Args::parse();
    let level = match (args.debug, args.verbose) {
        (true, _) | (_, 2) => "debug",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "trace",
    };
    let stderr =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).build();
    let max = stderr.filter();
    let logger = LOGGER.get_or_init(|| ServerLog {
        stderr,
        syslog: AtomicBool::new(false),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
    if let Err(e) = run(args) {
        eprintln!("famfs-fused: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let device = std::fs::canonicalize(&args.device)
        .with_context(|| format!("{}", args.device.display()))?;
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("{}", args.mountpoint.display()))?;
    if !std::path::Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing (modprobe fuse)");
    }
    let mut opts = ServerOptions::new(device.clone(), mountpoint.clone());
    opts.force_fallback = args.fallback;
    opts.attr_ttl = secs(args.timeout.unwrap_or(args.attr_timeout))?;
    opts.entry_ttl = secs(args.timeout.unwrap_or(args.entry_timeout))?;
    opts.extra_options = args
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect();
    opts.control_path = args.control.clone();
    opts.threads = args.threads;
    opts.owner_only = args.owner_only;
    opts.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    opts.lease = Duration::from_millis(args.lease_ms);
    famfs_fused::heartbeat::check_timing(opts.heartbeat_interval, opts.lease)
        .map_err(|e| anyhow::anyhow!("{e} (--heartbeat-ms, --lease-ms)"))?;
    check_mountable(&device, &mountpoint)?;
    if let Some(p) = &args.log_file {
        redirect_stderr(p)?;
    }
    let server =
        Server::open(&opts).with_context(|| format!("cannot serve {}", device.display()))?;
    let summary = format!(
        "famfs-fused: {} mounted on {} (role: {}, mode: {})",
        device.display(),
        mountpoint.display(),
        server.role(),
        server.mode()
    );
    if args.foreground {
        return serve(server, &opts, &args, None, &summary);
    }
    // Daemonize before any thread exists (fork only copies the calling thread). The child tells
    // the parent through a pipe whether the mount came up.
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: no other thread exists yet (the server's threads start in `serve`), so the child
    // is a complete copy of this process and may allocate, log and run as usual.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(rd);
            // Detaches from the terminal's session (cannot fail: we are not a group leader).
            let _ = nix::unistd::setsid();
            let mut wr = std::fs::File::from(wr);
            if let Err(e) = serve(server, &opts, &args, Some(&mut wr), &summary) {
                // Before READY the parent reports it; after, only the log (syslog) can.
                log::error!("{e:#}");
                let _ = writeln!(wr, "ERROR {e:#}");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(wr);
            drop(server); // the child owns the device now
                          // One line: READY, or ERROR and the reason; EOF without it means the child died.
            let mut msg = String::new();
            let _ = std::io::BufReader::new(std::fs::File::from(rd)).read_line(&mut msg);
            match msg.lines().next() {
                Some("READY") => {
                    println!("{summary}");
                    Ok(())
                }
                Some(l) if l.starts_with("ERROR ") => bail!("{}", &l[6..]),
                _ => bail!("the server exited before the mount was ready (see the messages above)"),
            }
        }
    }
}

/// Detaches the mount at `mpt`: umount2(MNT_DETACH) as root, else `fusermount3 -u -z`.
fn lazy_unmount(mpt: &std::path::Path) {
    if nix::mount::umount2(mpt, nix::mount::MntFlags::MNT_DETACH).is_ok() {
        return;
    }
    match std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mpt)
        .status()
    {
        Ok(s) if s.success() => {}
        other => log::error!("cannot unmount {}: {other:?}", mpt.display()),
    }
}

fn redirect_stderr(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never follows a symlink planted at the log file's path (the server runs as root).
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    nix::unistd::dup2_stderr(&f).with_context(|| format!("dup2 {} onto stderr", path.display()))?;
    Ok(())
}

fn redirect_stdio_to_null(keep_stderr: bool) {
    if !keep_stderr {
        log_to_syslog();
    }
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        if !keep_stderr {
            let _ = nix::unistd::dup2_stderr(&null);
        }
    }
}

/// The signals the server handles in a dedicated thread (blocked everywhere else).
fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    set
}

fn write_stats(stats: &Stats, path: Option<&PathBuf>) {
    if let Some(p) = path {
        if let Err(e) = stats.write_to(p) {
            log::warn!("stats file {}: {e}", p.display());
        }
    }
}

fn serve(
    server: Server,
    opts: &ServerOptions,
    args: &Args,
    ready: Option<&mut std::fs::File>,
    summary: &str,
) -> Result<()> {
    let set = signal_set();
    // Blocks the signals in this thread; threads spawned later inherit the mask, so only the
    // signal thread's sigwait receives them.
    set.thread_block().context("pthread_sigmask")?;
    let stats: Arc<Stats> = server.stats();
    let mut session = server.mount(opts)?;
    let mut unmounter = session.unmount_callable();
    let stats_path = args.stats_file.clone();
    {
        let stats = stats.clone();
        let stats_path = stats_path.clone();
        let mpt_sig = opts.mountpoint.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let Ok(sig) = set.wait() else { continue };
                write_stats(&stats, stats_path.as_ref());
                if sig == Signal::SIGUSR1 {
                    continue;
                }
                log::info!("signal {sig}: unmounting");
                if let Err(e) = unmounter.unmount() {
                    log::error!("unmount: {e}");
                }
                // With auto_unmount, fuser's unmount only closes the socket of the fusermount3
                // helper, which leaves a mount whose server is alive in place; detach it ourselves
                // so the session ends (lazily: files still open keep it until they are closed).
                if famfs_fused::mounts::is_mount_point(&mpt_sig) {
                    lazy_unmount(&mpt_sig);
                }
                break;
            })?;
    }
    let mpt = opts.mountpoint.clone();
    let runner = std::thread::Builder::new()
        .name("fuse".into())
        .spawn(move || session.run())?;
    // The mount is live once its meta files answer (this goes through our own request loop).
    let live = (0..200).any(|_| {
        if mpt.join(".meta/.log").exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
        false
    });
    if !live {
        bail!("{}: the mount did not come up", mpt.display());
    }
    log::info!("{summary}");
    if let Some(w) = ready {
        writeln!(w, "READY")?;
        redirect_stdio_to_null(args.log_file.is_some());
    }
    let r = runner
        .join()
        .map_err(|_| anyhow::anyhow!("the FUSE thread panicked"))?;
    write_stats(&stats, stats_path.as_ref());
    r.context("FUSE session")?;
    log::info!("unmounted, exiting");
    Ok(())
}
