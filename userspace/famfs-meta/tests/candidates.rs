//! Candidate paths for a secondary device (the name hints of the log, the host cache,
//! `/dev/dax*`) are opened only when they are a device or an image: a FIFO named in the log must
//! not be opened (an open for reading waits for a writer for ever; issue 22).

use famfs_format::*;
use famfs_media::{Access, Media};
use famfs_meta::*;
use std::time::Duration;

const MASTER: UuidBytes = [0x56; 16];

#[test]
fn a_fifo_where_the_log_names_a_device_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let uuid_file = dir.path().join("system_uuid");
    std::fs::write(&uuid_file, format!("{}\n", format_uuid(&MASTER))).unwrap();
    std::env::set_var(SYSTEM_UUID_ENV, &uuid_file);
    let primary = dir.path().join("primary");
    let img1 = dir.path().join("img1");
    std::fs::File::create(&primary)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    std::fs::File::create(&img1)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let media = Media::open(&primary, Access::ReadWrite).unwrap();
    let o = MkfsOptions {
        log_len: DEFAULT_LOG_LEN,
        fs_uuid: *uuid::Uuid::new_v4().as_bytes(),
        dev_uuid: *uuid::Uuid::new_v4().as_bytes(),
        system_uuid: MASTER,
        device_name: primary.display().to_string(),
    };
    mkfs(&media, &o).unwrap();
    let mut fs = Famfs::from_media(media).unwrap();
    let m1 = Media::open(&img1, Access::ReadWrite).unwrap();
    let name1 = img1.display().to_string();
    fs.with_log_lock(|a| a.add_device(m1, &name1, *uuid::Uuid::new_v4().as_bytes()))
        .unwrap();
    drop(fs);
    // The device is gone from this host; a FIFO now sits where the log says it was.
    std::fs::rename(&img1, dir.path().join("gone")).unwrap();
    nix::unistd::mkfifo(&img1, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = primary.clone();
    std::thread::spawn(move || {
        let r =
            Famfs::open(&p, Access::ReadOnly).map(|fs| fs.device_missing(1).map(str::to_string));
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("Famfs::open blocked on the FIFO named in the log");
    let missing = got.unwrap().expect("device 1 should be missing");
    assert!(missing.contains("was not found on this host"), "{missing}");
}
