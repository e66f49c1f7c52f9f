//! The planner: a bound graph → a static `Plan`. Everything that can fail or cost fails and
//! costs here, once: shapes and dtypes (`infer`), fusions (`passes`), the schedule and the
//! kernel of every step (`lower`), live intervals (`liveness`) and the arena (`arena`).
//! The executor then only walks `Plan::steps`.

// Plan errors carry the node, op, weight and both shapes as text. They are built at most
// once per plan, on the cold path, so their size costs nothing; boxing them would only
// make them harder to match on.
#![allow(clippy::result_large_err)]

pub mod arena;
mod canonical;
pub mod dump;
mod error;
pub mod infer;
mod kvcache;
pub mod liveness;
mod lower;
pub mod parallel;
pub mod passes;
pub mod repack;
mod sizes;
mod step;
mod weights;

pub use error::PlanError;
pub use infer::{DType, Fact, Storage};
pub use parallel::{Phase, PhaseKind, Split};
pub use passes::{PassReport, PassSelection};
pub use step::{EmbedRow, Exec, KvOut, Matmul, Norm, Prep, ProjOut, Quant, WeightRef};

use std::sync::Arc;

use crate::gguf::GgufFile;
use crate::graph::{Graph, Op};
use crate::kernels::KernelLevel;
use liveness::Interval;

/// What a plan is made for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Tokens per forward step (1 for decode, N for prefill).
    pub seq: usize,
    /// Context length: rows of each KV cache.
    pub n_ctx: usize,
    pub passes: PassSelection,
    pub level: KernelLevel,
    /// Workers that run each forward step (the calling thread is worker 0).
    pub threads: usize,
    /// Whose logits a forward step returns.
    pub logits: Logits,
    /// Whether quantized matrices are repacked into row panels where a kernel reads them
    /// (`plan/repack.rs`); off keeps the file's rows.
    pub repack: bool,
    /// The K and V caches' element types.
    pub kv: crate::vocab::KvTypes,
    /// Sequences the KV memory holds, each in its own region of `n_ctx` positions (a
    /// server's parallel slots). Above 1 the plan takes one more input, every row's
    /// sequence, and a step may carry rows of different sequences.
    pub sequences: usize,
}

/// Which tokens of a forward step get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Logits {
    /// Every token's (perplexity, teacher forcing).
    All,
    /// The last token's only (prompt prefill): the output head runs for one row.
    Last,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            seq: 1,
            n_ctx: 2048,
            passes: PassSelection::All,
            level: crate::kernels::table::detect(),
            threads: 1,
            logits: Logits::All,
            repack: true,
            kv: Default::default(),
            sequences: 1,
        }
    }
}

/// Physical cores of this machine (logical CPUs halved when SMT siblings are listed in
/// sysfs), the default thread count.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let siblings =
        std::fs::read_to_string("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
            .ok()
            .map(|s| {
                s.trim()
                    .split(',')
                    .map(|part| match part.split_once('-') {
                        Some((a, b)) => {
                            b.parse::<usize>().unwrap_or(0) + 1 - a.parse::<usize>().unwrap_or(0)
                        }
                        None => 1,
                    })
                    .sum::<usize>()
            })
            .unwrap_or(1)
            .max(1);
    (logical / siblings).max(1)
}

/// Index into `Plan::buffers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct BufId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BufKind {
    /// Written by the executor before the first step (token ids, positions).
    Input,
    /// An op's output.
    Activation,
    /// Working memory of one step.
    Scratch,
    /// A K or V cache: in the KV region, not the arena; lives as long as the session.
    KvCache,
}

#[derive(Debug, Clone)]
pub struct Buffer {
    pub name: String,
    pub kind: BufKind,
    pub fact: Fact,
    pub bytes: usize,
    /// Byte offset in the session's memory (arena first, then the KV region).
    pub offset: usize,
    /// Steps from the first write to the last read (activations, inputs, scratch).
    pub live: Option<Interval>,
    /// A cache's element type (its fact says f32: the values it holds, not their bytes).
    pub kv: Option<crate::vocab::KvType>,
}

/// One step of the schedule: what it is (for dumps) and what it runs (`exec`).
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub op: Op,
    pub kernels: Vec<&'static str>,
    pub inputs: Vec<BufId>,
    pub outputs: Vec<BufId>,
    pub scratch: Option<BufId>,
    /// Where the step quantizes its input to 8-bit blocks, if its kernels want that.
    pub qscratch: Option<BufId>,
    /// GGUF tensors the step reads, and the layout each is read in.
    pub weights: Vec<String>,
    pub weight_layouts: Vec<crate::kernels::WeightLayout>,
    pub weight_bytes: u64,
    /// Bytes read and written per forward step of `seq` tokens (weights included).
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub flops: u64,
    /// Rows the step runs for per call: the plan's `seq`, or 1 after a `LastRow`.
    pub rows: usize,
    pub exec: Exec,
}

/// A static execution plan. Holds the model so the weight pointers in its steps stay valid.
pub struct Plan {
    pub graph_name: String,
    pub seq: usize,
    pub n_ctx: usize,
    pub level: KernelLevel,
    pub steps: Vec<Step>,
    pub buffers: Vec<Buffer>,
    /// Size of the activation arena (what liveness-based packing achieves).
    pub peak_bytes: usize,
    /// Sum of every arena buffer's size: what the arena would be without reuse.
    pub naive_bytes: usize,
    /// The caches' element types.
    pub kv_types: crate::vocab::KvTypes,
    /// Start of the KV region in session memory, and its size (every sequence's).
    pub kv_offset: usize,
    pub kv_bytes: usize,
    /// Sequences in the KV region, and the bytes of each one's region: sequence s's caches
    /// sit at the buffers' offsets + `s · kv_seq_bytes`.
    pub sequences: usize,
    pub kv_seq_bytes: usize,
    /// Every row's sequence (`[seq]` i32), written by the executor, when `sequences > 1`.
    pub sequence_ids: Option<BufId>,
    /// Start of the activation arena in session memory (after the KV region).
    pub arena_offset: usize,
    /// Workers, and the phases they run (each step's split and barrier).
    pub threads: usize,
    pub phases: Vec<Phase>,
    /// Whether a forward step returns the last token's logits only.
    pub last_row_only: bool,
    pub tokens: Option<BufId>,
    pub positions: Option<BufId>,
    pub outputs: Vec<(String, BufId)>,
    pub passes: Vec<PassReport>,
    /// What the repack did while this plan was made.
    pub repack: repack::RepackStats,
    pub model: Arc<GgufFile>,
}

// SAFETY: the raw weight pointers in `steps` point into `model`'s read-only memory map or
// into the repacked copies `model` owns (`GgufFile::derived`, never removed or written once
// made), which the plan keeps alive through its `Arc`; sharing or sending the plan shares
// only those reads.
unsafe impl Send for Plan {}
// SAFETY: as above: every access through the pointers is a read of immutable memory.
unsafe impl Sync for Plan {}

/// The context length the model declares it was trained for (`{arch}.context_length`),
/// with the key it came from.
pub fn trained_context(model: &GgufFile) -> Option<(String, usize)> {
    let arch = model.get_str("general.architecture").ok()?;
    let key = format!("{arch}.context_length");
    let n = model
        .get_u32(&key)
        .map(|n| n as usize)
        .or_else(|_| model.get_u64(&key).map(|n| n as usize))
        .ok()?;
    (n > 0).then_some((key, n))
}

impl Plan {
    /// Plans `graph` (bound to `model`): canonical lowering, passes with inference after
    /// each, schedule, kernels, liveness and arena.
    pub fn new(graph: &Graph, model: Arc<GgufFile>, opts: &PlanOptions) -> Result<Plan, PlanError> {
        if opts.threads == 0 || opts.threads > 256 {
            return Err(PlanError::Options(format!(
                "{} threads: between 1 and 256",
                opts.threads
            )));
        }
        if opts.sequences == 0 || opts.sequences > 4096 {
            return Err(PlanError::Options(format!(
                "{} sequences: between 1 and 4096",
                opts.sequences
            )));
        }
        if opts.seq == 0 || opts.n_ctx == 0 || opts.seq > opts.n_ctx {
            return Err(PlanError::Options(format!(
                "seq {} and n_ctx {} must be ≥ 1 with seq ≤ n_ctx",
                opts.seq, opts.n_ctx
            )));
        }
        if let Some((key, trained)) = trained_context(&model) {
            if opts.n_ctx > trained {
                return Err(PlanError::Options(format!(
                    "a context of {} tokens is more than the {trained} the model was trained \
                     for ({key}); qgraph applies no RoPE scaling to go past it",
                    opts.n_ctx
                )));
            }
        }
        if !crate::kernels::table::supports(opts.level) {
            return Err(PlanError::Options(format!(
                "this CPU cannot run the {} kernels (use --kernels scalar or auto)",
                opts.level.name()
            )));
        }
        let mut g = graph.clone();
        canonical::canonicalize(&mut g);
        if opts.logits == Logits::Last && opts.seq > 1 {
            canonical::last_row_only(&mut g);
        }
        infer::infer(&g, opts.seq, opts.n_ctx)?;
        let passes = passes::run(&mut g, &opts.passes, opts.seq, opts.n_ctx)?;
        let facts = infer::infer(&g, opts.seq, opts.n_ctx)?;
        lower::lower(&g, &facts, model, opts, passes)
    }

    /// Total memory a session needs: the arena and the KV region.
    pub fn session_bytes(&self) -> usize {
        self.arena_offset + self.peak_bytes
    }

    /// Bytes of K and V one position holds in every layer's caches, in their types.
    pub fn kv_bytes_per_position(&self) -> usize {
        self.kv_seq_bytes / crate::kernels::kv::cache_rows(self.n_ctx)
    }

    /// Barriers one forward step waits at.
    pub fn barriers(&self) -> usize {
        self.phases.iter().filter(|p| p.barrier).count()
    }

    /// Distinct weight bytes the steps read per forward step.
    pub fn weight_bytes(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        self.steps
            .iter()
            .flat_map(|s| s.weights.iter())
            .filter(|w| seen.insert(w.as_str()))
            .filter_map(|w| self.model.tensor(w).ok())
            .map(|t| t.n_bytes)
            .sum()
    }

    /// Distinct matrices the steps read as repacked row panels, and their panel bytes.
    pub fn panel_weights(&self) -> (usize, u64) {
        let mut seen = std::collections::BTreeSet::new();
        let mut bytes = 0;
        for s in &self.steps {
            for (w, l) in s.weights.iter().zip(&s.weight_layouts) {
                if *l != crate::kernels::WeightLayout::Panels || !seen.insert(w.as_str()) {
                    continue;
                }
                let Ok(t) = self.model.tensor(w) else {
                    continue;
                };
                let k = t.dims.first().copied().unwrap_or(1).max(1);
                bytes += crate::kernels::panel::panel_bytes(
                    t.dtype,
                    (t.n_elements / k) as usize,
                    k as usize / t.dtype.block_len() as usize,
                )
                .unwrap_or(0) as u64;
            }
        }
        (seen.len(), bytes)
    }

    /// Bytes read and written by all steps for one token (`seq` tokens per forward step).
    pub fn bytes_moved_per_token(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| s.bytes_read + s.bytes_written)
            .sum::<u64>()
            / self.seq as u64
    }

    pub fn output(&self, name: &str) -> Option<&Buffer> {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| &self.buffers[b.0 as usize])
    }
}
