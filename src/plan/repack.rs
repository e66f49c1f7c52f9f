//! The repack: a quantized matrix whose format has a row-panel layout (`kernels/panel.rs`)
//! is rearranged once, when the first plan over its file asks for it, and every later plan
//! over the same file shares the copy (`GgufFile::derived`). The file's pages behind the
//! matrix are then released, so the model stays resident once: as panels.
//!
//! `--repack off` (`PlanOptions::repack`) keeps every matrix in the file's rows.

use std::sync::Arc;
use std::time::Instant;

use crate::gguf::{DerivedBytes, GgufFile, TensorInfo};
use crate::kernels::panel;

/// The layout tag of row panels in the file's derived-copy cache.
const PANELS: &str = "panels8";

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
    let start = Instant::now();
    let (copy, made) = model.derived(t, PANELS, len, |src, out| {
        panel::repack(t.dtype, src, rows, nb, out)
    })?;
    if made {
        model.release_pages(t);
        stats.made += 1;
        stats.bytes += len as u64;
        stats.ms += start.elapsed().as_secs_f64() * 1e3;
    } else {
        stats.reused += 1;
    }
    Some(copy)
}
