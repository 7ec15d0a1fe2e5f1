//! The C famfs's shadow tree (`famfs logplay --shadow DIR`): under `DIR/root` (DIR itself when it
//! ends in `/root`), one directory per logged directory and one YAML file per logged file, plus
//! `.meta/.superblock` and `.meta/.log`, each YAML file describing the file's size, flags, mode,
//! owner and map. The YAML is written byte for byte as the C tools' libyaml emitter writes it
//! (block style, indentless sequences, an explicit `---` and `...`, values folded past column 80),
//! and read back by a small
//! parser of the same subset (for `--shadowtest`). Our own code; the layout and the event sequence
//! were read from the C sources (famfs_yaml.c, famfs_lib.c), not copied.

use anyhow::{anyhow, bail, Context, Result};
use famfs_format::{Extent, FileEntry, Fmap, Interleave};
use std::path::{Path, PathBuf};

/// What one shadow YAML file holds: the C `struct famfs_log_file_meta` as the emitter writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowFile {
    /// Relative path as logged (no leading `/`).
    pub path: String,
    pub size: u64,
    pub flags: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub fmap: Fmap,
}

impl ShadowFile {
    /// The shadow of a logged file.
    pub fn of_entry(f: &FileEntry) -> ShadowFile {
        ShadowFile {
            path: f.path.as_str().to_string(),
            size: f.size,
            flags: f.flags.0,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
            fmap: f.fmap.clone(),
        }
    }

    /// The shadow of a meta file: the superblock (2 MiB at 0, mode 0444) or the log.
    pub fn meta(path: &str, offset: u64, len: u64, mode: u32) -> ShadowFile {
        ShadowFile {
            path: path.to_string(),
            size: len,
            flags: 0,
            mode,
            uid: 0,
            gid: 0,
            fmap: Fmap::Simple(vec![Extent::new(offset, len)]),
        }
    }
}

/// libyaml's best line width: a scalar running past this column is folded at a space.
const BEST_WIDTH: usize = 80;

/// How libyaml writes a scalar value in block context, starting at column `col` (after `key: `),
/// with continuation lines at `indent`: plain when its analysis allows, else single quoted, else
/// double quoted (non-printable or non-ASCII characters: the emitter's default is not to write
/// unicode); past column 80 a space becomes a line break (the same folding rules as libyaml's
/// writers: a space is folded only when the previous character was not one, and, in quoted
/// styles, not at the scalar's first or last character; a double-quoted break before a second
/// space is escaped).
fn scalar_at(s: &str, col: usize, indent: usize) -> String {
    let (block_plain, single_ok) = analyze(s);
    let style = match (block_plain, single_ok) {
        (true, _) => Style::Plain,
        (false, true) => Style::Single,
        (false, false) => Style::Double,
    };
    let chars: Vec<char> = s.chars().collect();
    let last = chars.len().saturating_sub(1);
    let mut o = String::new();
    let mut col = col;
    let quote = match style {
        Style::Plain => None,
        Style::Single => Some('\''),
        Style::Double => Some('"'),
    };
    if let Some(q) = quote {
        o.push(q);
        col += 1;
    }
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let next_space = chars.get(i + 1) == Some(&' ');
            let inside = i != 0 && i != last;
            let fold = !spaces
                && col > BEST_WIDTH
                && match style {
                    Style::Plain => !next_space,
                    Style::Single => inside && !next_space,
                    Style::Double => inside,
                };
            if fold {
                o.push('\n');
                o.push_str(&" ".repeat(indent));
                col = indent;
                // A double-quoted break before a second space is escaped.
                if style == Style::Double && next_space {
                    o.push('\\');
                    col += 1;
                }
            } else {
                o.push(' ');
                col += 1;
            }
            spaces = true;
        } else {
            let e = match style {
                Style::Plain => c.to_string(),
                Style::Single if c == '\'' => "''".to_string(),
                Style::Single => c.to_string(),
                Style::Double => escape(c),
            };
            col += e.chars().count();
            o.push_str(&e);
            spaces = false;
        }
    }
    if let Some(q) = quote {
        o.push(q);
    }
    o
}

/// libyaml's three scalar styles, as [`scalar_at`] writes them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// [`scalar_at`] where no folding can happen (tests).
#[cfg(test)]
fn scalar(s: &str) -> String {
    scalar_at(s, 0, 0)
}

/// (plain allowed in block context, single quotes allowed), after libyaml's scalar analysis.
fn analyze(s: &str) -> (bool, bool) {
    if s.is_empty() {
        return (false, true);
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut special, mut line_breaks, mut blank_edge) = (false, false, false);
    let (mut break_space, mut space_break, mut previous_space, mut previous_break) =
        (false, false, false, false);
    let mut preceded_by_ws = true;
    let blankz =
        |c: Option<&char>| matches!(c, None | Some(' ') | Some('\t') | Some('\r') | Some('\n'));
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_ws = blankz(chars.get(i + 1));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_ws => block_indicators = true,
                '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        // libyaml's printable set, less what it escapes without unicode output: LF and ASCII.
        let printable = c == '\n' || (' '..='~').contains(&c);
        if !printable || !c.is_ascii() {
            special = true;
        }
        let is_break = c == '\n' || c == '\r';
        if is_break {
            line_breaks = true;
        }
        let is_space = c == ' ';
        // A space or line break at either end (libyaml's leading/trailing space/break, which
        // it only ever uses together).
        if (is_space || is_break) && (i == 0 || i + 1 == chars.len()) {
            blank_edge = true;
        }
        break_space |= is_space && previous_break;
        space_break |= is_break && previous_space;
        previous_space = is_space;
        previous_break = is_break;
        preceded_by_ws = matches!(c, ' ' | '\t' | '\r' | '\n');
    }
    let mut block_plain = true;
    let mut single = true;
    if blank_edge {
        block_plain = false;
    }
    if break_space {
        block_plain = false;
        single = false;
    }
    if space_break || special {
        block_plain = false;
        single = false;
    }
    if line_breaks || block_indicators {
        block_plain = false;
    }
    (block_plain, single)
}

/// One character inside libyaml's double quotes: itself, or its escape (uppercase hex, by code
/// point).
fn escape(c: char) -> String {
    if (' '..='~').contains(&c) && c != '"' && c != '\\' {
        return c.to_string();
    }
    let e = match c {
        '\0' => "0".to_string(),
        '\x07' => "a".to_string(),
        '\x08' => "b".to_string(),
        '\t' => "t".to_string(),
        '\n' => "n".to_string(),
        '\x0b' => "v".to_string(),
        '\x0c' => "f".to_string(),
        '\r' => "r".to_string(),
        '\x1b' => "e".to_string(),
        '"' => "\"".to_string(),
        '\\' => "\\".to_string(),
        '\u{85}' => "N".to_string(),
        '\u{a0}' => "_".to_string(),
        '\u{2028}' => "L".to_string(),
        '\u{2029}' => "P".to_string(),
        c if (c as u32) <= 0xff => format!("x{:02X}", c as u32),
        c if (c as u32) <= 0xffff => format!("u{:04X}", c as u32),
        c => format!("U{:08X}", c as u32),
    };
    format!("\\{e}")
}

fn extents_yaml(o: &mut String, indent: &str, exts: &[Extent]) {
    o.push_str(&format!("{indent}simple_ext_list:\n"));
    for e in exts {
        o.push_str(&format!("{indent}- devindex: {}\n", e.devindex));
        o.push_str(&format!("{indent}  offset: 0x{:x}\n", e.offset));
        o.push_str(&format!("{indent}  length: 0x{:x}\n", e.len));
    }
}

/// The YAML the C tools' `famfs_emit_file_yaml` writes for `f`.
pub fn emit_file_yaml(f: &ShadowFile) -> String {
    let mut o = String::from("---\nfile:\n");
    o.push_str(&format!(
        "  path: {}\n",
        scalar_at(&f.path, "  path: ".len(), 4)
    ));
    o.push_str(&format!("  size: {}\n", f.size));
    o.push_str(&format!("  flags: {}\n", f.flags));
    o.push_str(&format!("  mode: 0{:o}\n", f.mode));
    o.push_str(&format!("  uid: {}\n", f.uid));
    o.push_str(&format!("  gid: {}\n", f.gid));
    match &f.fmap {
        Fmap::Simple(v) => {
            o.push_str(&format!("  nextents: {}\n", v.len()));
            extents_yaml(&mut o, "  ", v);
        }
        Fmap::Interleaved(il) => {
            // The C log keeps one interleaved extent; its count shares the simple count's field.
            o.push_str("  nextents: 1\n");
            o.push_str("  striped_ext_list:\n");
            o.push_str(&format!("  - nstrips: {}\n", il.nstrips()));
            o.push_str(&format!("    chunk_size: 0x{:x}\n", il.chunk_size()));
            extents_yaml(&mut o, "    ", il.strips());
        }
    }
    o.push_str("...\n");
    o
}

/// Unquotes a scalar as written by [`scalar`] (or by libyaml for the same values).
fn unquote(v: &str) -> Result<String> {
    if let Some(inner) = v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return Ok(inner.replace("''", "'"));
    }
    let Some(inner) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return Ok(v.to_string());
    };
    let mut o = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        let e = it
            .next()
            .ok_or_else(|| anyhow!("dangling escape in {v:?}"))?;
        let hex = |n: usize, it: &mut std::str::Chars| -> Result<char> {
            let h: String = it.take(n).collect();
            u32::from_str_radix(&h, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| anyhow!("bad escape in {v:?}"))
        };
        o.push(match e {
            '0' => '\0',
            'a' => '\x07',
            'b' => '\x08',
            't' => '\t',
            'n' => '\n',
            'v' => '\x0b',
            'f' => '\x0c',
            'r' => '\r',
            'e' => '\x1b',
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            ' ' => ' ',
            'N' => '\u{85}',
            '_' => '\u{a0}',
            'L' => '\u{2028}',
            'P' => '\u{2029}',
            'x' => hex(2, &mut it)?,
            'u' => hex(4, &mut it)?,
            'U' => hex(8, &mut it)?,
            other => bail!("unknown escape \\{other} in {v:?}"),
        });
    }
    Ok(o)
}

/// Reads a shadow YAML file back (the subset the emitter writes: one document, block mappings,
/// indentless sequences, one scalar per line but for a folded path). Numbers are read as the C parser reads them
/// (strtoull base 0).
pub fn parse_file_yaml(text: &str) -> Result<ShadowFile> {
    let num = |k: &str, v: &str| crate::parse_c_ulong(v).map_err(|e| anyhow!("{k}: {e}"));
    let (mut path, mut size, mut flags, mut mode, mut uid, mut gid) =
        (None, None, None, None, None, None);
    let mut striped: Option<(u64, u64)> = None;
    let mut exts: Vec<[Option<u64>; 3]> = Vec::new();
    let mut nextents = None;
    let lines: Vec<&str> = text.lines().collect();
    let mut skip = 0;
    for (n, &raw) in lines.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let line = raw.trim_start();
        if line.is_empty()
            || line == "---"
            || line == "..."
            || line == "file:"
            || line.starts_with('#')
        {
            continue;
        }
        let (item, line) = match line.strip_prefix("- ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (k, v) = match line.split_once(": ") {
            Some((k, v)) => (k, v.trim_end()),
            None => (line.trim_end_matches(':'), ""),
        };
        let bad = || anyhow!("line {}: unexpected {raw:?}", n + 1);
        match k {
            "path" => {
                // libyaml folds a long value onto more-indented lines: each break reads as one
                // space.
                let depth = raw.len() - line.len();
                let mut value = v.to_string();
                for more in &lines[n + 1..] {
                    let t = more.trim_start();
                    if more.len() - t.len() <= depth || t.is_empty() {
                        break;
                    }
                    value.push(' ');
                    value.push_str(t.trim_end());
                    skip += 1;
                }
                path = Some(unquote(&value)?)
            }
            "size" => size = Some(num(k, v)?),
            "flags" => flags = Some(num(k, v)? as u32),
            "mode" => mode = Some(num(k, v)? as u32),
            "uid" => uid = Some(num(k, v)? as u32),
            "gid" => gid = Some(num(k, v)? as u32),
            "nextents" => nextents = Some(num(k, v)?),
            "simple_ext_list" | "striped_ext_list" => {}
            "nstrips" if item => striped = Some((num(k, v)?, 0)),
            "chunk_size" => striped.as_mut().ok_or_else(bad)?.1 = num(k, v)?,
            "devindex" | "offset" | "length" => {
                if item || exts.is_empty() {
                    exts.push([None; 3]);
                }
                let slot = match k {
                    "devindex" => 0,
                    "offset" => 1,
                    _ => 2,
                };
                let last = exts.last_mut().ok_or_else(bad)?;
                if last[slot].is_some() {
                    return Err(bad());
                }
                last[slot] = Some(num(k, v)?);
            }
            _ => return Err(bad()),
        }
    }
    let need = |f: Option<u64>, k: &str| f.ok_or_else(|| anyhow!("no {k}"));
    let exts: Vec<Extent> = exts
        .into_iter()
        .map(|[d, o, l]| {
            Ok(Extent {
                devindex: d.unwrap_or(0),
                offset: need(o, "offset")?,
                len: need(l, "length")?,
            })
        })
        .collect::<Result<_>>()?;
    let fmap = match striped {
        Some((nstrips, chunk)) => {
            if nstrips != exts.len() as u64 {
                bail!("nstrips {nstrips} but {} strips", exts.len());
            }
            Fmap::Interleaved(Interleave::new(chunk, exts)?)
        }
        None => {
            if nextents.is_some_and(|n| n != exts.len() as u64) {
                bail!(
                    "nextents {} but {} extents",
                    nextents.unwrap_or(0),
                    exts.len()
                );
            }
            Fmap::Simple(exts)
        }
    };
    Ok(ShadowFile {
        path: path.ok_or_else(|| anyhow!("no path"))?,
        size: need(size, "size")?,
        flags: need(flags.map(u64::from), "flags")? as u32,
        mode: need(mode.map(u64::from), "mode")? as u32,
        uid: need(uid.map(u64::from), "uid")? as u32,
        gid: need(gid.map(u64::from), "gid")? as u32,
        fmap,
    })
}

/// Counters of a shadow log play (the C tool's log stats).
#[derive(Debug, Default)]
pub struct ShadowStats {
    pub entries: u64,
    pub files_created: u64,
    pub files_existed: u64,
    pub dirs_created: u64,
    pub dirs_existed: u64,
    pub file_errors: u64,
    pub dir_errors: u64,
    pub yaml_checked: u64,
    pub yaml_errors: u64,
}

/// The shadow root of `dir` as the C tools find it: `dir` itself if it ends in `/root`, else
/// `dir/root` (created if missing). `dir` must be an existing directory.
pub fn shadow_root(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!(
            "shadow path {} is not an existing directory (create it first, as with the C famfs)",
            dir.display()
        );
    }
    if dir.file_name().is_some_and(|n| n == "root") {
        return Ok(dir.to_path_buf());
    }
    let root = dir.join("root");
    if !root.is_dir() {
        std::fs::create_dir(&root)
            .with_context(|| format!("cannot create the shadow root {}", root.display()))?;
    }
    Ok(root)
}

/// Writes (or, when it exists, keeps) the shadow YAML of `f` at `path`; with `test`, reads it back
/// and checks it describes `f`.
pub fn shadow_file(
    path: &Path,
    f: &ShadowFile,
    test: bool,
    st: &mut ShadowStats,
    verbose: bool,
) -> Result<()> {
    use std::io::Write;
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => {
            st.file_errors += 1;
            bail!(
                "{}: a directory where a shadow file should be",
                path.display()
            );
        }
        Ok(md) if md.is_file() => st.files_existed += 1,
        Ok(_) => {
            st.file_errors += 1;
            bail!(
                "{}: something other than a file where a shadow file should be",
                path.display()
            );
        }
        Err(_) => {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0644()
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            out.write_all(emit_file_yaml(f).as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            st.files_created += 1;
        }
    }
    if verbose {
        print!("{}", emit_file_yaml(f));
    }
    if test {
        st.yaml_checked += 1;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let ok = matches!(parse_file_yaml(&text), Ok(ref back) if back == f);
        if !ok {
            st.yaml_errors += 1;
            st.file_errors += 1;
            bail!(
                "{}: its YAML does not read back as the logged file",
                path.display()
            );
        }
    }
    Ok(())
}

/// `OpenOptions::mode(0o644)` under a name that reads well in a chain.
trait Mode0644 {
    fn mode_0644(&mut self) -> &mut Self;
}

impl Mode0644 for std::fs::OpenOptions {
    fn mode_0644(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_styles() {
        assert_eq!(scalar("a/b.c"), "a/b.c");
        assert_eq!(scalar("with space"), "with space");
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar("a:b"), "a:b");
        assert_eq!(scalar("#x"), "'#x'");
        assert_eq!(scalar("a #x"), "'a #x'");
        assert_eq!(scalar("a#x"), "a#x");
        assert_eq!(scalar("- x"), "'- x'");
        assert_eq!(scalar("-x"), "-x");
        assert_eq!(scalar(" lead"), "' lead'");
        // Blanks at the ends and spaces next to line breaks (libyaml's analysis).
        assert_eq!(scalar("trail "), "'trail '");
        assert_eq!(scalar("a b"), "a b");
        assert_eq!(scalar("a\n b"), "\"a\\n b\"");
        assert_eq!(scalar("a \nb"), "\"a \\nb\"");
        assert_eq!(scalar("it's"), "it's");
        // Past column 80 a space folds the line, never at a quoted scalar's ends; a
        // double-quoted fold before a second space escapes it.
        assert_eq!(scalar_at("aaaa bbbb", 85, 4), "aaaa\n    bbbb");
        assert_eq!(scalar_at("a: b c", 85, 2), "'a:\n  b c'");
        assert_eq!(scalar_at(" a: b", 85, 2), "' a:\n  b'");
        assert_eq!(scalar_at("\u{e9}  x", 85, 2), "\"\\xE9\n  \\ x\"");
        assert_eq!(scalar("'q"), "'''q'");
        assert_eq!(scalar("é"), "\"\\xE9\"");
        assert_eq!(scalar("tab\there"), "\"tab\\there\"");
        for s in ["a: b", "'q", "é", "tab\there", "x\u{2603}"] {
            assert_eq!(unquote(&scalar(s)).unwrap(), s);
        }
    }
}
