//! `mkfs.famfs` (built as `mkfs-famfs`; see Cargo.toml).
fn main() {
    std::process::exit(famfs_cli::mkfs_cmd::main_with(std::env::args_os()));
}
