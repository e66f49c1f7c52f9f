//! Binding a step's weights to kernels: each matrix gets the kernel for its format and
//! layout (row panels when the repack applies, `plan/repack.rs`), each norm its gamma, and
//! the step gathers the kernel names, tensor names and bytes its dump shows.

use super::step::{Matmul, Norm, WeightRef};
use super::PlanError;
use crate::gguf::GgufFile;
use crate::graph::{Graph, WeightId};
use crate::kernels::{table, WeightLayout};

/// The repack's state while a plan's steps are made.
pub(super) struct Repacking<'g> {
    pub(super) stats: super::repack::RepackStats,
    /// Tensors that some product step multiplies.
    pub(super) products: std::collections::BTreeSet<&'g str>,
}

/// What a step has gathered while its kernels and weights were chosen.
#[derive(Default)]
pub(super) struct Acc {
    pub(super) kernels: Vec<&'static str>,
    pub(super) weights: Vec<String>,
    pub(super) layouts: Vec<WeightLayout>,
    pub(super) weight_bytes: u64,
}

pub(super) struct WeightCx<'a> {
    pub(super) g: &'a Graph,
    pub(super) model: &'a GgufFile,
    pub(super) level: crate::kernels::KernelLevel,
    pub(super) node: &'a crate::graph::Node,
    /// Whether the step runs for many rows (and so uses batched kernels where there are).
    pub(super) batched: bool,
    /// Repack matrices into panels where a kernel reads them (`PlanOptions::repack`).
    pub(super) repack: Option<&'a mut super::repack::RepackStats>,
}

impl<'a> WeightCx<'a> {
    pub(super) fn tensor(&self, w: WeightId) -> Result<&'a crate::gguf::TensorInfo, PlanError> {
        let bw = &self.g.weights[w.0 as usize];
        self.model
            .tensor(&bw.tensor)
            .map_err(|source| PlanError::Weight {
                tensor: bw.tensor.clone(),
                source,
            })
    }

    /// A matrix in the file's rows, read in place (an embedding table).
    pub(super) fn rows(&self, w: WeightId) -> Result<WeightRef, PlanError> {
        let t = self.tensor(w)?;
        // infer() checked the matrix is 2-D with whole blocks per row.
        let row_bytes = t.dtype.bytes_for(t.dims[0]).unwrap_or(0) as usize;
        Ok(WeightRef {
            ptr: self.model.tensor_bytes(t).as_ptr(),
            row_bytes,
            rows: (t.n_elements / t.dims[0].max(1)) as usize,
            layout: WeightLayout::Rows,
        })
    }

    /// The matrix in row panels, when repacking is on and the format has panel kernels at
    /// this level (made on first use, then shared); else `None`.
    pub(super) fn panels(&mut self, w: WeightId) -> Result<Option<WeightRef>, PlanError> {
        let t = self.tensor(w)?;
        let k = t.dims[0] as usize;
        let Some(stats) = self.repack.as_deref_mut() else {
            return Ok(None);
        };
        if table::gemv(t.dtype, self.level, k, WeightLayout::Panels).is_none() {
            return Ok(None);
        }
        let Some(copy) = super::repack::panels(self.model, t, stats) else {
            return Ok(None);
        };
        Ok(Some(WeightRef {
            ptr: copy.bytes().as_ptr(),
            layout: WeightLayout::Panels,
            ..self.rows(w)?
        }))
    }

    /// A float matrix's rows copied into huge pages when repacking is on (made on first
    /// use, then shared); else `None`.
    pub(super) fn float_rows(&mut self, w: WeightId) -> Result<Option<WeightRef>, PlanError> {
        let t = self.tensor(w)?;
        let Some(stats) = self.repack.as_deref_mut() else {
            return Ok(None);
        };
        let Some(copy) = super::repack::float_rows(self.model, t, stats) else {
            return Ok(None);
        };
        Ok(Some(WeightRef {
            ptr: copy.bytes().as_ptr(),
            ..self.rows(w)?
        }))
    }

    /// An embedding table's rows: a float table that is also the output head (`tied`)
    /// reads the head's copy in huge pages, any other the file's rows.
    pub(super) fn table_rows(&mut self, w: WeightId, tied: bool) -> Result<WeightRef, PlanError> {
        let copy = if tied { self.float_rows(w)? } else { None };
        match copy {
            Some(c) => Ok(c),
            None => self.rows(w),
        }
    }

    /// A matrix and the kernels for its format: in row panels when repacking is on and the
    /// format has panel kernels at this level, a float matrix's rows in huge pages when
    /// repacking is on, else in the file's rows.
    pub(super) fn matrix(&mut self, w: WeightId, acc: &mut Acc) -> Result<Matmul, PlanError> {
        let t = self.tensor(w)?;
        let k = t.dims[0] as usize;
        let weight = match self.panels(w)? {
            Some(p) => p,
            None => match self.float_rows(w)? {
                Some(r) => r,
                None => self.rows(w)?,
            },
        };
        let chosen = table::gemv(t.dtype, self.level, k, weight.layout).ok_or_else(|| {
            PlanError::WeightDtype {
                at: self.node.at.clone(),
                node: self.node.name.clone(),
                op: self.node.op.name(),
                weight: t.name.clone(),
                dtype: t.dtype,
                why: "no kernel for this format",
            }
        })?;
        acc.kernels.push(chosen.name);
        let gemm = self
            .batched
            .then(|| table::gemm(t.dtype, self.level, weight.layout))
            .flatten()
            .filter(|g| g.wants_q8 == chosen.wants_q8);
        if let Some(g) = gemm {
            acc.kernels.push(g.name);
        }
        let few = gemm
            .is_some()
            .then(|| table::few(t.dtype, self.level, weight.layout))
            .flatten()
            .filter(|g| g.wants_q8 == chosen.wants_q8);
        if let Some(g) = few {
            acc.kernels.push(g.name);
        }
        let float_gemm = (self.batched && !chosen.wants_q8 && weight.layout == WeightLayout::Rows)
            .then(|| table::float_gemm(t.dtype, self.level, k))
            .flatten();
        if let Some(g) = float_gemm {
            acc.kernels.push(g.name);
        }
        acc.weights.push(t.name.clone());
        acc.layouts.push(weight.layout);
        acc.weight_bytes += t.n_bytes;
        Ok(Matmul {
            gemv: chosen.f,
            gemm: gemm.map(|g| g.f),
            few: few.map(|g| g.f),
            float_gemm: float_gemm.map(|g| g.f),
            w: weight,
        })
    }

    /// The norm a product step folds in (gamma is the step's weight 0), normalising into the
    /// scratch at `scratch`; `None` when the step has none.
    pub(super) fn folded_norm(
        &self,
        eps: Option<f32>,
        scratch: usize,
        acc: &mut Acc,
    ) -> Result<Option<Norm>, PlanError> {
        let Some(eps) = eps else { return Ok(None) };
        let f = table::rmsnorm(self.level);
        acc.kernels.push(f.name);
        Ok(Some(Norm {
            gamma: self.gamma(self.node.weights[0], acc)?,
            eps,
            rmsnorm: f.f,
            scratch,
        }))
    }

    /// An F32 vector's values, read at plan time (rope frequency factors; F32 and the
    /// length checked by infer()).
    pub(super) fn values(&self, w: WeightId, acc: &mut Acc) -> Result<Vec<f32>, PlanError> {
        let t = self.tensor(w)?;
        acc.weights.push(t.name.clone());
        acc.layouts.push(WeightLayout::Rows);
        acc.weight_bytes += t.n_bytes;
        Ok(self
            .model
            .tensor_bytes(t)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// A norm's gamma (F32, checked by infer()).
    pub(super) fn gamma(&self, w: WeightId, acc: &mut Acc) -> Result<*const f32, PlanError> {
        let t = self.tensor(w)?;
        acc.weights.push(t.name.clone());
        acc.layouts.push(WeightLayout::Rows);
        acc.weight_bytes += t.n_bytes;
        Ok(self.model.tensor_bytes(t).as_ptr() as *const f32)
    }
}
