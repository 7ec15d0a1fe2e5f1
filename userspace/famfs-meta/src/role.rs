//! Master and client roles (see on-media.md, "Roles").

use famfs_format::{format_uuid, parse_uuid, UuidBytes};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the host's system uuid lives.
pub const SYSTEM_UUID_PATH: &str = "/opt/famfs/system_uuid";
/// Environment variable overriding [`SYSTEM_UUID_PATH`] (tests, containers).
pub const SYSTEM_UUID_ENV: &str = "FAMFS_SYSTEM_UUID_FILE";

/// This host's relation to a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The superblock's system uuid is ours: we may append to the log.
    Master,
    /// Read-only access to metadata.
    Client,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Client => "client",
        })
    }
}

/// The system uuid file in effect (the env override, else the default path).
pub fn system_uuid_path() -> PathBuf {
    std::env::var_os(SYSTEM_UUID_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_UUID_PATH))
}

/// Parses the content of a system uuid file: the 36-character uuid, optionally followed by a
/// newline (what famfs-rs writes) or by a NUL byte (what the C tools write: they `fprintf` the
/// string with its terminator and read it back with `%36s`). Both tools accept both forms.
pub fn parse_uuid_file(b: &[u8]) -> Option<UuidBytes> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = std::str::from_utf8(&b[..end]).ok()?;
    parse_uuid(s)
}

/// Reads the host's system uuid, creating the file with a random uuid (mode 0444) when missing.
/// Creation is race-free: the uuid is written to a temporary file that is then hard-linked into
/// place, so concurrent first runs all end up with the same uuid.
pub fn local_system_uuid(path: &Path) -> std::io::Result<UuidBytes> {
    match std::fs::read(path) {
        Ok(b) => {
            return parse_uuid_file(&b).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a 36-character uuid (fix or remove the file)",
                        path.display()
                    ),
                )
            })
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let uuid = *uuid::Uuid::new_v4().as_bytes();
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)?;
        writeln!(f, "{}", format_uuid(&uuid))?;
        f.sync_all()?;
    }
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444));
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(uuid),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => local_system_uuid(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/system_uuid");
        let a = local_system_uuid(&p).unwrap();
        let b = local_system_uuid(&p).unwrap();
        assert_eq!(a, b);
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
        assert_eq!(std::fs::read_to_string(&p).unwrap().trim().len(), 36);
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "garbage").unwrap();
        assert!(local_system_uuid(&p).is_err());
    }

    /// The file as the C tools write it (36 characters and a NUL byte, no newline), from
    /// userspace/testdata/c-famfs/ (made by the C tools, not by us).
    #[test]
    fn c_made_file_accepted() {
        let c = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/c-famfs/system_uuid.c-made"
        );
        let bytes = std::fs::read(c).unwrap();
        assert_eq!(bytes.len(), 37);
        assert_eq!(bytes[36], 0);
        let want = parse_uuid(std::str::from_utf8(&bytes[..36]).unwrap()).unwrap();
        assert_eq!(local_system_uuid(Path::new(c)).unwrap(), want);
        // What we write is what the C reader (`%36s`) takes: 36 characters then white space.
        let d = tempfile::tempdir().unwrap();
        let ours = d.path().join("system_uuid");
        let u = local_system_uuid(&ours).unwrap();
        let text = std::fs::read(&ours).unwrap();
        assert_eq!(&text[..36], format_uuid(&u).as_bytes());
        assert_eq!(&text[36..], b"\n");
        // Garbage after a NUL is ignored (the C reader stops there too), garbage before is not.
        assert_eq!(
            parse_uuid_file(b"0705d3e6-56e5-4e06-88c9-e429986f02c6\0junk"),
            Some(want)
        );
        assert_eq!(
            parse_uuid_file(b"0705d3e6-56e5-4e06-88c9-e429986f02c6x\0"),
            None
        );
    }
}
