//! `mkfs.famfs` (built as `mkfs-famfs`; see Cargo.toml).
fn main() {
    famfs_cmdline::pipe::exit_quietly_on_broken_pipe();
    std::process::exit(famfs_cli::mkfs_cmd::main_with(std::env::args_os()));
}
