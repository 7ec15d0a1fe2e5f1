//! `famfs-perf report | head` ends quietly with status 141 (128 + SIGPIPE, what a shell shows for
//! a C tool killed by SIGPIPE), not with a panic ("failed printing to stdout: Broken pipe").

use std::process::{Command, Stdio};

const PERF: &str = env!("CARGO_BIN_EXE_famfs-perf");

#[test]
fn report_into_a_closed_pipe_ends_quietly_with_status_141() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("famfs-perf-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let records = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&records);
    let st = Command::new(PERF)
        .args(["skip", "--label", "raw", "--reason", "not here", "--out"])
        .arg(&records)
        .status()
        .unwrap();
    assert!(st.success());
    let report = || {
        let mut c = Command::new(PERF);
        c.arg("report").arg("--in").arg(&records);
        c
    };
    // With a reader: the report is printed.
    let o = report().output().unwrap();
    assert!(o.status.success() && !o.stdout.is_empty(), "{o:?}");
    // Into a pipe whose read end is already closed: its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = report()
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.is_empty(), "famfs-perf report said: {stderr}");
    assert_eq!(o.status.code(), Some(141));
    std::fs::remove_dir_all(&dir).unwrap();
}
