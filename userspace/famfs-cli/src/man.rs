//! Man pages generated from the clap definitions (`famfs gen-man DIR`, run by `make install`), so
//! they never drift from the options the tools accept.

use anyhow::{Context, Result};
use std::path::Path;

/// Section 8: system administration commands.
pub const SECTION: &str = "8";

/// The closing section of every page.
pub const SEE_ALSO: &str = "See also: famfs(8), mkfs.famfs(8), famfs-mount(8), famfs-fused(8), mount.famfs(8); \
the user guide and command reference in the famfs-rs Documentation/ (installed under share/doc/famfs-rs: \
user-guide.md, cli.md, install.md).";

/// Renders `cmd` as a man page named `name`(8) into `dir`; returns the file written.
pub fn write_page(cmd: clap::Command, name: &str, dir: &Path) -> Result<std::path::PathBuf> {
    // The page's title and NAME; the synopsis keeps the bin name ("famfs mount" for a verb).
    let bin = cmd.get_bin_name().unwrap_or(name).to_string();
    let cmd = cmd
        .name(name.to_string())
        .display_name(name.to_string())
        .bin_name(bin)
        .after_long_help(SEE_ALSO);
    let man = clap_mangen::Man::new(cmd)
        .section(SECTION)
        .manual("famfs-rs")
        .source(format!("famfs-rs {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    man.render(&mut buf)
        .with_context(|| format!("rendering {name}"))?;
    let path = dir.join(format!("{name}.{SECTION}"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes famfs(8), famfs-VERB(8) for every visible verb of `famfs` (the clap definition of the
/// famfs tool), and mkfs.famfs(8) from `mkfs` into `dir`.
pub fn write_all(dir: &Path, famfs: clap::Command, mkfs: clap::Command) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The crate description is about both tools; the page of famfs says what famfs itself does.
    let mut famfs = famfs.about("create and inspect files in fabric-attached (CXL) shared memory");
    famfs.build();
    let mut written = vec![write_page(famfs.clone(), "famfs", dir)?];
    for sub in famfs
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("famfs-{}", sub.get_name());
        written.push(write_page(sub.clone(), &name, dir)?);
    }
    written.push(write_page(
        mkfs.about("create a famfs file system on a devdax device or an image file"),
        "mkfs.famfs",
        dir,
    )?);
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
}
