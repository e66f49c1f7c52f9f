//! `qgraph plan`: plan a graph for a model and dump the plan.

use std::time::Instant;

use anyhow::Context;
use qgraph::plan::dump::{self, LayerRange};
use qgraph::plan::{PassSelection, Plan, PlanOptions};

use super::check::CheckArgs;
use super::model::{bind_graph, open_model, Binding};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
    Svg,
}

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: CheckArgs,
    #[command(flatten)]
    pub plan: PlanFlags,
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
    /// Layers whose steps DOT draws (START..END, or all); the others fold into one box.
    /// Layer 0 alone by default: Graphviz takes minutes to lay out all of a deep model.
    #[arg(long, default_value = "0..1")]
    layers: LayerRange,
    /// Print what each pass changed instead of the plan.
    #[arg(long)]
    diff_passes: bool,
}

/// The options every command that plans takes.
#[derive(clap::Args, Clone)]
pub struct PlanFlags {
    /// Tokens per forward step (1 = decode).
    #[arg(long, default_value_t = 1)]
    pub seq: usize,
    /// Context length (rows of each KV cache).
    #[arg(long = "ctx", default_value_t = 2048)]
    pub n_ctx: usize,
    /// Passes to run: all, none, or a comma-separated list (fuse-mlp, fuse-qkv,
    /// fuse-rope-kv, fuse-rmsnorm, fuse-residual, dead-code).
    #[arg(long, default_value = "all")]
    pub passes: String,
    /// Kernel level: auto (the best this CPU runs), scalar (the reference), avx2, avx512 (avx2 with AVX-512 VNNI twins).
    #[arg(long, default_value = "auto")]
    pub kernels: qgraph::kernels::KernelLevel,
    /// Threads the plan splits work between (default: physical cores).
    #[command(flatten)]
    pub threads: super::engine::ThreadArgs,
    /// Logits for every token (all) or only the last (last: the output head runs once).
    #[arg(long, default_value = "all")]
    pub logits: LogitsFlag,
    #[command(flatten)]
    pub repack: RepackArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Sequences the KV memory holds, each in its own region (a server's --parallel).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::ValueParser::new(clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096)))]
    pub sequences: usize,
}

/// `--cache-type`: the KV caches' element types.
#[derive(clap::Args, Clone)]
pub struct CacheArgs {
    /// KV cache type for K and V: f32, f16 (as llama.cpp) or q8_0.
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: qgraph::vocab::KvType,
    /// K cache type, overriding --cache-type.
    #[arg(long = "cache-type-k")]
    pub k: Option<qgraph::vocab::KvType>,
    /// V cache type, overriding --cache-type.
    #[arg(long = "cache-type-v")]
    pub v: Option<qgraph::vocab::KvType>,
}

impl CacheArgs {
    pub fn types(&self) -> qgraph::vocab::KvTypes {
        qgraph::vocab::KvTypes {
            k: self.k.unwrap_or(self.cache_type),
            v: self.v.unwrap_or(self.cache_type),
        }
    }
}

/// `--repack`: whether quantized matrices are rearranged into the kernels' row panels.
#[derive(clap::Args, Clone)]
pub struct RepackArgs {
    /// Repack quantized weights into row panels at load (on), or read the file's rows (off).
    #[arg(long = "repack", value_enum, default_value = "on")]
    pub repack: OnOff,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl RepackArgs {
    pub fn on(&self) -> bool {
        self.repack == OnOff::On
    }
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum LogitsFlag {
    All,
    Last,
}

impl PlanFlags {
    pub fn options(&self) -> anyhow::Result<PlanOptions> {
        Ok(PlanOptions {
            seq: self.seq,
            n_ctx: self.n_ctx,
            passes: self.passes.parse::<PassSelection>()?,
            level: self.kernels,
            threads: self.threads.resolve()?,
            logits: match self.logits {
                LogitsFlag::All => qgraph::plan::Logits::All,
                LogitsFlag::Last => qgraph::plan::Logits::Last,
            },
            repack: self.repack.on(),
            kv: self.cache.types(),
            sequences: self.sequences,
        })
    }
}

/// Loads, binds and plans; returns the plan and the planning time (bind included).
pub fn make_plan(target: CheckArgs, flags: &PlanFlags) -> anyhow::Result<(Plan, f64)> {
    let (model_path, model) = open_model(target.model)?;
    let started = Instant::now();
    let (graph_path, graph) = bind_graph(target.graph, &model, &model_path, Binding::ToRun)?;
    let plan = Plan::new(&graph, model, &flags.options()?)
        .with_context(|| format!("planning {}", graph_path.display()))?;
    Ok((plan, started.elapsed().as_secs_f64() * 1e3))
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let (plan, ms) = make_plan(args.target, &args.plan)?;
    if args.diff_passes {
        super::out(&dump::text::pass_diff(&plan))?;
        return Ok(());
    }
    match args.format {
        PlanFormat::Text => {
            super::out(&format!(
                "{}  plan time            {ms:.1} ms (repacking {:.1} ms of it)\n",
                dump::text::to_text(&plan),
                plan.repack.ms
            ))?;
        }
        PlanFormat::Json => {
            super::out(&(serde_json::to_string_pretty(&dump::json::to_json(&plan))? + "\n"))?
        }
        PlanFormat::Dot => super::out(&dump::dot::to_dot(&plan, Some(args.layers)))?,
        PlanFormat::Svg => super::out(&dump::svg::to_svg(&plan))?,
    }
    Ok(())
}
