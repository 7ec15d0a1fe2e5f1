//! famfs-perf: the famfs benchmark runner.
//!
//! `famfs-perf data` measures one data path (run in the CXL VM by scripts/bench, or anywhere on
//! a file), `famfs-perf meta` the host-side metadata and fallback-mode figures, and
//! `famfs-perf report` turns the JSON-lines records of those runs into bench-results/latest.json
//! and latest.md. Numbers only: nothing here asserts a time.

mod data;
mod fio;
mod meta;
mod report;
mod scale;
mod stats;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};

use data::{DataParams, Source};
use famfs_cmdline::size::parse_size;

#[derive(Parser)]
#[command(
    name = "famfs-perf",
    version,
    about = "famfs benchmark runner (see Documentation/performance.md)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SourceKind {
    /// The devdax device itself, mapped at --offset (device_dax mode: the ceiling).
    Raw,
    /// A famfs.ko file made with /dev/famfs over the device at --offset (fsdev_dax mode).
    Module,
    /// A file by path (famfs mount, fallback mount, tmpfs): --file.
    File,
}

/// What `data` and `skip` share: which path, and the shape of the figures recorded for it.
#[derive(clap::Args)]
struct PathArgs {
    /// Path label in the table (raw, module, fuse, fallback, tmpfs).
    #[arg(long)]
    label: String,
    /// Size of the measured file or range.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// First touch maps this much of the file (default: --size).
    #[arg(long, value_parser = parse_size)]
    touch_size: Option<u64>,
    /// Thread counts for the scaling figures (comma separated).
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Apply the famfs targets (mmap >= 0.95, read(2) >= 0.90 of raw, PMD faults); default
    /// for the labels module and fuse.
    #[arg(long)]
    famfs_targets: Option<bool>,
    /// Where this runs: vm-tcg, vm-kvm, host.
    #[arg(long, default_value = "host")]
    env: String,
    /// Prefix of the section names (e.g. `cxl-` for the CXL-model boot; none for the RAM-speed
    /// device, whose tables are the main ones).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Append JSON-lines records here (default stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Interleaving round of these figures (scripts/bench runs every path once per round, in
    /// alternating order): ratios pair samples of the same round.
    #[arg(long)]
    round: Option<u32>,
}

impl PathArgs {
    /// Parameters of the data figures of this path, before the measuring knobs.
    fn params(
        self,
        window: u64,
        bytes: u64,
        reps: usize,
        touch_reps: usize,
    ) -> (DataParams, Option<PathBuf>) {
        let famfs = self
            .famfs_targets
            .unwrap_or(self.label == "module" || self.label == "fuse");
        let touch_size = self.touch_size.unwrap_or(self.size);
        let p = DataParams {
            label: self.label,
            env: self.env,
            window,
            touch_size,
            bytes,
            reps,
            touch_reps,
            threads: self.threads,
            famfs,
            prefix: self.prefix,
            ceiling: "raw".into(),
            round: self.round,
        };
        (p, self.out)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Data path: mmap and read(2)/write(2) bandwidth (sequential and random 4K/64K/2M), thread
    /// scaling, first touch of the whole file (aligned and one page off the 2 MiB grid).
    Data {
        #[command(flatten)]
        path: PathArgs,
        #[arg(long, value_enum)]
        source: SourceKind,
        /// The devdax device (raw, module); default $FAMFS_DAXDEV.
        #[arg(long)]
        device: Option<String>,
        /// Device offset of the measured range (raw, module); 2 MiB aligned.
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        offset: u64,
        /// The file (file source).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Create and fill the file first (e.g. on tmpfs).
        #[arg(long)]
        create: bool,
        /// Bytes moved per repetition of each bandwidth figure.
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        bytes: u64,
        /// Bandwidth figures work within the first WINDOW bytes (mapped and faulted in once).
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        window: u64,
        /// Repetitions of each bandwidth figure.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Repetitions of each first-touch figure.
        #[arg(long, default_value_t = 3)]
        touch_reps: usize,
    },
    /// Record every data figure of a path as not measured, with the reason.
    Skip {
        #[command(flatten)]
        path: PathArgs,
        /// Why the path could not be measured.
        #[arg(long)]
        reason: String,
    },
    /// Host metadata: creat (per process, -M, library), mkdir -p, log play (empty, full), and a
    /// fallback-mode FUSE mount of an image: mount time, open+close and stat rates, new-file
    /// visibility, and its data path against the image (root, /dev/fuse, fusermount3).
    Meta {
        /// Operations per repetition (files per creat run, opens and stats per rate run).
        #[arg(long, default_value_t = 200)]
        n: usize,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// mkdir -p depth.
        #[arg(long, default_value_t = 16)]
        depth: usize,
        /// Size of the fallback data-path file on the host (0 skips it).
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        data_size: u64,
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        data_bytes: u64,
        #[arg(long, default_value_t = 5)]
        data_reps: usize,
        /// Directory of famfs and famfs-fused (default: next to famfs-perf).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Where the (sparse) images go.
        #[arg(long, default_value = "/tmp")]
        workdir: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Metadata at scale: N files in one directory (log sized for them), log play, mount and
    /// umount time, `ls -l`, `find`, the first open (+ read + mmap) of every file through the
    /// mount, and the server's and kernel's memory per file. Needs root.
    Scale {
        /// Number of files (each takes one 2 MiB allocation unit of the device).
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long, value_enum, default_value = "fallback")]
        mode: scale::Mode,
        /// A devdax device (in the VM); default: a sparse image in --workdir.
        #[arg(long)]
        device: Option<PathBuf>,
        #[arg(long, default_value = "/tmp")]
        workdir: PathBuf,
        /// Directory of famfs and famfs-fused (default: next to famfs-perf).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Path label in the table (e.g. host-fallback, vm-module).
        #[arg(long)]
        label: String,
        #[arg(long, default_value = "host")]
        env: String,
        /// Repetitions of log play and of mount + umount.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Skip the first open of every file (only the walks: ls -l, find).
        #[arg(long)]
        no_opens: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Records of one fio run (`fio --output-format=json scripts/fio/data.fio`): section `fio`,
    /// one figure per job, paired as issue 26 asks (libpmem on a file against dev-dax on the raw
    /// device; mmap and psync against the same engine on ext4-dax).
    Fio {
        /// fio's JSON output.
        #[arg(long)]
        json: PathBuf,
        /// Path label (raw, fuse, fallback, ext4-dax, xfs-dax, tmpfs; X-aa for an A/A run of X).
        #[arg(long)]
        label: String,
        /// The ioengine the jobs ran with.
        #[arg(long)]
        engine: String,
        #[arg(long, default_value = "host")]
        env: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Summarise JSON-lines records: medians, spreads, ratios, verdicts; write JSON and Markdown.
    Report {
        /// Record files (JSON lines); later records replace earlier ones with the same id.
        #[arg(long = "in", required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Facts about the run for the table header (KEY=VALUE).
        #[arg(long, value_parser = parse_kv)]
        info: Vec<(String, String)>,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Markdown output (default stdout).
        #[arg(long)]
        md: Option<PathBuf>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Appends records, one JSON object per line, flushed as they come.
fn sink(out: &Option<PathBuf>) -> Result<Box<dyn FnMut(report::Record)>> {
    let mut w: Box<dyn Write> = match out {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    Ok(Box::new(move |r| {
        let _ = writeln!(
            w,
            "{}",
            serde_json::to_string(&r).expect("record serialises")
        );
        let _ = w.flush();
    }))
}

fn fill(path: &PathBuf, size: u64) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let chunk: Vec<u8> = (0..(1usize << 20))
        .map(|i| (i as u8).wrapping_mul(13) | 1)
        .collect();
    let mut left = size;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..k])?;
        left -= k as u64;
    }
    f.sync_all()?;
    Ok(())
}

fn main() -> Result<()> {
    // `famfs-perf report | head`: end quietly, as a C tool killed by SIGPIPE.
    famfs_cmdline::pipe::exit_quietly_on_broken_pipe();
    match Cli::parse().cmd {
        Cmd::Data {
            path,
            source,
            device,
            offset,
            file,
            create,
            bytes,
            window,
            reps,
            touch_reps,
        } => {
            let size = path.size;
            let (p, out) = path.params(window, bytes, reps, touch_reps);
            if [offset, size, window, p.touch_size]
                .iter()
                .any(|x| x % data::PMD != 0)
                || window > size
                || p.touch_size > size
            {
                bail!("--offset, --size, --window and --touch-size must be multiples of 2 MiB, window and touch size <= size");
            }
            let dev = || {
                device
                    .clone()
                    .or_else(|| std::env::var("FAMFS_DAXDEV").ok())
                    .ok_or_else(|| anyhow!("no --device and no $FAMFS_DAXDEV"))
            };
            let src = match source {
                SourceKind::Raw => Source::Device {
                    path: dev()?.into(),
                    offset,
                    rw: false,
                },
                SourceKind::Module => Source::module(&dev()?, offset, size)?,
                SourceKind::File => {
                    let f = file.ok_or_else(|| anyhow!("--source file needs --file"))?;
                    if create {
                        fill(&f, size)?;
                    }
                    Source::File { path: f }
                }
            };
            let mut emit = sink(&out)?;
            data::run(&src, &p, &mut *emit);
        }
        Cmd::Skip { path, reason } => {
            let window = path.size;
            let (p, out) = path.params(window, 0, 0, 0);
            let mut emit = sink(&out)?;
            for (mut r, _, _) in data::data_records(&p, true) {
                r.not_measured = Some(reason.clone());
                emit(r);
            }
        }
        Cmd::Meta {
            n,
            reps,
            depth,
            data_size,
            data_bytes,
            data_reps,
            bin_dir,
            workdir,
            out,
        } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?
                    .parent()
                    .ok_or_else(|| anyhow!("no exe dir"))?
                    .to_path_buf(),
            };
            let p = meta::MetaParams {
                n: n.max(1),
                reps: reps.max(1),
                depth: depth.max(1),
                data_size,
                data_bytes,
                data_reps: data_reps.max(1),
                bin_dir,
                workdir,
            };
            let mut emit = sink(&out)?;
            meta::run(&p, &mut *emit)?;
        }
        Cmd::Scale {
            n,
            mode,
            device,
            workdir,
            bin_dir,
            label,
            env,
            reps,
            no_opens,
            out,
        } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?
                    .parent()
                    .ok_or_else(|| anyhow!("no exe dir"))?
                    .to_path_buf(),
            };
            let p = scale::ScaleParams {
                n: n.max(1),
                mode,
                device,
                workdir,
                bin_dir,
                label,
                env,
                reps: reps.max(1),
                no_opens,
            };
            let mut emit = sink(&out)?;
            scale::run(&p, &mut *emit)?;
        }
        Cmd::Fio {
            json,
            label,
            engine,
            env,
            out,
        } => {
            let text = std::fs::read_to_string(&json)
                .with_context(|| format!("read {}", json.display()))?;
            let mut emit = sink(&out)?;
            for r in fio::records(&text, &label, &engine, &env)? {
                emit(r);
            }
        }
        Cmd::Report {
            inputs,
            info,
            json,
            md,
        } => {
            let mut records = Vec::new();
            for i in &inputs {
                let text =
                    std::fs::read_to_string(i).with_context(|| format!("read {}", i.display()))?;
                records.extend(
                    report::parse_records(&text)
                        .with_context(|| format!("parse {}", i.display()))?,
                );
            }
            let rep = report::build(records, info.into_iter().collect::<BTreeMap<_, _>>());
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&rep)? + "\n")
                    .with_context(|| format!("write {}", j.display()))?;
            }
            let text = report::render_markdown(&rep);
            match md {
                Some(m) => {
                    std::fs::write(&m, text).with_context(|| format!("write {}", m.display()))?
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
