//! famfs-fused: mount a famfs device or image through FUSE (Documentation/fuse-server.md).
//!
//! Without `-f` it daemonizes and returns only when the mount works (the meta files are
//! visible), printing role and mode; it exits non-zero with the error otherwise.

use anyhow::{bail, Context, Result};
use clap::Parser;
use famfs_fused::cli::Args;
use famfs_fused::{check_mountable, Server, ServerOptions, Stats};
use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    if let Err(e) = run(args) {
        eprintln!("famfs-fused: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let device = std::fs::canonicalize(&args.device).with_context(|| format!("{}", args.device.display()))?;
    let mountpoint =
        std::fs::canonicalize(&args.mountpoint).with_context(|| format!("{}", args.mountpoint.display()))?;
    if !std::path::Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing (modprobe fuse)");
    }
    let mut opts = ServerOptions::new(device.clone(), mountpoint.clone());
    opts.force_fallback = args.fallback;
    opts.attr_ttl = secs(args.timeout.unwrap_or(args.attr_timeout))?;
    opts.entry_ttl = secs(args.timeout.unwrap_or(args.entry_timeout))?;
    opts.extra_options = args.options.iter().flat_map(|o| o.split(',')).filter(|o| !o.is_empty()).map(String::from).collect();
    opts.control_path = args.control.clone();
    opts.threads = args.threads;
    check_mountable(&device, &mountpoint)?;
    if let Some(p) = &args.log_file {
        redirect_stderr(p)?;
    }
    let server = Server::open(&opts).with_context(|| format!("cannot serve {}", device.display()))?;
    let summary = format!("famfs-fused: {} mounted on {} (role: {}, mode: {})", device.display(), mountpoint.display(), server.role(), server.mode());
    if args.foreground {
        return serve(server, &opts, &args, None, &summary);
    }
    // Daemonize before any thread exists (fork only copies the calling thread). The child tells
    // the parent through a pipe whether the mount came up.
    let mut fds = [0; 2];
    // SAFETY: plain syscall with a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors; we own them.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded here; the child continues with copies of our state.
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(rd);
            // SAFETY: plain syscall; detaches from the terminal's session.
            unsafe { libc::setsid() };
            let mut wr = std::fs::File::from(wr);
            if let Err(e) = serve(server, &opts, &args, Some(&mut wr), &summary) {
                let _ = writeln!(wr, "ERROR {e:#}");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        _ => {
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
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(mpt.as_os_str().as_bytes()) {
        // SAFETY: plain syscall with a valid C string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return;
        }
    }
    match std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(mpt).status() {
        Ok(s) if s.success() => {}
        other => log::error!("cannot unmount {}: {other:?}", mpt.display()),
    }
}

fn redirect_stderr(path: &std::path::Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("{}", path.display()))?;
    // SAFETY: dup2 onto fd 2 with a descriptor we own.
    unsafe { libc::dup2(f.as_raw_fd(), 2) };
    Ok(())
}

fn redirect_stdio_to_null(keep_stderr: bool) {
    use std::os::fd::AsRawFd;
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 onto the standard descriptors with a descriptor we own.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            if !keep_stderr {
                libc::dup2(null.as_raw_fd(), 2);
            }
        }
    }
}

/// The signals the server handles in a dedicated thread (blocked everywhere else).
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn write_stats(stats: &Stats, path: Option<&PathBuf>) {
    if let Some(p) = path {
        if let Err(e) = stats.write_to(p) {
            log::warn!("stats file {}: {e}", p.display());
        }
    }
}

fn serve(server: Server, opts: &ServerOptions, args: &Args, ready: Option<&mut std::fs::File>, summary: &str) -> Result<()> {
    let set = signal_set();
    // SAFETY: blocks the signals in this thread; threads spawned later inherit the mask, so only
    // the signal thread's sigwait receives them.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let stats: Arc<Stats> = server.stats();
    let mut session = server.mount(opts)?;
    let mut unmounter = session.unmount_callable();
    let stats_path = args.stats_file.clone();
    {
        let stats = stats.clone();
        let stats_path = stats_path.clone();
        let mpt_sig = opts.mountpoint.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || loop {
            let mut sig = 0;
            // SAFETY: waits for one of the blocked signals of `set`.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            write_stats(&stats, stats_path.as_ref());
            if sig == libc::SIGUSR1 {
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
    let runner = std::thread::Builder::new().name("fuse".into()).spawn(move || session.run())?;
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
    let r = runner.join().map_err(|_| anyhow::anyhow!("the FUSE thread panicked"))?;
    write_stats(&stats, stats_path.as_ref());
    r.context("FUSE session")?;
    log::info!("unmounted, exiting");
    Ok(())
}
