//! What `famfs fsck` reports about deletes (issue 23): the superblock version and the pending
//! deletes (files removed from the namespace whose memory is not reclaimed yet).

use famfs_meta::Famfs;

/// `fsck --json`: `pending_deletes` (one object per pending delete: `delete`, the log index of
/// its DELETE entry; `path`; `size`; `allocated_bytes`; `revoke`).
pub(crate) fn json(fs: &Famfs) -> serde_json::Value {
    fs.pending_deletes()
        .map(|p| {
            serde_json::json!({
                "delete": p.index,
                "path": format!("/{}", p.path),
                "size": p.size,
                "allocated_bytes": p.fmap.extents().iter().map(|e| e.len).sum::<u64>(),
                "revoke": p.revoke,
            })
        })
        .collect()
}

/// The superblock line's version part: 48, or 49 once files were deleted.
pub(crate) fn version_text(fs: &Famfs) -> String {
    let sb = fs.superblock();
    if sb.deletes_enabled() {
        format!(
            "version {} with deletes, which the C famfs tools refuse",
            sb.version
        )
    } else {
        format!("version {}", sb.version)
    }
}

/// `fsck`'s text: the number of pending deletes and bytes they hold, then one line each.
pub(crate) fn print_text(fs: &Famfs) {
    let pending: Vec<_> = fs.pending_deletes().collect();
    if pending.is_empty() && !fs.superblock().deletes_enabled() {
        return;
    }
    let bytes: u64 = pending
        .iter()
        .flat_map(|p| p.fmap.extents())
        .map(|e| e.len)
        .sum();
    println!(
        "  pending deletes: {} ({bytes} bytes still allocated; `famfs reclaim` frees what no host holds)",
        pending.len()
    );
    for p in pending {
        println!(
            "    /{} (delete entry {}, {} bytes{})",
            p.path,
            p.index,
            p.size,
            if p.revoke { ", revoke" } else { "" }
        );
    }
}
