//! Client of `famfs.ko`'s control device `/dev/famfs` (Documentation/ioctl-abi.md).
//!
//! The ioctl numbers and argument structs come from `famfs_fmap::abi`, the same file the
//! module compiles, so the two sides cannot drift apart.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

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

    /// Revokes the one live file made through this open whose inode number is `ino` (the `ino`
    /// [`Control::create_file`] returned): `IOC_REVOKE_INO`, what [`revoke_file`] does, for a
    /// caller that no longer holds a descriptor of the file (a FUSE server that handed it to a
    /// backing id). Returns whether the file was still mapped. `ENOENT` when no such file lives
    /// (it was evicted: nothing of it is open or mapped any more); like [`revoke_file`] it
    /// waits for I/O in flight and pinned pages (`EINTR` on a signal: the file is revoked all
    /// the same, a second call finishes). `ENOTTY` from a module older than the ioctl.
    pub fn revoke_ino(&self, ino: u64) -> io::Result<bool> {
        let args = self.revoke_ino_raw(abi::RevokeInoArgs {
            ino,
            ..Default::default()
        })?;
        Ok(args.was_mapped != 0)
    }

    /// `IOC_REVOKE_INO` with the argument as given (tests pass bad ones on purpose).
    pub fn revoke_ino_raw(&self, mut args: abi::RevokeInoArgs) -> io::Result<abi::RevokeInoArgs> {
        // SAFETY: IOC_REVOKE_INO takes a `*mut RevokeInoArgs`.
        unsafe { ioctl_ptr(&self.file, abi::IOC_REVOKE_INO, &mut args)? };
        Ok(args)
    }

    /// Arms or renews this open's lease (`IOC_LEASE`) for `timeout` from now; `Duration::ZERO`
    /// disarms it. While armed, the lease must be renewed before it runs out: when it is not, or
    /// when this open is closed with the lease armed, the module revokes every file made through
    /// the open exactly as [`Control::revoke`] does (from a work item of its own, so a stopped or
    /// killed server fences its host), and logs `famfs: lease expired`. Disarm before a clean
    /// close to keep the files. `timeout` is rounded up to whole milliseconds and must lie in
    /// `abi::LEASE_MIN_MS..=abi::LEASE_MAX_MS` (else `EINVAL`). `ESTALE` once the lease has
    /// expired or the open was revoked; `ENOTTY` from a module older than the ioctl.
    pub fn set_lease(&self, timeout: Duration) -> io::Result<()> {
        let mut args = abi::LeaseArgs {
            timeout_ms: lease_ms(timeout)?,
            ..Default::default()
        };
        // SAFETY: IOC_LEASE takes a `*mut LeaseArgs`.
        unsafe { ioctl_ptr(&self.file, abi::IOC_LEASE, &mut args)? };
        Ok(())
    }

    /// `IOC_LEASE` with the argument as given, unchecked (tests pass bad ones on purpose).
    pub fn lease_raw(&self, mut args: abi::LeaseArgs) -> io::Result<()> {
        // SAFETY: IOC_LEASE takes a `*mut LeaseArgs`.
        unsafe { ioctl_ptr(&self.file, abi::IOC_LEASE, &mut args)? };
        Ok(())
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

/// A lease duration in the module's unit: whole milliseconds, rounded up (a lease is never
/// shorter than asked); `EINVAL` when it does not fit a `u32`.
pub fn lease_ms(timeout: Duration) -> io::Result<u32> {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The state of a DAX file made by the module (`IOC_FILE_STATE`): `mapped` is 1 while any
/// mapping of it exists (also one made through a FUSE passthrough open), `revoked` is 1 once
/// it was revoked (by [`revoke_file`], [`Control::revoke`] or a lease expiry).
pub fn file_state(file: &impl AsRawFd) -> io::Result<abi::FileStateArgs> {
    let mut args = abi::FileStateArgs::default();
    // SAFETY: IOC_FILE_STATE takes a `*mut FileStateArgs`.
    unsafe { ioctl_ptr(file, abi::IOC_FILE_STATE, &mut args)? };
    Ok(args)
}

/// Revokes one DAX file made by the module (`IOC_REVOKE_FILE`, needs `CAP_SYS_ADMIN`): from
/// now on its reads, writes, opens and mmaps fail with `ESTALE`; every mapping of it is zapped
/// and later faults get `SIGBUS`. Other files, also on the same devices, are untouched. Like
/// [`Control::revoke`] it waits for reads and writes in flight and for pinned pages, and a
/// signal ends the wait (`EINTR`: the file is revoked all the same, a second call finishes).
/// Idempotent.
pub fn revoke_file(file: &impl AsRawFd) -> io::Result<()> {
    let mut args = abi::RevokeFileArgs::default();
    // SAFETY: IOC_REVOKE_FILE takes a `*mut RevokeFileArgs`.
    unsafe { ioctl_ptr(file, abi::IOC_REVOKE_FILE, &mut args)? };
    Ok(())
}

/// `IOC_REVOKE_FILE` with the argument as given (tests pass bad ones on purpose).
pub fn revoke_file_raw(file: &impl AsRawFd, mut args: abi::RevokeFileArgs) -> io::Result<()> {
    // SAFETY: IOC_REVOKE_FILE takes a `*mut RevokeFileArgs`.
    unsafe { ioctl_ptr(file, abi::IOC_REVOKE_FILE, &mut args)? };
    Ok(())
}

/// `IOC_FILE_STATE` with the argument as given (tests pass bad ones on purpose).
pub fn file_state_raw(
    file: &impl AsRawFd,
    mut args: abi::FileStateArgs,
) -> io::Result<abi::FileStateArgs> {
    // SAFETY: IOC_FILE_STATE takes a `*mut FileStateArgs`.
    unsafe { ioctl_ptr(file, abi::IOC_FILE_STATE, &mut args)? };
    Ok(args)
}

/// Errno of an `io::Error`, for tests that expect a specific one.
pub fn errno_of(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// The ioctl numbers of the shared ABI, checked against libc's own `_IOWR` (an encoding
    /// written independently of `abi::ioc`), with the struct sizes the kernel side pins.
    #[test]
    fn lease_and_file_ioctls_match_libc_iowr() {
        assert_eq!(size_of::<abi::LeaseArgs>(), 24);
        assert_eq!(size_of::<abi::FileStateArgs>(), 24);
        assert_eq!(size_of::<abi::RevokeFileArgs>(), 24);
        let magic = abi::IOC_MAGIC;
        assert_eq!(
            abi::IOC_LEASE as u64,
            libc::_IOWR::<abi::LeaseArgs>(magic, 6) as u64
        );
        assert_eq!(
            abi::IOC_FILE_STATE as u64,
            libc::_IOWR::<abi::FileStateArgs>(magic, 7) as u64
        );
        assert_eq!(
            abi::IOC_REVOKE_FILE as u64,
            libc::_IOWR::<abi::RevokeFileArgs>(magic, 8) as u64
        );
        assert_eq!(
            abi::IOC_REVOKE as u64,
            libc::_IOWR::<abi::RevokeArgs>(magic, 5) as u64
        );
    }

    #[test]
    fn lease_ms_rounds_up_and_refuses_overflow() {
        assert_eq!(lease_ms(Duration::ZERO).unwrap(), 0);
        assert_eq!(lease_ms(Duration::from_millis(250)).unwrap(), 250);
        assert_eq!(lease_ms(Duration::from_micros(1)).unwrap(), 1);
        assert_eq!(lease_ms(Duration::from_micros(10_001)).unwrap(), 11);
        let max = Duration::from_millis(u64::from(u32::MAX));
        assert_eq!(lease_ms(max).unwrap(), u32::MAX);
        let e = lease_ms(max + Duration::from_millis(1)).unwrap_err();
        assert_eq!(errno_of(&e), libc::EINVAL);
    }
}
