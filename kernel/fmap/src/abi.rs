//! The `/dev/famfs` ioctl ABI: the one definition shared by `famfs.ko` and user space.
//!
//! This file refers to nothing but `core` so that the kernel module can include it by path
//! (`#[path = "fmap/src/abi.rs"] mod abi;`). Every argument struct is `#[repr(C)]` with
//! explicit padding fields, no implicit holes, and a size pinned by a test; reserved fields
//! must be zero on input (the module returns `EINVAL` otherwise) so they can gain meaning later.
//! See Documentation/ioctl-abi.md.

/// Bumped on any incompatible change of this file.
pub const ABI_VERSION: u32 = 1;

/// The ioctl "type" byte of every famfs ioctl.
pub const IOC_MAGIC: u32 = 0xFA;

/// Most devdax devices a single open of `/dev/famfs` can attach (fmap-wire.md).
pub const MAX_DAXDEVS: u32 = 64;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// The generic Linux ioctl number encoding (x86, arm64, riscv: `include/uapi/asm-generic/ioctl.h`).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | (IOC_MAGIC << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `FAMFS_IOC_VERSION`: `_IOR(0xFA, 1, VersionArgs)`, on `/dev/famfs`.
pub const IOC_VERSION: u32 = ioc(IOC_READ, 1, core::mem::size_of::<VersionArgs>());
/// `FAMFS_IOC_ATTACH_DAXDEV`: `_IOWR(0xFA, 2, AttachDaxdevArgs)`, on `/dev/famfs`.
pub const IOC_ATTACH_DAXDEV: u32 = ioc(
    IOC_READ | IOC_WRITE,
    2,
    core::mem::size_of::<AttachDaxdevArgs>(),
);
/// `FAMFS_IOC_CREATE_FILE`: `_IOWR(0xFA, 3, CreateFileArgs)`, on `/dev/famfs`.
pub const IOC_CREATE_FILE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    3,
    core::mem::size_of::<CreateFileArgs>(),
);
/// `FAMFS_IOC_GET_FMAP`: `_IOWR(0xFA, 4, GetFmapArgs)`, on a file made by `IOC_CREATE_FILE`.
pub const IOC_GET_FMAP: u32 = ioc(IOC_READ | IOC_WRITE, 4, core::mem::size_of::<GetFmapArgs>());
/// `FAMFS_IOC_REVOKE`: `_IOWR(0xFA, 5, RevokeArgs)`, on `/dev/famfs`: revoke every file made
/// through this open (the files of every device in its table).
pub const IOC_REVOKE: u32 = ioc(IOC_READ | IOC_WRITE, 5, core::mem::size_of::<RevokeArgs>());
/// `FAMFS_IOC_LEASE`: `_IOWR(0xFA, 6, LeaseArgs)`, on `/dev/famfs`: arm, renew or disarm this
/// open's lease (when it is not renewed in time, every file made through the open is revoked).
pub const IOC_LEASE: u32 = ioc(IOC_READ | IOC_WRITE, 6, core::mem::size_of::<LeaseArgs>());
/// `FAMFS_IOC_FILE_STATE`: `_IOWR(0xFA, 7, FileStateArgs)`, on a file made by
/// `IOC_CREATE_FILE`: whether it is mapped, whether it is revoked.
pub const IOC_FILE_STATE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    7,
    core::mem::size_of::<FileStateArgs>(),
);
/// `FAMFS_IOC_REVOKE_FILE`: `_IOWR(0xFA, 8, RevokeFileArgs)`, on a file made by
/// `IOC_CREATE_FILE`: revoke that one file.
pub const IOC_REVOKE_FILE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    8,
    core::mem::size_of::<RevokeFileArgs>(),
);
/// `FAMFS_IOC_REVOKE_INO`: `_IOWR(0xFA, 9, RevokeInoArgs)`, on `/dev/famfs`: revoke the one
/// file made through this open whose inode number is `ino` (as `IOC_REVOKE_FILE` does on the
/// file itself), for a server that no longer holds a descriptor of it.
pub const IOC_REVOKE_INO: u32 = ioc(
    IOC_READ | IOC_WRITE,
    9,
    core::mem::size_of::<RevokeInoArgs>(),
);

/// Output of `IOC_VERSION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionArgs {
    /// [`ABI_VERSION`] of the running module.
    pub abi_version: u32,
    /// [`MAX_DAXDEVS`].
    pub max_daxdevs: u32,
    /// Largest fmap message accepted, in bytes.
    pub max_fmap_len: u32,
    /// Zero today.
    pub reserved: u32,
}

/// Argument of `IOC_ATTACH_DAXDEV`: attach the devdax device open as `fd` at `index` of the
/// caller's daxdev table (one table per open of `/dev/famfs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachDaxdevArgs {
    /// In: an open file descriptor of a `/dev/daxN.M` character device bound to `fsdev_dax`.
    pub fd: i32,
    /// In: the table index, `< MAX_DAXDEVS`; the fmap's `devindex` names it.
    pub index: u32,
    /// Out: the device size in bytes.
    pub size: u64,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// `CreateFileArgs::flags`: the file refuses writable opens and writable shared mappings.
pub const CREATE_READ_ONLY: u32 = 1 << 0;
/// `CreateFileArgs::flags`: the returned descriptor is close-on-exec.
pub const CREATE_CLOEXEC: u32 = 1 << 1;
/// Every `CreateFileArgs::flags` bit the module knows.
pub const CREATE_FLAGS_ALL: u32 = CREATE_READ_ONLY | CREATE_CLOEXEC;

/// Argument of `IOC_CREATE_FILE`: make a DAX file whose data is the fmap message at `fmap_ptr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateFileArgs {
    /// In: user address of the fmap message (fmap-wire.md).
    pub fmap_ptr: u64,
    /// In: its length in bytes.
    pub fmap_len: u32,
    /// In: `CREATE_*` flags.
    pub flags: u32,
    /// In: permission bits of the new inode (`mode & 0o7777`).
    pub mode: u32,
    /// In: owner of the new inode.
    pub uid: u32,
    /// In: group of the new inode.
    pub gid: u32,
    /// Out: the new file descriptor (opened read-write, or read-only for read-only files).
    pub fd: i32,
    /// Out: the inode number on the module's internal mount.
    pub ino: u64,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// Argument of `IOC_GET_FMAP`: copy the file's fmap message back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetFmapArgs {
    /// In: user address of a buffer.
    pub buf_ptr: u64,
    /// In: its length; `ERANGE` when shorter than the message (`fmap_len` then says how long).
    pub buf_len: u32,
    /// Out: the message length.
    pub fmap_len: u32,
    /// Out: the file's `CREATE_*` flags.
    pub flags: u32,
    /// Must be zero.
    pub reserved0: u32,
    /// Must be zero.
    pub reserved: u64,
}

/// Argument of `IOC_REVOKE`: the file system behind this open's devices was replaced; every file
/// made through the open fails from now on (mappings zapped, faults `SIGBUS`, I/O `ESTALE`), and
/// the open refuses `IOC_ATTACH_DAXDEV` and `IOC_CREATE_FILE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevokeArgs {
    /// Must be zero (no flags yet).
    pub flags: u32,
    /// Out: how many devices of the table were revoked.
    pub devices: u32,
    /// Out: live files whose mappings were zapped, counted once per device they map.
    pub files: u64,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// Shortest lease `IOC_LEASE` accepts, in milliseconds (0 disarms).
pub const LEASE_MIN_MS: u32 = 10;
/// Longest lease `IOC_LEASE` accepts, in milliseconds (one hour).
pub const LEASE_MAX_MS: u32 = 3_600_000;

/// Argument of `IOC_LEASE`: arms or renews this open's lease for `timeout_ms` from now, or
/// disarms it (`timeout_ms == 0`). When no `IOC_LEASE` renews an armed lease in time, or the
/// open is closed with its lease armed, the module revokes every file made through the open
/// exactly as `IOC_REVOKE` does (from a work item of its own); `IOC_LEASE` then fails with
/// `ESTALE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseArgs {
    /// In: the lease, `LEASE_MIN_MS..=LEASE_MAX_MS`, or 0 to disarm.
    pub timeout_ms: u32,
    /// Must be zero (no flags yet).
    pub flags: u32,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// Argument of `IOC_FILE_STATE`: the state of one file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStateArgs {
    /// Out: 1 while any mapping (VMA) of the file exists, else 0.
    pub mapped: u32,
    /// Out: 1 once the file is revoked (`IOC_REVOKE_FILE`, or `IOC_REVOKE`/a lease expiry on
    /// the open it was made through), else 0.
    pub revoked: u32,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// Argument of `IOC_REVOKE_FILE`: revoke this one file for good (I/O and opens `ESTALE`,
/// mappings zapped and later faults `SIGBUS`), waiting for the I/O in flight and pinned pages.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevokeFileArgs {
    /// Must be zero (no flags yet).
    pub flags: u32,
    /// Must be zero.
    pub reserved0: u32,
    /// Must be zero.
    pub reserved: [u64; 2],
}

/// Argument of `IOC_REVOKE_INO`: revoke the live file made through this open with inode number
/// `ino` (the `ino` `IOC_CREATE_FILE` returned). `ENOENT` when no such file lives any more (it
/// was evicted: nothing of it is mapped or open).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevokeInoArgs {
    /// In: the inode number.
    pub ino: u64,
    /// Must be zero (no flags yet).
    pub flags: u32,
    /// Out: 1 when the file was still mapped when it was revoked, else 0.
    pub was_mapped: u32,
    /// Must be zero.
    pub reserved: [u64; 2],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn sizes_are_pinned() {
        assert_eq!(size_of::<VersionArgs>(), 16);
        assert_eq!(size_of::<AttachDaxdevArgs>(), 32);
        assert_eq!(size_of::<CreateFileArgs>(), 56);
        assert_eq!(size_of::<GetFmapArgs>(), 32);
        assert_eq!(size_of::<RevokeArgs>(), 32);
        assert_eq!(size_of::<LeaseArgs>(), 24);
        assert_eq!(size_of::<FileStateArgs>(), 24);
        assert_eq!(size_of::<RevokeFileArgs>(), 24);
        assert_eq!(size_of::<RevokeInoArgs>(), 32);
    }

    #[test]
    fn ioctl_numbers_match_the_c_macros() {
        // _IOR(0xFA, 1, 16 bytes) and _IOWR(0xFA, 2, 32 bytes) computed by hand.
        assert_eq!(IOC_VERSION, 0x8010_FA01);
        assert_eq!(IOC_ATTACH_DAXDEV, 0xC020_FA02);
        assert_eq!(IOC_CREATE_FILE, 0xC038_FA03);
        assert_eq!(IOC_GET_FMAP, 0xC020_FA04);
        assert_eq!(IOC_REVOKE, 0xC020_FA05);
        // _IOWR(0xFA, 6..=8, 24 bytes).
        assert_eq!(IOC_LEASE, 0xC018_FA06);
        assert_eq!(IOC_FILE_STATE, 0xC018_FA07);
        assert_eq!(IOC_REVOKE_FILE, 0xC018_FA08);
        // _IOWR(0xFA, 9, 32 bytes).
        assert_eq!(IOC_REVOKE_INO, 0xC020_FA09);
    }
}
