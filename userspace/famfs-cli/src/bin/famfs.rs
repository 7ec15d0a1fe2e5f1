//! `famfs`; also acts as `mkfs.famfs` when invoked under that name.
fn main() {
    famfs_cmdline::pipe::exit_quietly_on_broken_pipe();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if name == "mkfs.famfs" || name == "mkfs-famfs" {
        famfs_cli::mkfs_cmd::main_with(std::env::args_os())
    } else {
        famfs_cli::famfs_cmd::main_with(std::env::args_os())
    };
    std::process::exit(code);
}
