//! A tool printing into a pipe whose reader has gone (`famfs fsck --json | head -1`) ends quietly
//! with status 141 (128 + SIGPIPE, what a shell shows for a C tool killed by SIGPIPE), not with
//! a panic ("failed printing to stdout: Broken pipe") or an error message.

use std::process::Stdio;

mod common;
use common::*;

/// Runs `bin ARGS` in `e` with its standard output a pipe whose read end is already closed (so
/// its first write fails, whatever the timing); its exit code and standard error.
fn into_closed_pipe(e: &Env, bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = e
        .command(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run the binary");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_status_141() {
    let e = Env::new();
    e.image("img", 4 * G);
    e.ok_bin(MKFS, &["img"]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    std::fs::write(e.path("data"), &data).unwrap();
    e.ok(&["cp", "--device", "img", "data", "/data"]);
    for (bin, args) in [
        // print! into the pipe: a panic in Rust's std without the fix.
        (FAMFS, &["fsck", "--json", "--device", "img"][..]),
        (FAMFS, &["logplay", "--device", "img"]),
        // A write whose error is returned: "famfs: Broken pipe" and status 1 without the fix.
        (FAMFS, &["cat", "--device", "img", "/data"]),
        // Last: it formats the image again, then prints.
        (MKFS, &["-f", "img"]),
    ] {
        let (code, stderr) = into_closed_pipe(&e, bin, args);
        println!("{bin} {args:?}: status {code:?}, stderr {stderr:?}");
        assert!(stderr.is_empty(), "{bin} {args:?} said: {stderr}");
        assert_eq!(code, Some(141), "{bin} {args:?}");
    }
    // A reader that stays: the same commands print as before.
    assert!(e
        .ok(&["fsck", "--json", "--device", "img"])
        .starts_with('{'));
}
