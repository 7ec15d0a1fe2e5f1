//! The command reference (Documentation/cli.md) documents every command and option: this walks the
//! clap definitions of famfs, mkfs.famfs and famfs-fused and fails on any visible subcommand,
//! long option or short option that its section of cli.md does not mention.
//!
//! Sections: `## mkfs.famfs`, `## famfs-fused`, and one `### ...` heading per famfs verb (a heading
//! may cover several verbs, e.g. `### mount / umount`). famfs's global options may appear anywhere.

use clap::CommandFactory;
use std::path::Path;

fn cli_md() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Documentation/cli.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text of the first section whose heading (at `level` hashes) satisfies `pick`, up to the next
/// heading of the same or a higher level.
fn section(doc: &str, level: usize, pick: impl Fn(&str) -> bool) -> Option<&str> {
    let hashes = "#".repeat(level);
    let mut start = None;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        let depth = line.chars().take_while(|&c| c == '#').count();
        let is_heading = depth > 0 && line[depth..].starts_with(' ');
        if let Some(s) = start.filter(|_| is_heading && depth <= level) {
            return Some(&doc[s..offset]);
        }
        if is_heading
            && depth == level
            && line.starts_with(&hashes)
            && pick(line[depth..].trim())
            && start.is_none()
        {
            start = Some(offset);
        }
        offset += line.len();
    }
    start.map(|s| &doc[s..])
}

/// Whether `word` (an option such as `--loglen` or `-l`) appears in `text` as a whole token.
fn mentions(text: &str, word: &str) -> bool {
    let boundary =
        |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    text.match_indices(word).any(|(i, _)| {
        boundary(text[..i].chars().next_back()) && boundary(text[i + word.len()..].chars().next())
    })
}

/// The options of `cmd` that `text` does not mention (clap's own --help and --version excepted).
fn undocumented(cmd: &clap::Command, text: &str, skip_globals: bool) -> Vec<String> {
    let mut missing = Vec::new();
    for a in cmd.get_arguments() {
        if a.is_hide_set() || a.is_positional() || (skip_globals && a.is_global_set()) {
            continue;
        }
        if matches!(
            a.get_action(),
            clap::ArgAction::Help
                | clap::ArgAction::HelpShort
                | clap::ArgAction::HelpLong
                | clap::ArgAction::Version
        ) {
            continue;
        }
        if let Some(l) = a.get_long() {
            if !mentions(text, &format!("--{l}")) {
                missing.push(format!("--{l}"));
            }
        }
        if let Some(s) = a.get_short() {
            if !mentions(text, &format!("-{s}")) {
                missing.push(format!("-{s}"));
            }
        }
    }
    missing
}

/// Every problem of the reference `doc` for the three tools.
fn check(
    doc: &str,
    famfs: clap::Command,
    mkfs: clap::Command,
    fused: clap::Command,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut famfs = famfs;
    famfs.build();
    for m in undocumented(&famfs, doc, false) {
        problems.push(format!(
            "famfs: global option {m} is not documented anywhere in cli.md"
        ));
    }
    for sub in famfs
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub.get_name();
        let Some(text) = section(doc, 3, |h| h.split([' ', '/']).any(|w| w == name)) else {
            problems.push(format!("famfs {name}: no `### {name}` section in cli.md"));
            continue;
        };
        if !text.contains(&format!("famfs {name}")) {
            problems.push(format!(
                "famfs {name}: its section does not show `famfs {name}` usage"
            ));
        }
        for m in undocumented(sub, text, true) {
            problems.push(format!(
                "famfs {name}: option {m} is not documented in its section of cli.md"
            ));
        }
    }
    for (cmd, name) in [(mkfs, "mkfs.famfs"), (fused, "famfs-fused")] {
        let mut cmd = cmd;
        cmd.build();
        match section(doc, 2, |h| h == name) {
            None => problems.push(format!("{name}: no `## {name}` section in cli.md")),
            Some(text) => {
                for m in undocumented(&cmd, text, false) {
                    problems.push(format!(
                        "{name}: option {m} is not documented in its section of cli.md"
                    ));
                }
            }
        }
    }
    problems
}

fn commands() -> (clap::Command, clap::Command, clap::Command) {
    (
        famfs_cli::famfs_cmd::Cli::command(),
        famfs_cli::mkfs_cmd::MkfsArgs::command(),
        famfs_fused::cli::Args::command(),
    )
}

#[test]
fn every_command_and_option_is_in_cli_md() {
    let (famfs, mkfs, fused) = commands();
    let problems = check(&cli_md(), famfs, mkfs, fused);
    assert!(
        problems.is_empty(),
        "Documentation/cli.md is behind the CLI:\n  {}",
        problems.join("\n  ")
    );
}

/// The check itself catches an option or a verb added without documentation.
#[test]
fn an_undocumented_option_or_verb_fails_the_check() {
    let doc = cli_md();
    let (famfs, mkfs, fused) = commands();
    let famfs = famfs
        .mut_subcommand("mount", |m| {
            m.arg(
                clap::Arg::new("frobnicate")
                    .long("frobnicate")
                    .action(clap::ArgAction::SetTrue),
            )
        })
        .subcommand(clap::Command::new("defrag").about("not a real verb"));
    let fused = fused.arg(
        clap::Arg::new("zap")
            .long("zap-everything")
            .action(clap::ArgAction::SetTrue),
    );
    let mkfs = mkfs.arg(
        clap::Arg::new("q")
            .short('Q')
            .action(clap::ArgAction::SetTrue),
    );
    let problems = check(&doc, famfs, mkfs, fused).join("\n");
    for want in [
        "famfs mount: option --frobnicate",
        "famfs defrag: no `### defrag` section",
        "famfs-fused: option --zap-everything",
        "mkfs.famfs: option -Q",
    ] {
        assert!(
            problems.contains(want),
            "expected a problem {want:?}; got:\n{problems}"
        );
    }
}

#[test]
fn section_and_mentions() {
    let doc = "# t\n## a\ntext --x\n### b / c\n-y here\n## d\n--z\n";
    assert_eq!(
        section(doc, 3, |h| h.split([' ', '/']).any(|w| w == "c")),
        Some("### b / c\n-y here\n")
    );
    assert_eq!(
        section(doc, 2, |h| h == "a"),
        Some("## a\ntext --x\n### b / c\n-y here\n")
    );
    assert!(mentions("use `-f, --force`", "--force") && mentions("use `-f, --force`", "-f"));
    assert!(
        !mentions("--forced", "--force") && !mentions("--fallback", "-f") && !mentions("a-f", "-f")
    );
}
