//! `qgraph inspect MODEL.gguf`: header, metadata, tensor table and per-dtype totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use qgraph::gguf::{GgufFile, Value};
use qgraph::quant::GgmlType;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    model: PathBuf,
    /// Print JSON (a `metadata` object and a `tensors` array) instead of text.
    #[arg(long)]
    json: bool,
    /// Print arrays in full instead of their length and first items.
    #[arg(long)]
    full_arrays: bool,
}

/// Arrays longer than this are summarised as their length and first items.
const SUMMARY_ITEMS: usize = 8;

pub fn run(args: Args) -> anyhow::Result<()> {
    let file =
        GgufFile::open(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let out = if args.json {
        serde_json::to_string_pretty(&to_json(&file, args.full_arrays))? + "\n"
    } else {
        to_text(&file, args.full_arrays)
    };
    super::out(&out)?;
    Ok(())
}

struct Total {
    tensors: usize,
    elements: u64,
    bytes: u64,
}

fn totals(file: &GgufFile) -> BTreeMap<GgmlType, Total> {
    let mut totals = BTreeMap::new();
    for t in file.tensors() {
        let e = totals.entry(t.dtype).or_insert(Total {
            tensors: 0,
            elements: 0,
            bytes: 0,
        });
        e.tensors += 1;
        e.elements += t.n_elements;
        e.bytes += t.n_bytes;
    }
    totals
}

fn to_text(file: &GgufFile, full: bool) -> String {
    let l = file.layout();
    let max_items = if full { usize::MAX } else { SUMMARY_ITEMS };
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "GGUF v{}: {} bytes, {} metadata keys, {} tensors, alignment {}, data at byte {}",
        l.version,
        l.file_len,
        l.metadata.len(),
        l.tensors.len(),
        l.alignment,
        l.data_start
    );
    let _ = writeln!(s, "\nmetadata:");
    for e in file.metadata() {
        let mut v = String::new();
        let _ = e.value.fmt_summary(&mut v, max_items);
        let _ = writeln!(s, "  {} ({}) = {}", e.key, e.value.type_description(), v);
    }
    let name_w = file
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(s, "\ntensors (shape in ggml order, row length first):");
    let _ = writeln!(
        s,
        "  {:<name_w$}  {:<5}  {:<18}  {:>12}  {:>12}",
        "name", "dtype", "shape", "offset", "bytes"
    );
    for t in file.tensors() {
        let shape = format!("{:?}", t.dims);
        let _ = writeln!(
            s,
            "  {:<name_w$}  {:<5}  {:<18}  {:>12}  {:>12}",
            t.name,
            t.dtype.name(),
            shape,
            l.data_start + t.offset,
            t.n_bytes
        );
    }
    let _ = writeln!(s, "\ntotals by dtype:");
    let (mut n, mut bytes) = (0, 0);
    for (dtype, t) in totals(file) {
        let _ = writeln!(
            s,
            "  {:<5}  {:>4} tensors  {:>12} elements  {:>12} bytes",
            dtype.name(),
            t.tensors,
            t.elements,
            t.bytes
        );
        n += t.tensors;
        bytes += t.bytes;
    }
    let _ = writeln!(
        s,
        "  {:<5}  {:>4} tensors  {:>12}          {:>12} bytes",
        "all", n, "", bytes
    );
    s
}

fn value_json(v: &Value, full: bool) -> serde_json::Value {
    match v {
        Value::Array(elem, items) if !full && items.len() > SUMMARY_ITEMS => serde_json::json!({
            "type": "array",
            "element_type": elem.name(),
            "len": items.len(),
            "head": items.iter().take(SUMMARY_ITEMS).map(Value::to_json).collect::<Vec<_>>(),
        }),
        v => v.to_json(),
    }
}

fn to_json(file: &GgufFile, full: bool) -> serde_json::Value {
    let l = file.layout();
    let metadata: serde_json::Map<String, serde_json::Value> = file
        .metadata()
        .iter()
        .map(|e| (e.key.clone(), value_json(&e.value, full)))
        .collect();
    let metadata_types: serde_json::Map<String, serde_json::Value> = file
        .metadata()
        .iter()
        .map(|e| (e.key.clone(), e.value.type_description().into()))
        .collect();
    let tensors: Vec<serde_json::Value> = file
        .tensors()
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "dtype": t.dtype.name(),
                "dims": t.dims,
                "offset": l.data_start + t.offset,
                "bytes": t.n_bytes,
            })
        })
        .collect();
    let totals: serde_json::Map<String, serde_json::Value> = totals(file)
        .into_iter()
        .map(|(d, t)| {
            (
                d.name().to_string(),
                serde_json::json!({"tensors": t.tensors, "elements": t.elements, "bytes": t.bytes}),
            )
        })
        .collect();
    serde_json::json!({
        "version": l.version,
        "file_bytes": l.file_len,
        "alignment": l.alignment,
        "data_start": l.data_start,
        "metadata": metadata,
        "metadata_types": metadata_types,
        "tensors": tensors,
        "totals": totals,
    })
}
