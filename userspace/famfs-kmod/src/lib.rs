//! Client of `famfs.ko`'s control device `/dev/famfs` (Documentation/ioctl-abi.md).
//!
//! The ioctl numbers and argument structs come from `famfs_fmap::abi`, the same file the
//! module compiles, so the two sides cannot drift apart.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

pub use famfs_fmap::abi;

/// Where the module's control device appears.
pub const CONTROL_PATH: &str = "/dev/famfs";

/// An open of `/dev/famfs`: owns a daxdev table in the module, released on drop.
#[derive(Debug)]
pub struct Control {
    file: File,
}

/// A DAX file made by [`Control::create_file`].
#[derive(Debug)]
pub struct DaxFile {
    /// The open file (read-write, or read-only for read-only maps).
    pub file: File,
    /// Its inode number on the module's internal mount.
    pub ino: u64,
}

/// Issues one ioctl whose argument is a pointer to `arg`.
///
/// # Safety
///
/// `cmd` must be an ioctl whose argument is a `T` that the kernel reads and/or writes.
// SAFETY: (contract) callers uphold `# Safety` above, which the ioctl below relies on.
unsafe fn ioctl_ptr<T>(fd: &impl AsRawFd, cmd: u32, arg: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: The caller guarantees `cmd` takes a `*mut T`; `arg` is a valid, exclusive `T`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as libc::c_ulong, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Control {
    /// Opens `/dev/famfs`; `ENOENT` means the module is not loaded.
    pub fn open() -> io::Result<Self> {
        Self::open_path(Path::new(CONTROL_PATH))
    }

    /// Opens the control device at `path`.
    pub fn open_path(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file })
    }

    /// The module's ABI version and limits.
    pub fn version(&self) -> io::Result<abi::VersionArgs> {
        let mut args = abi::VersionArgs::default();
        // SAFETY: IOC_VERSION takes a `*mut VersionArgs`.
        unsafe { ioctl_ptr(&self.file, abi::IOC_VERSION, &mut args)? };
        Ok(args)
    }

    /// Attaches the devdax device open as `dev` at `index` of this open's table; returns its
    /// size in bytes.
    pub fn attach_daxdev(&self, dev: &impl AsRawFd, index: u32) -> io::Result<u64> {
        self.attach_raw_fd(dev.as_raw_fd(), index)
    }

    /// As [`Control::attach_daxdev`], with a raw descriptor (tests pass bad ones on purpose).
    pub fn attach_raw_fd(&self, fd: i32, index: u32) -> io::Result<u64> {
        let mut args = abi::AttachDaxdevArgs {
            fd,
            index,
            ..Default::default()
        };
        // SAFETY: IOC_ATTACH_DAXDEV takes a `*mut AttachDaxdevArgs`.
        unsafe { ioctl_ptr(&self.file, abi::IOC_ATTACH_DAXDEV, &mut args)? };
        Ok(args.size)
    }

    /// Creates a DAX file whose data is described by the fmap message `fmap`.
    pub fn create_file(
        &self,
        fmap: &[u8],
        flags: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<DaxFile> {
        let fmap_len =
            u32::try_from(fmap.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        let mut args = abi::CreateFileArgs {
            fmap_ptr: fmap.as_ptr() as u64,
            fmap_len,
            flags,
            mode,
            uid,
            gid,
            ..Default::default()
        };
        // SAFETY: IOC_CREATE_FILE takes a `*mut CreateFileArgs`; `fmap_ptr` points at
        // `fmap_len` readable bytes for the duration of the call.
        unsafe { ioctl_ptr(&self.file, abi::IOC_CREATE_FILE, &mut args)? };
        // SAFETY: On success the module installed a new descriptor that we now own.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(args.fd) });
        Ok(DaxFile {
            file,
            ino: args.ino,
        })
    }

    /// Revokes every file made through this open (`IOC_REVOKE`): the file system on its devices
    /// was replaced. Every mapping of those files is zapped, later faults get `SIGBUS`, reads,
    /// writes, opens and mmaps `ESTALE`; this open then refuses to attach or create. Returns the
    /// module's counts (`devices`, and `files` unmapped, once per device a file maps). It waits
    /// for reads and writes in flight and for pinned pages, so it may block as long as a pin is
    /// held: call it without locks others need. A signal ends the wait (`EINTR`; the files are
    /// revoked all the same, a second call finishes). `ENOTTY` from a module older than the
    /// ioctl.
    pub fn revoke(&self) -> io::Result<abi::RevokeArgs> {
        let mut args = abi::RevokeArgs::default();
        // SAFETY: IOC_REVOKE takes a `*mut RevokeArgs`.
        unsafe { ioctl_ptr(&self.file, abi::IOC_REVOKE, &mut args)? };
        Ok(args)
    }

    /// Another descriptor of the same open (the same daxdev table), e.g. for a thread that
    /// revokes while others keep using the first.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            file: self.file.try_clone()?,
        })
    }

    /// The control device's open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The fmap message and `CREATE_*` flags of a DAX file made by the module.
pub fn get_fmap(file: &impl AsRawFd) -> io::Result<(Vec<u8>, u32)> {
    let mut buf = vec![0u8; 4096];
    let mut args = abi::GetFmapArgs {
        buf_ptr: buf.as_mut_ptr() as u64,
        buf_len: buf.len() as u32,
        ..Default::default()
    };
    // SAFETY: IOC_GET_FMAP takes a `*mut GetFmapArgs`; `buf_ptr` points at `buf_len` writable
    // bytes for the duration of the call.
    unsafe { ioctl_ptr(file, abi::IOC_GET_FMAP, &mut args)? };
    buf.truncate(args.fmap_len as usize);
    Ok((buf, args.flags))
}

/// Errno of an `io::Error`, for tests that expect a specific one.
pub fn errno_of(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(0)
}
