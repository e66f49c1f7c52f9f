//! The repack: a quantized matrix whose format has a row-panel layout (`kernels/panel.rs`)
//! is rearranged once, when the first plan over its file asks for it, and every later plan
//! over the same file shares the copy (`GgufFile::derived`). The file's pages behind the
//! matrix are then released, so the model stays resident once: as panels.
//!
//! A float matrix (F32, F16, BF16), whose kernels read the file's rows, is copied as it is
//! into the same huge-page slab, a few MiB at a time (`GgufFile::derived_verbatim`): from
//! the file's 4 KiB pages the hardware prefetchers restart at every page, and its gemv
//! streamed at 17 GiB/s where the copy reads at 27–30 (`cargo bench --bench kernels --
//! gemv/`, whose copies sit in huge pages, against `BENCH_SMALL_PAGES=1`; Zen 4 VM).
//!
//! `--repack off` (`PlanOptions::repack`) keeps every matrix in the file's rows.

use std::sync::Arc;
use std::time::Instant;

use crate::gguf::{DerivedBytes, GgufFile, TensorInfo};
use crate::kernels::panel;

/// The layout tags of row panels and of float rows in the file's derived-copy cache.
const PANELS: &str = "panels8";
const ROWS: &str = "rows";

/// What the repack did for one plan.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RepackStats {
    /// Matrices this plan repacked, and those an earlier plan over the file already had.
    pub made: usize,
    pub reused: usize,
    /// Bytes written by this plan's repacks (the matrices' bytes, plus panel padding).
    pub bytes: u64,
    /// Wall time of this plan's repacks (reading the file's pages included).
    pub ms: f64,
}

/// The row panels of matrix `t` (rows of `k = dims[0]` elements), made on first use; `None`
/// when its format has no panel layout or its shape does not hold whole blocks.
pub fn panels(
    model: &GgufFile,
    t: &TensorInfo,
    stats: &mut RepackStats,
) -> Option<Arc<DerivedBytes>> {
    let k = *t.dims.first()? as usize;
    let block = t.dtype.block_len() as usize;
    if k == 0 || !k.is_multiple_of(block) || !panel::has_layout(t.dtype) {
        return None;
    }
    let (rows, nb) = (t.n_elements as usize / k, k / block);
    let len = panel::panel_bytes(t.dtype, rows, nb)?;
    counted(model, t, stats, || {
        model.derived(t, PANELS, len, |src, out| {
            panel::repack(t.dtype, src, rows, nb, out)
        })
    })
}

/// Matrix `t` (a float format) copied as it is into huge pages, made on first use; `None`
/// for any other format.
pub fn float_rows(
    model: &GgufFile,
    t: &TensorInfo,
    stats: &mut RepackStats,
) -> Option<Arc<DerivedBytes>> {
    use crate::quant::GgmlType;
    if !matches!(t.dtype, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return None;
    }
    counted(model, t, stats, || model.derived_verbatim(t, ROWS))
}

/// The copy `make` gives of `t`; on first use the file's pages behind `t` are released and
/// `stats` counts it.
fn counted(
    model: &GgufFile,
    t: &TensorInfo,
    stats: &mut RepackStats,
    make: impl FnOnce() -> Option<(Arc<DerivedBytes>, bool)>,
) -> Option<Arc<DerivedBytes>> {
    let start = Instant::now();
    let (copy, made) = make()?;
    if made {
        model.release_pages(t);
        stats.made += 1;
        stats.bytes += copy.bytes().len() as u64;
        stats.ms += start.elapsed().as_secs_f64() * 1e3;
    } else {
        stats.reused += 1;
    }
    Some(copy)
}
