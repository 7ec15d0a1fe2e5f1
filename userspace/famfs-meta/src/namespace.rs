//! The in-memory namespace built by playing the log.

use famfs_format::{FileFlags, Fmap, RelPath};
use std::collections::{BTreeMap, BTreeSet};

/// Inode number. The root is [`ROOT_INO`]; numbers are dense and stable for the life of a
/// [`Namespace`] and never reused (a removed node keeps its number, unlinked), so a FUSE server
/// can use them directly as node ids.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// A regular file's data description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// Read-only / read-write flag from the log.
    pub flags: FileFlags,
    /// Where the data lives.
    pub fmap: Fmap,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory and its entries (sorted by name).
    Dir { children: BTreeMap<String, Ino> },
    /// A regular file.
    File(FileInfo),
}

/// One file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// This node's inode number.
    pub ino: Ino,
    /// Parent directory (the root is its own parent).
    pub parent: Ino,
    /// Name in the parent ("" for the root).
    pub name: String,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Index of the log entry that created it (`None` for the root and for directories implied by
    /// a FILE entry whose parent had no MKDIR entry).
    pub log_index: Option<u64>,
    /// File or directory.
    pub kind: NodeKind,
}

impl Node {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }

    /// The file info of a regular file.
    pub fn file(&self) -> Option<&FileInfo> {
        match &self.kind {
            NodeKind::File(f) => Some(f),
            NodeKind::Dir { .. } => None,
        }
    }

    /// Size as `stat` would show it (0 for directories).
    pub fn size(&self) -> u64 {
        self.file().map_or(0, |f| f.size)
    }
}

/// Why an entry could not be applied to the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyConflict {
    /// The path already exists (a FILE over anything, or a MKDIR over a file).
    Exists { is_dir: bool },
    /// A component of the parent path is a file.
    ParentNotDir,
}

/// Why a node could not be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveConflict {
    /// No such node, or it was removed already.
    NotFound,
    /// The root cannot be removed.
    Root,
    /// A directory that still has entries.
    NotEmpty,
}

/// A tree of directories and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    nodes: Vec<Node>,
    nfiles: u64,
    ndirs: u64,
    /// Removed nodes: unlinked from their parent, kept (so numbers stay stable), never listed.
    unlinked: BTreeSet<Ino>,
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new(0o755, 0, 0)
    }
}

impl Namespace {
    /// An empty namespace with a root directory of the given mode and owner.
    pub fn new(root_mode: u32, uid: u32, gid: u32) -> Self {
        let root = Node {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            mode: root_mode,
            uid,
            gid,
            log_index: None,
            kind: NodeKind::Dir {
                children: BTreeMap::new(),
            },
        };
        Namespace {
            nodes: vec![root],
            nfiles: 0,
            ndirs: 0,
            unlinked: BTreeSet::new(),
        }
    }

    /// Whether `ino` was removed (it is no longer in any directory; [`Namespace::get`] still
    /// returns it, as a file descriptor still reaches an unlinked file).
    pub fn is_removed(&self, ino: Ino) -> bool {
        self.unlinked.contains(&ino)
    }

    /// Removes a file or an empty directory from its parent. The node keeps its number and is
    /// left out of [`Namespace::nodes`] and the counts from now on.
    pub fn remove(&mut self, ino: Ino) -> Result<(), RemoveConflict> {
        if ino == ROOT_INO {
            return Err(RemoveConflict::Root);
        }
        if self.is_removed(ino) {
            return Err(RemoveConflict::NotFound);
        }
        let node = self.get(ino).ok_or(RemoveConflict::NotFound)?;
        if let NodeKind::Dir { children } = &node.kind {
            if !children.is_empty() {
                return Err(RemoveConflict::NotEmpty);
            }
        }
        let (parent, name, is_dir) = (node.parent, node.name.clone(), node.is_dir());
        if let Some(NodeKind::Dir { children }) = ino_index(parent)
            .and_then(|i| self.nodes.get_mut(i))
            .map(|n| &mut n.kind)
        {
            children.remove(&name);
        }
        self.unlinked.insert(ino);
        if is_dir {
            self.ndirs -= 1;
        } else {
            self.nfiles -= 1;
        }
        Ok(())
    }

    /// The node of an inode number.
    pub fn get(&self, ino: Ino) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    /// The root directory.
    pub fn root(&self) -> &Node {
        &self.nodes[0]
    }

    /// Looks a name up in a directory.
    pub fn lookup(&self, parent: Ino, name: &str) -> Option<Ino> {
        match &self.get(parent)?.kind {
            NodeKind::Dir { children } => children.get(name).copied(),
            NodeKind::File(_) => None,
        }
    }

    /// The entries of a directory, sorted by name; `None` when `ino` is not a directory.
    pub fn children(&self, ino: Ino) -> Option<impl Iterator<Item = (&str, Ino)>> {
        match &self.get(ino)?.kind {
            NodeKind::Dir { children } => Some(children.iter().map(|(k, &v)| (k.as_str(), v))),
            NodeKind::File(_) => None,
        }
    }

    /// Resolves a path inside the file system ("/a/b", "a/b", "/" and "" name the root).
    pub fn resolve(&self, path: &str) -> Option<Ino> {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            ino = self.lookup(ino, c)?;
        }
        Some(ino)
    }

    /// The path of a node relative to the root ("" for the root).
    pub fn path_of(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut n = self.get(ino)?;
        while n.ino != ROOT_INO {
            parts.push(n.name.as_str());
            n = self.get(n.parent)?;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// Number of regular files.
    pub fn file_count(&self) -> u64 {
        self.nfiles
    }

    /// Number of directories, not counting the root.
    pub fn dir_count(&self) -> u64 {
        self.ndirs
    }

    /// Number of inode numbers given out, the root and removed nodes included (the highest
    /// inode number).
    pub fn len(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// True when only the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1 + self.unlinked.len()
    }

    /// Every node in the namespace (removed ones left out), in inode order: a parent always
    /// comes before its children.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(|n| self.unlinked.is_empty() || !self.unlinked.contains(&n.ino))
    }

    #[allow(clippy::too_many_arguments)] // one call per node kind; a struct would only rename them
    fn add(
        &mut self,
        parent: Ino,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        log_index: Option<u64>,
        kind: NodeKind,
    ) -> Ino {
        let ino = self.nodes.len() as Ino + 1;
        match kind {
            NodeKind::Dir { .. } => self.ndirs += 1,
            NodeKind::File(_) => self.nfiles += 1,
        }
        self.nodes.push(Node {
            ino,
            parent,
            name: name.to_string(),
            mode,
            uid,
            gid,
            log_index,
            kind,
        });
        if let NodeKind::Dir { children } = &mut self.nodes[(parent - 1) as usize].kind {
            children.insert(name.to_string(), ino);
        }
        ino
    }

    /// Finds the parent directory of `path`, creating missing directories (implied by a FILE or
    /// MKDIR entry whose parents have no entry of their own; they inherit the entry's owner).
    fn parent_dir(&mut self, path: &RelPath, uid: u32, gid: u32) -> Result<Ino, ApplyConflict> {
        let mut ino = ROOT_INO;
        let comps: Vec<&str> = path.components().collect();
        for c in &comps[..comps.len() - 1] {
            ino = match self.lookup(ino, c) {
                Some(i) if self.get(i).is_some_and(Node::is_dir) => i,
                Some(_) => return Err(ApplyConflict::ParentNotDir),
                None => {
                    if !self.get(ino).is_some_and(Node::is_dir) {
                        return Err(ApplyConflict::ParentNotDir);
                    }
                    self.add(
                        ino,
                        c,
                        0o755,
                        uid,
                        gid,
                        None,
                        NodeKind::Dir {
                            children: BTreeMap::new(),
                        },
                    )
                }
            };
        }
        Ok(ino)
    }

    /// Applies a MKDIR entry. An existing directory is fine (idempotent play).
    pub fn apply_mkdir(
        &mut self,
        path: &RelPath,
        mode: u32,
        uid: u32,
        gid: u32,
        log_index: Option<u64>,
    ) -> Result<Ino, ApplyConflict> {
        let parent = self.parent_dir(path, uid, gid)?;
        match self.lookup(parent, path.file_name()) {
            Some(i) if self.get(i).is_some_and(Node::is_dir) => Ok(i),
            Some(_) => Err(ApplyConflict::Exists { is_dir: false }),
            None => Ok(self.add(
                parent,
                path.file_name(),
                mode,
                uid,
                gid,
                log_index,
                NodeKind::Dir {
                    children: BTreeMap::new(),
                },
            )),
        }
    }

    /// Applies a FILE entry. An existing path is left as it is and reported.
    pub fn apply_file(
        &mut self,
        path: &RelPath,
        mode: u32,
        uid: u32,
        gid: u32,
        info: FileInfo,
        log_index: Option<u64>,
    ) -> Result<Ino, ApplyConflict> {
        let parent = self.parent_dir(path, uid, gid)?;
        match self.lookup(parent, path.file_name()) {
            Some(i) => Err(ApplyConflict::Exists {
                is_dir: self.get(i).is_some_and(Node::is_dir),
            }),
            None => Ok(self.add(
                parent,
                path.file_name(),
                mode,
                uid,
                gid,
                log_index,
                NodeKind::File(info),
            )),
        }
    }
}

fn ino_index(ino: Ino) -> Option<usize> {
    ino.checked_sub(1).and_then(|i| usize::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use famfs_format::Extent;

    fn info() -> FileInfo {
        FileInfo {
            size: 5,
            flags: FileFlags::READ_WRITE,
            fmap: Fmap::simple(vec![Extent::new(2 << 20, 2 << 20)]).unwrap(),
        }
    }

    #[test]
    fn build_and_query() {
        let mut ns = Namespace::default();
        let p = |s| RelPath::new(s).unwrap();
        let d = ns.apply_mkdir(&p("a"), 0o700, 1, 2, Some(0)).unwrap();
        assert_eq!(ns.apply_mkdir(&p("a"), 0o700, 1, 2, Some(1)), Ok(d));
        let f = ns
            .apply_file(&p("a/b/f"), 0o644, 3, 4, info(), Some(2))
            .unwrap();
        assert_eq!(ns.resolve("/a/b/f"), Some(f));
        assert_eq!(ns.path_of(f).unwrap(), "a/b/f");
        assert_eq!(ns.get(ns.resolve("a/b").unwrap()).unwrap().log_index, None);
        assert_eq!(
            ns.apply_file(&p("a/b/f"), 0o644, 3, 4, info(), Some(3)),
            Err(ApplyConflict::Exists { is_dir: false })
        );
        assert_eq!(
            ns.apply_mkdir(&p("a/b/f"), 0o755, 0, 0, Some(4)),
            Err(ApplyConflict::Exists { is_dir: false })
        );
        assert_eq!(
            ns.apply_file(&p("a/b/f/g"), 0o644, 3, 4, info(), Some(5)),
            Err(ApplyConflict::ParentNotDir)
        );
        assert_eq!(ns.file_count(), 1);
        assert_eq!(ns.dir_count(), 2);
        let names: Vec<_> = ns
            .children(ROOT_INO)
            .unwrap()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, vec!["a"]);
        assert!(ns.children(f).is_none());
        assert_eq!(ns.get(0), None);
        assert_eq!(ns.get(999), None);
        assert_eq!(ns.resolve("/"), Some(ROOT_INO));
    }

    #[test]
    fn remove_unlinks_and_keeps_numbers() {
        let mut ns = Namespace::default();
        let p = |s| RelPath::new(s).unwrap();
        let d = ns.apply_mkdir(&p("d"), 0o755, 0, 0, Some(0)).unwrap();
        let f = ns
            .apply_file(&p("d/f"), 0o644, 0, 0, info(), Some(1))
            .unwrap();
        assert_eq!(ns.remove(d), Err(RemoveConflict::NotEmpty));
        assert_eq!(ns.remove(ROOT_INO), Err(RemoveConflict::Root));
        ns.remove(f).unwrap();
        assert_eq!(ns.remove(f), Err(RemoveConflict::NotFound));
        assert_eq!(ns.resolve("d/f"), None);
        assert!(ns.is_removed(f));
        assert_eq!(
            ns.get(f).unwrap().name,
            "f",
            "an unlinked node is still reachable by number"
        );
        assert_eq!(ns.file_count(), 0);
        assert!(ns.nodes().all(|n| n.ino != f));
        // A new file of the same name is a new node.
        let g = ns
            .apply_file(&p("d/f"), 0o644, 0, 0, info(), Some(2))
            .unwrap();
        assert_ne!(g, f);
        ns.remove(g).unwrap();
        ns.remove(d).unwrap();
        assert!(ns.is_empty());
        assert_eq!(ns.dir_count(), 0);
        assert_eq!(ns.len(), 4);
        assert_eq!(ns.children(ROOT_INO).unwrap().count(), 0);
    }
}
