//! fio as a client: turns the JSON output of `fio --output-format=json scripts/fio/data.fio` (one
//! data path, one engine) into records of the `fio` table.
//!
//! Pairings (issue 26): `libpmem` on a famfs file against `dev-dax` on the raw device (both copy
//! with libpmem); `mmap` and `psync` on a famfs file against the same engine on ext4 -o dax. A
//! label ending in `-aa` is the A/A run: the same path and engine as the label without it.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use crate::data::AA_TOLERANCE;
use crate::report::{Record, Target};

/// The records of one fio run: one per job (`read-4k`, `randwrite-2m`, ...), MB/s.
pub fn records(json: &str, label: &str, engine: &str, env: &str) -> Result<Vec<Record>> {
    // fio may print notices before the JSON object.
    let start = json
        .find('{')
        .ok_or_else(|| anyhow!("no JSON object in fio's output"))?;
    let v: Value = serde_json::from_str(&json[start..]).context("parse fio JSON")?;
    let jobs = v["jobs"]
        .as_array()
        .ok_or_else(|| anyhow!("fio JSON without jobs"))?;
    let mut out = Vec::new();
    for j in jobs {
        let name = j["jobname"]
            .as_str()
            .ok_or_else(|| anyhow!("fio job without a name"))?;
        let dir = if name.contains("write") {
            "write"
        } else {
            "read"
        };
        let bw = j[dir]["bw_bytes"]
            .as_f64()
            .ok_or_else(|| anyhow!("fio job {name}: no {dir}.bw_bytes"))?;
        let mut r = Record::new(
            "fio".into(),
            label.into(),
            format!("{engine}/{name}"),
            format!("fio {engine} {name}"),
            "MB/s",
            true,
            env.into(),
        );
        if j["error"].as_i64().unwrap_or(0) != 0 {
            r.not_measured = Some(format!("fio error {}", j["error"]));
        } else {
            r.samples = vec![bw / 1e6];
        }
        r.baseline = baseline(label, engine, name);
        if label.ends_with("-aa") {
            r.target = Some(Target::Same(AA_TOLERANCE));
        } else if label == "fuse" && engine == "libpmem" {
            // The same libpmem copies as dev-dax on the device it maps: the ceiling.
            r.target = Some(Target::RatioAtLeast(0.99));
        }
        out.push(r);
    }
    Ok(out)
}

/// The figure a fio record is compared with.
fn baseline(label: &str, engine: &str, job: &str) -> Option<String> {
    if let Some(a) = label.strip_suffix("-aa") {
        return Some(format!("fio/{a}/{engine}/{job}"));
    }
    match (label, engine) {
        ("raw", _) => None,
        // libpmem on a file does the copies dev-dax does on the device.
        (_, "libpmem") => Some(format!("fio/raw/dev-dax/{job}")),
        ("ext4-dax", _) => None,
        (_, "mmap" | "psync") => Some(format!("fio/ext4-dax/{engine}/{job}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_to_records() {
        let json = r#"note: something
{"jobs": [
  {"jobname": "read-4k", "error": 0, "read": {"bw_bytes": 1000000}, "write": {"bw_bytes": 0}},
  {"jobname": "randwrite-2m", "error": 0, "read": {"bw_bytes": 0}, "write": {"bw_bytes": 3000000}}
]}"#;
        let r = records(json, "fuse", "libpmem", "vm").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].key, "libpmem/read-4k");
        assert_eq!(r[0].samples, vec![1.0]);
        assert_eq!(r[1].samples, vec![3.0]);
        assert_eq!(
            r[1].baseline.as_deref(),
            Some("fio/raw/dev-dax/randwrite-2m")
        );
        let r = records(json, "fuse", "psync", "vm").unwrap();
        assert_eq!(r[0].baseline.as_deref(), Some("fio/ext4-dax/psync/read-4k"));
        let r = records(json, "fuse-aa", "psync", "vm").unwrap();
        assert_eq!(r[0].baseline.as_deref(), Some("fio/fuse/psync/read-4k"));
        assert_eq!(r[0].target, Some(Target::Same(AA_TOLERANCE)));
        assert!(records("{}", "raw", "dev-dax", "vm").is_err());
    }
}
