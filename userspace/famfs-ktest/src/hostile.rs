//! Hostile callers: random and mutated fmap messages, random ioctl numbers and pointers, bad and
//! recycled descriptors, and concurrent create/close, against famfs.ko. The kernel's verdict on
//! every message must be the shared crate's verdict in user space (same errno), and the module
//! must work afterwards with every object released.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use famfs_fmap::{encode_interleaved, encode_simple, FileType, Fmap, InterleaveSpec, SimpleExtent};
use famfs_kmod::{abi, errno_of, Control};

use crate::{ctx, open_dev};

const MIB: u64 = 1 << 20;

/// xorshift64*: small, seeded, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The errno user space predicts for `msg` on a table holding one device of `dev_size` at 0.
fn predicted(msg: &[u8], dev_size: u64) -> i32 {
    if msg.len() > famfs_fmap::MAX_MSG_LEN {
        return libc::E2BIG;
    }
    if msg.len() < famfs_fmap::HEADER_LEN {
        return libc::EINVAL;
    }
    match Fmap::parse(msg).and_then(|f| f.check_devices(|i| (i == 0).then_some(dev_size))) {
        Ok(()) => 0,
        Err(e) => e.errno(),
    }
}

fn valid_message(rng: &mut Rng, dev_size: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let slots = dev_size / (2 * MIB);
    let ext = |rng: &mut Rng| SimpleExtent {
        devindex: 0,
        offset: rng.below(slots - 8) * 2 * MIB,
        len: (1 + rng.below(4)) * 2 * MIB,
    };
    let n = if rng.below(2) == 0 {
        let exts: Vec<SimpleExtent> = (0..1 + rng.below(4)).map(|_| ext(rng)).collect();
        let total: u64 = exts.iter().map(|e| e.len).sum();
        encode_simple(&mut buf, FileType::Regular, 1 + rng.below(total), &exts)
    } else {
        let nstrips = 1 + rng.below(4) as usize;
        let strips: Vec<SimpleExtent> = (0..nstrips)
            .map(|_| SimpleExtent {
                devindex: 0,
                offset: rng.below(slots - 8) * 2 * MIB,
                len: 4 * MIB,
            })
            .collect();
        let nbytes = nstrips as u64 * 4 * MIB;
        encode_interleaved(
            &mut buf,
            FileType::Regular,
            1 + rng.below(nbytes),
            &[InterleaveSpec {
                chunk_size: (2 * MIB) as u32,
                nbytes,
                strips: &strips,
            }],
        )
    };
    buf.truncate(n.unwrap_or(0));
    buf
}

fn mutate(rng: &mut Rng, msg: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !msg.is_empty() => {
                let i = rng.below(msg.len() as u64) as usize;
                msg[i] ^= 1 << rng.below(8);
            }
            1 if !msg.is_empty() => {
                let i = rng.below(msg.len() as u64) as usize;
                msg[i] = rng.next() as u8;
            }
            2 => msg.truncate(rng.below(msg.len() as u64 + 1) as usize),
            3 => msg.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            _ if msg.len() >= 24 => {
                // Interesting integers in a 64-bit field: overflow and boundary values.
                let at = 8 * rng.below(msg.len() as u64 / 8) as usize;
                let v = [
                    0,
                    1,
                    u64::MAX,
                    u64::MAX - 2 * MIB + 1,
                    1 << 63,
                    2 * MIB,
                    4 << 30,
                ][rng.below(7) as usize];
                msg[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
}

fn raw_ioctl(fd: i32, cmd: u64, arg: usize) -> i32 {
    // The argument may point anywhere on purpose (the module must validate everything), but
    // never into this process's live data: only null, unmapped, kernel or scratch addresses.
    // SAFETY: A wrong write by the kernel could only hit the scratch buffer.
    let rc = unsafe { libc::ioctl(fd, cmd as libc::c_ulong, arg) };
    if rc < 0 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

pub(crate) fn run(seconds: u64, seed: u64) -> Result<(), String> {
    let daxdev =
        std::env::var("FAMFS_DAXDEV").map_err(|_| "FAMFS_DAXDEV is not set".to_string())?;
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut messages, mut accepted, mut ioctls, mut fds) = (0u64, 0u64, 0u64, 0u64);
    {
        let ctl = ctx("open /dev/famfs", Control::open())?;
        let dev = open_dev(&daxdev)?;
        let dev_size = ctx("attach", ctl.attach_daxdev(&dev, 0))?;
        let mut scratch = vec![0u8; 8192];
        let mut files = Vec::new();
        while Instant::now() < deadline {
            match rng.below(10) {
                // Messages: random, or a valid one mutated; the kernel must agree with user space.
                0..=5 => {
                    let mut msg = if rng.below(4) == 0 {
                        (0..rng.below(300)).map(|_| rng.next() as u8).collect()
                    } else {
                        valid_message(&mut rng, dev_size)
                    };
                    if rng.below(3) != 0 {
                        mutate(&mut rng, &mut msg);
                    }
                    let want = predicted(&msg, dev_size);
                    messages += 1;
                    match ctl.create_file(&msg, 0, 0o600, 0, 0) {
                        Ok(f) => {
                            if want != 0 {
                                return Err(format!("kernel accepted a message user space refuses with errno {want}: {msg:02x?}"));
                            }
                            accepted += 1;
                            let size = Fmap::parse(&msg).map(|m| m.file_size()).unwrap_or(0);
                            let len = ctx("fstat", f.file.metadata())?.len();
                            if len != size {
                                return Err(format!("file size {len}, map says {size}"));
                            }
                            let off = rng.below(size + 4096);
                            let _ = f.file.write_at(b"hostile", off);
                            let _ = f.file.read_at(&mut scratch[..64], off);
                            if files.len() < 64 {
                                files.push(f)
                            } else {
                                files.clear()
                            }
                        }
                        Err(e) if errno_of(&e) == want => {}
                        Err(e) => {
                            return Err(format!(
                                "kernel said {e}, user space predicts errno {want} for {msg:02x?}"
                            ))
                        }
                    }
                }
                // Random famfs ioctl numbers, sizes, directions and argument pointers.
                6 | 7 => {
                    let dir = rng.below(4);
                    let size = rng.below(1 << 14);
                    let nr = if rng.below(2) == 0 {
                        1 + rng.below(4)
                    } else {
                        rng.below(256)
                    };
                    let cmd = (dir << 30) | (size << 16) | (u64::from(abi::IOC_MAGIC) << 8) | nr;
                    let arg = match rng.below(5) {
                        0 => 0,
                        1 => 16,
                        2 => 0xffff_8880_0000_0000,
                        3 => usize::MAX - 7,
                        _ => scratch.as_mut_ptr() as usize,
                    };
                    if cmd as u32 == abi::IOC_CREATE_FILE || cmd as u32 == abi::IOC_ATTACH_DAXDEV {
                        // Real commands with a scratch argument: zero it so no real fd is named.
                        scratch.iter_mut().for_each(|b| *b = 0);
                    }
                    let target = if rng.below(2) == 0 {
                        ctl.file().as_raw_fd()
                    } else {
                        files.last().map(|f| f.file.as_raw_fd()).unwrap_or(-1)
                    };
                    let _ = raw_ioctl(target, cmd, arg);
                    ioctls += 1;
                }
                // Bad, recycled and foreign descriptors for attach.
                8 => {
                    let fd = match rng.below(6) {
                        0 => -(rng.below(1000) as i32) - 1,
                        1 => {
                            // A descriptor number that was a dax device a moment ago.
                            let f = open_dev(&daxdev)?;
                            let n = f.into_raw_fd();
                            // SAFETY: Closes the descriptor we just took ownership of.
                            unsafe { libc::close(n) };
                            n
                        }
                        2 => ctl.file().as_raw_fd(),
                        3 => files.last().map(|f| f.file.as_raw_fd()).unwrap_or(0),
                        4 => {
                            let mut p = [0; 2];
                            // SAFETY: Plain pipe(2); both ends are closed below.
                            unsafe { libc::pipe(p.as_mut_ptr()) };
                            // SAFETY: Takes ownership of the read end; it closes at scope end.
                            let _r = unsafe { File::from_raw_fd(p[0]) };
                            // SAFETY: Closes the write end; the read end is what we pass.
                            unsafe { libc::close(p[1]) };
                            let n = ctl
                                .attach_raw_fd(p[0], 1 + rng.below(63) as u32)
                                .err()
                                .map(|e| errno_of(&e));
                            if n != Some(libc::ENODEV) {
                                return Err(format!("attach of a pipe gave {n:?}, want ENODEV"));
                            }
                            continue;
                        }
                        _ => rng.next() as i32,
                    };
                    let r = ctl.attach_raw_fd(fd, rng.below(80) as u32);
                    if r.is_ok() {
                        return Err(format!("attach of fd {fd} succeeded"));
                    }
                    fds += 1;
                }
                // Concurrency: creators on their own control devices while this one churns.
                _ => {
                    let d = daxdev.clone();
                    let threads: Vec<_> = (0..3)
                        .map(|t| {
                            let d = d.clone();
                            std::thread::spawn(move || {
                                for _ in 0..20 {
                                    if let Ok(c) = Control::open() {
                                        if let Ok(dev) =
                                            File::options().read(true).write(true).open(&d)
                                        {
                                            let _ = c.attach_daxdev(&dev, t);
                                        }
                                        let _ = c.version();
                                    }
                                }
                            })
                        })
                        .collect();
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..20 {
                        let n = encode_simple(
                            &mut buf,
                            FileType::Regular,
                            2 * MIB,
                            &[SimpleExtent {
                                devindex: 0,
                                offset: 512 * MIB,
                                len: 2 * MIB,
                            }],
                        )
                        .unwrap_or(0);
                        if let Ok(f) = ctl.create_file(&buf[..n], 0, 0o600, 0, 0) {
                            let _ = f.file.write_at(b"race", 0);
                        }
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                }
            }
        }
        drop(files);
    }
    println!("# hostile: {messages} messages ({accepted} accepted, all verdicts equal to user space's), {ioctls} random ioctls, {fds} bad descriptors, seed {seed}");
    Ok(())
}
