use crate::{FormatError, MAX_RELPATH, RELPATH_FIELD};
use std::fmt;

/// A path relative to the file system root, as stored in log entries: non-empty, at most 79 bytes,
/// no leading '/', no NUL, and no empty, "." or ".." component. Holding a `RelPath` proves all that,
/// so the log never gets a path that would escape the mount point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Validates a relative path.
    pub fn new(s: &str) -> Result<Self, FormatError> {
        if s.is_empty() {
            return Err(FormatError::PathEmpty);
        }
        if s.len() > MAX_RELPATH {
            return Err(FormatError::PathTooLong { len: s.len() });
        }
        if s.starts_with('/') {
            return Err(FormatError::PathAbsolute);
        }
        if s.contains('\0') {
            return Err(FormatError::PathNul);
        }
        for c in s.split('/') {
            if c.is_empty() || c == "." || c == ".." {
                return Err(FormatError::PathBadComponent(c.to_string()));
            }
        }
        Ok(RelPath(s.to_string()))
    }

    /// Builds a relpath from a path inside the file system such as "/a/b" or "a/b" (leading and
    /// trailing slashes and repeated slashes are dropped; "." components are dropped; ".." is refused).
    pub fn from_fs_path(p: &str) -> Result<Self, FormatError> {
        let parts: Vec<&str> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        RelPath::new(&parts.join("/"))
    }

    /// The path as text (no leading '/').
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components of the path.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The parent path, `None` for a top-level name.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(self.0[..i].to_string()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Appends a component (validated).
    pub fn join(&self, name: &str) -> Result<RelPath, FormatError> {
        RelPath::new(&format!("{}/{}", self.0, name))
    }

    pub(crate) fn encode(&self, field: &mut [u8]) {
        field[..RELPATH_FIELD].fill(0);
        field[..self.0.len()].copy_from_slice(self.0.as_bytes());
    }

    /// Decodes the 80-byte field: the text before the first NUL, which must exist.
    pub(crate) fn decode(field: &[u8]) -> Result<Self, FormatError> {
        let field = &field[..RELPATH_FIELD];
        let end = field
            .iter()
            .position(|&b| b == 0)
            .ok_or(FormatError::PathNotTerminated)?;
        let s = std::str::from_utf8(&field[..end]).map_err(|_| FormatError::PathNotUtf8)?;
        RelPath::new(s)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(RelPath::new("a/b/c").is_ok());
        assert_eq!(RelPath::new(""), Err(FormatError::PathEmpty));
        assert_eq!(RelPath::new("/a"), Err(FormatError::PathAbsolute));
        assert_eq!(RelPath::new("a\0b"), Err(FormatError::PathNul));
        assert!(matches!(
            RelPath::new("a/../b"),
            Err(FormatError::PathBadComponent(_))
        ));
        assert!(matches!(
            RelPath::new(".."),
            Err(FormatError::PathBadComponent(_))
        ));
        assert!(matches!(
            RelPath::new("a//b"),
            Err(FormatError::PathBadComponent(_))
        ));
        assert!(matches!(
            RelPath::new("a/"),
            Err(FormatError::PathBadComponent(_))
        ));
        assert!(RelPath::new(&"x".repeat(79)).is_ok());
        assert_eq!(
            RelPath::new(&"x".repeat(80)),
            Err(FormatError::PathTooLong { len: 80 })
        );
        assert_eq!(RelPath::from_fs_path("//a/./b/").unwrap().as_str(), "a/b");
        assert!(RelPath::from_fs_path("/").is_err());
    }

    #[test]
    fn field_round_trip() {
        let p = RelPath::new(&"y".repeat(79)).unwrap();
        let mut f = [0xffu8; 80];
        p.encode(&mut f);
        assert_eq!(f[79], 0);
        assert_eq!(RelPath::decode(&f).unwrap(), p);
        assert_eq!(
            RelPath::decode(&[b'a'; 80]),
            Err(FormatError::PathNotTerminated)
        );
        let mut bad = [0u8; 80];
        bad[0] = 0xff;
        assert_eq!(RelPath::decode(&bad), Err(FormatError::PathNotUtf8));
    }

    #[test]
    fn parent_and_name() {
        let p = RelPath::new("a/b/c").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.file_name(), "c");
        assert_eq!(RelPath::new("a").unwrap().parent(), None);
    }
}
