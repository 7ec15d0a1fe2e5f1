//! The seed corpora of the fuzz targets in userspace/fuzz/ come from a real image made by the
//! tools (mkfs, mkdir, creat, cp). With FAMFS_BLESS=1 this test regenerates them; otherwise it
//! checks that every stored seed still decodes (a format change must not silently turn the seeds
//! into noise the fuzzer has to rediscover).

use famfs_format::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const FAMFS: &str = env!("CARGO_BIN_EXE_famfs");
const MKFS: &str = env!("CARGO_BIN_EXE_mkfs-famfs");
const SYSTEM_UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn run(dir: &Path, bin: &str, args: &[&str]) {
    let o = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("FAMFS_SYSTEM_UUID_FILE", dir.join("system_uuid"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Superblock bytes and the used part of the log of a freshly populated image.
fn make_image() -> (Vec<u8>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(dir.join("system_uuid"), format!("{SYSTEM_UUID}\n")).unwrap();
    std::fs::File::create(dir.join("img"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    std::fs::write(dir.join("local.txt"), b"hello famfs\n").unwrap();
    run(
        dir,
        MKFS,
        &[
            "--fs-uuid",
            "11111111-2222-3333-4444-555555555555",
            "--dev-uuid",
            "66666666-7777-8888-9999-aaaaaaaaaaaa",
            "img",
        ],
    );
    for args in [
        &["mkdir", "--device", "img", "/d"][..],
        &["mkdir", "--device", "img", "-p", "/d/e/f"],
        &["creat", "--device", "img", "-s", "4M", "-S", "7", "/d/f"],
        &[
            "creat", "--device", "img", "-s", "5000", "-m", "0600", "/top",
        ],
        &[
            "creat",
            "--device",
            "img",
            "-s",
            "20M",
            "-N",
            "2",
            "-B",
            "4",
            "-C",
            "4M",
            "/d/striped",
        ],
        &[
            "creat",
            "--device",
            "img",
            "-M",
            "/m1,1M",
            "-M",
            "/d/e/m2,3M",
        ],
        &["cp", "--device", "img", "local.txt", "/d/e/f/copy"],
    ] {
        run(dir, FAMFS, args);
    }
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(dir.join("img")).unwrap();
    let mut sb = vec![0u8; SB_SIZE];
    f.read_exact_at(&mut sb, 0).unwrap();
    let mut head = vec![0u8; LOG_HEADER_SIZE];
    f.read_exact_at(&mut head, LOG_OFFSET).unwrap();
    let n = RawLogHeader::from_bytes(&head).unwrap().next_index as usize;
    let mut log = vec![0u8; LOG_HEADER_SIZE + n * LOG_ENTRY_SIZE];
    f.read_exact_at(&mut log, LOG_OFFSET).unwrap();
    (sb, log)
}

fn bless() {
    let (sb, log) = make_image();
    let dir = corpus();
    let put = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        std::fs::write(dir.join(target).join(name), bytes).unwrap();
    };
    put("decode_superblock", "mkfs", &sb);
    let mut r = RawSuperblock::from_bytes(&sb).unwrap();
    r.alloc_unit = ALLOC_UNIT_4K;
    r.log_len = 16 << 20;
    r.crc = r.compute_crc();
    put("decode_superblock", "alloc-4k-log-16m", &r.to_bytes());
    let h = RawLogHeader::from_bytes(&log).unwrap();
    put("decode_log_header", "used", &log[..LOG_HEADER_SIZE]);
    let mut empty = h;
    (empty.next_index, empty.next_seqnum) = (0, 0);
    put("decode_log_header", "empty", &empty.to_bytes());
    let mut full = h;
    (full.next_index, full.next_seqnum) = (h.last_index + 1, h.last_index + 1);
    put("decode_log_header", "full", &full.to_bytes());
    for (i, e) in log[LOG_HEADER_SIZE..].chunks(LOG_ENTRY_SIZE).enumerate() {
        let kind = match RawLogEntry::from_bytes(e).unwrap().entry_type {
            0 => "file",
            1 => "mkdir",
            _ => "other",
        };
        put("decode_log_entry", &format!("entry{i}-{kind}"), e);
    }
    // log_play: a mode byte (see the target), then the log.
    for (mode, name) in [(0u8, "image-log"), (7, "image-log-repaired")] {
        let mut v = vec![mode];
        v.extend_from_slice(&log);
        put("log_play", name, &v);
    }
}

#[test]
fn fuzz_seed_corpus_is_valid() {
    if std::env::var_os("FAMFS_BLESS").is_some() {
        bless();
    }
    let dir = corpus();
    let files = |t: &str| -> Vec<Vec<u8>> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join(t))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        assert!(!v.is_empty(), "no seeds for {t}");
        v.iter().map(|p| std::fs::read(p).unwrap()).collect()
    };
    for b in files("decode_superblock") {
        Superblock::decode(&b).unwrap();
    }
    for b in files("decode_log_header") {
        LogHeader::decode(&b, DEFAULT_LOG_LEN).unwrap();
    }
    let mut kinds = [0; 2];
    for b in files("decode_log_entry") {
        let seq = RawLogEntry::from_bytes(&b).unwrap().seqnum;
        match LogEntry::decode(&b, seq).unwrap().body {
            LogEntryBody::File(f) => {
                kinds[0] += 1 + matches!(f.fmap, Fmap::Interleaved(_)) as usize * 100
            }
            _ => kinds[1] += 1,
        }
    }
    assert!(
        kinds[0] > 100 && kinds[1] > 0,
        "seeds lack a kind of entry: {kinds:?}"
    );
    for b in files("log_play") {
        assert!(b.len() < 16 << 10, "seeds stay small");
        let log = &b[1..];
        let h = LogHeader::decode(log, DEFAULT_LOG_LEN).unwrap();
        for i in 0..h.next_index() {
            let at = LOG_HEADER_SIZE + i as usize * LOG_ENTRY_SIZE;
            LogEntry::decode(&log[at..at + LOG_ENTRY_SIZE], i).unwrap();
        }
    }
}
