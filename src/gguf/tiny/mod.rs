//! Tiny models with seeded random weights, written with `GgufWriter`. Tests use them to
//! prove nothing about SmolLM2 is hard-coded, to exercise every weight format on a model
//! small enough to check exhaustively, and to check architectures that have no small
//! downloadable weights (Llama 3, Qwen2, OLMo 2) against llama.cpp, which loads these files.

mod vocab;

pub use vocab::{bpe_vocab, BpeVocab};

use super::value::{Value, ValueType};
use super::write::GgufWriter;
use crate::quant::{GgmlType, QuantError};
use crate::rng::SplitMix64;

/// The architecture a tiny model is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TinyArch {
    /// `llama` with a vocabulary of `n_vocab` plain tokens and no merges (qgraph reads it;
    /// llama.cpp wants merges).
    #[default]
    Llama,
    /// `llama` as Llama 3.1 ships: a `rope_freqs.weight` tensor that divides each rope
    /// frequency (Llama 3.1's formula, its original context shrunk to 64 positions so the
    /// scaling shows within a short test), a BPE vocabulary under the `llama-bpe`
    /// pre-tokenizer, BOS added.
    Llama3,
    /// `qwen2`: biases on the Q, K and V projections, NeoX rope, the `qwen2` pre-tokenizer.
    Qwen2,
    /// `olmo2` (OLMo 2 / OLMo 3): no norms before attention and FFN; RMS norms over the whole
    /// Q and K rows; norms after attention and after the FFN; sliding-window attention of
    /// `window` positions on each layer `l` with `l % pattern < pattern - 1`, every layer
    /// when `pattern` is 0 (Mistral-style).
    Olmo2 { window: u32, pattern: u32 },
}

impl TinyArch {
    /// The `general.architecture` it writes.
    pub fn name(self) -> &'static str {
        match self {
            TinyArch::Llama | TinyArch::Llama3 => "llama",
            TinyArch::Qwen2 => "qwen2",
            TinyArch::Olmo2 { .. } => "olmo2",
        }
    }
}

/// The shape of a tiny model. Row lengths (`n_embd`, `n_ff`) must be multiples of 32
/// when `dtype` is a block format.
#[derive(Debug, Clone)]
pub struct TinyLlama {
    pub arch: TinyArch,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_kv_head: u32,
    pub n_ff: u32,
    /// The vocabulary size of `TinyArch::Llama`; the others use `bpe_vocab()`'s.
    pub n_vocab: u32,
    pub n_ctx: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// The format of the projection matrices.
    pub dtype: GgmlType,
    /// The format of the token embedding.
    pub embd_dtype: GgmlType,
    /// Whether to write a separate `output.weight` (otherwise the embedding is tied; OLMo 2
    /// always writes one, as llama.cpp requires).
    pub untied_output: bool,
    /// Multiplies the untied output head: above 1, sharper distributions, so that a
    /// change inside the layers moves the argmax and the KL divergence more.
    pub head_gain: f32,
    pub seed: u64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        TinyLlama {
            arch: TinyArch::Llama,
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_kv_head: 2,
            n_ff: 128,
            n_vocab: 96,
            n_ctx: 4096,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            dtype: GgmlType::Q4_1,
            embd_dtype: GgmlType::Q8_0,
            untied_output: false,
            head_gain: 1.0,
            seed: 0x5eed,
        }
    }
}

/// Llama 3.1's rope scaling as its GGUF stores it (`rope_freqs.weight`): the number each
/// pair's frequency is divided by. Wavelengths shorter than `ctx / 4` keep their frequency,
/// longer than `ctx` are slowed 8×, and those between are blended.
pub fn llama31_rope_factors(head_dim: usize, theta: f32, ctx: f32) -> Vec<f32> {
    let (factor, low, high) = (8.0f32, 1.0f32, 4.0f32);
    (0..head_dim / 2)
        .map(|i| {
            let freq = theta.powf(-2.0 * i as f32 / head_dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < ctx / high {
                1.0
            } else if wavelen > ctx / low {
                factor
            } else {
                let smooth = (ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

impl TinyLlama {
    fn head_dim(&self) -> u32 {
        self.n_embd / self.n_head.max(1)
    }

    /// A writer holding the whole model: its architecture's metadata, a vocabulary and
    /// every tensor, named as llama.cpp's converter names them.
    pub fn writer(&self) -> Result<GgufWriter, QuantError> {
        let mut w = GgufWriter::new();
        self.metadata(&mut w);
        let n_vocab = self.vocabulary(&mut w);
        self.tensors(&mut w, n_vocab as u64)?;
        Ok(w)
    }

    fn metadata(&self, w: &mut GgufWriter) {
        let a = self.arch.name();
        let k = |s: &str| format!("{a}.{s}");
        w.set_str("general.architecture", a)
            .set_str("general.name", &format!("tiny-{a}"))
            .set_u32(&k("block_count"), self.n_layer)
            .set_u32(&k("context_length"), self.n_ctx)
            .set_u32(&k("embedding_length"), self.n_embd)
            .set_u32(&k("feed_forward_length"), self.n_ff)
            .set_u32(&k("attention.head_count"), self.n_head)
            .set_u32(&k("attention.head_count_kv"), self.n_kv_head)
            .set_f32(&k("rope.freq_base"), self.rope_theta)
            .set_f32(&k("attention.layer_norm_rms_epsilon"), self.rms_eps)
            .set_u32(&k("rope.dimension_count"), self.head_dim());
        if let TinyArch::Olmo2 { window, pattern } = self.arch {
            w.set_u32(&k("attention.sliding_window"), window)
                .set_u32(&k("attention.sliding_window_pattern"), pattern);
        }
    }

    /// Writes the tokenizer keys; returns the vocabulary size.
    fn vocabulary(&self, w: &mut GgufWriter) -> u32 {
        let types =
            |t: &[i32]| Value::Array(ValueType::I32, t.iter().map(|&t| Value::I32(t)).collect());
        if self.arch == TinyArch::Llama {
            w.set_str("tokenizer.ggml.model", "gpt2");
            let tokens: Vec<String> = (0..self.n_vocab).map(|i| format!("t{i}")).collect();
            w.set_str_array("tokenizer.ggml.tokens", &tokens);
            w.set("tokenizer.ggml.token_type", types(&vec![1; tokens.len()]));
            return self.n_vocab;
        }
        let v = bpe_vocab();
        let pre = match self.arch {
            TinyArch::Qwen2 => "qwen2",
            _ => "llama-bpe",
        };
        w.set_str("tokenizer.ggml.model", "gpt2")
            .set_str("tokenizer.ggml.pre", pre)
            .set_u32("tokenizer.ggml.bos_token_id", v.bos)
            .set_u32("tokenizer.ggml.eos_token_id", v.eos);
        w.set(
            "tokenizer.ggml.add_bos_token",
            Value::Bool(self.arch == TinyArch::Llama3),
        );
        w.set_str_array("tokenizer.ggml.tokens", &v.tokens);
        w.set("tokenizer.ggml.token_type", types(&v.types));
        w.set_str_array("tokenizer.ggml.merges", &v.merges);
        v.tokens.len() as u32
    }

    fn tensors(&self, w: &mut GgufWriter, v: u64) -> Result<(), QuantError> {
        let mut rng = SplitMix64(self.seed);
        let head_dim = self.head_dim() as u64;
        let kv = head_dim * self.n_kv_head as u64;
        let (e, ff) = (self.n_embd as u64, self.n_ff as u64);
        let olmo = matches!(self.arch, TinyArch::Olmo2 { .. });
        let matrix = |rng: &mut SplitMix64, cols: u64, rows: u64| -> Vec<f32> {
            let scale = 1.0 / (cols as f32).sqrt();
            (0..cols * rows).map(|_| rng.next_f32() * scale).collect()
        };
        let norm = |rng: &mut SplitMix64, n: u64| -> Vec<f32> {
            (0..n).map(|_| 1.0 + 0.1 * rng.next_f32()).collect()
        };
        let embd: Vec<f32> = (0..e * v).map(|_| rng.next_f32()).collect();
        w.add_tensor("token_embd.weight", &[e, v], self.embd_dtype, &embd)?;
        if self.arch == TinyArch::Llama3 {
            let f = llama31_rope_factors(head_dim as usize, self.rope_theta, 64.0);
            w.add_tensor("rope_freqs.weight", &[head_dim / 2], GgmlType::F32, &f)?;
        }
        let f32 = GgmlType::F32;
        for l in 0..self.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            if !olmo {
                w.add_tensor(&n("attn_norm"), &[e], f32, &norm(&mut rng, e))?;
            }
            w.add_tensor(&n("attn_q"), &[e, e], self.dtype, &matrix(&mut rng, e, e))?;
            w.add_tensor(&n("attn_k"), &[e, kv], self.dtype, &matrix(&mut rng, e, kv))?;
            w.add_tensor(&n("attn_v"), &[e, kv], self.dtype, &matrix(&mut rng, e, kv))?;
            if self.arch == TinyArch::Qwen2 {
                for (t, len) in [("attn_q", e), ("attn_k", kv), ("attn_v", kv)] {
                    let b: Vec<f32> = (0..len).map(|_| 0.5 * rng.next_f32()).collect();
                    w.add_tensor(&format!("blk.{l}.{t}.bias"), &[len], f32, &b)?;
                }
            }
            if olmo {
                w.add_tensor(&n("attn_q_norm"), &[e], f32, &norm(&mut rng, e))?;
                w.add_tensor(&n("attn_k_norm"), &[kv], f32, &norm(&mut rng, kv))?;
            }
            w.add_tensor(
                &n("attn_output"),
                &[e, e],
                self.dtype,
                &matrix(&mut rng, e, e),
            )?;
            if olmo {
                w.add_tensor(&n("post_attention_norm"), &[e], f32, &norm(&mut rng, e))?;
            } else {
                w.add_tensor(&n("ffn_norm"), &[e], f32, &norm(&mut rng, e))?;
            }
            w.add_tensor(
                &n("ffn_gate"),
                &[e, ff],
                self.dtype,
                &matrix(&mut rng, e, ff),
            )?;
            w.add_tensor(&n("ffn_up"), &[e, ff], self.dtype, &matrix(&mut rng, e, ff))?;
            w.add_tensor(
                &n("ffn_down"),
                &[ff, e],
                self.dtype,
                &matrix(&mut rng, ff, e),
            )?;
            if olmo {
                w.add_tensor(&n("post_ffw_norm"), &[e], f32, &norm(&mut rng, e))?;
            }
        }
        w.add_tensor("output_norm.weight", &[e], f32, &norm(&mut rng, e))?;
        if self.untied_output || olmo {
            let head: Vec<f32> = matrix(&mut rng, e, v)
                .into_iter()
                .map(|x| x * self.head_gain)
                .collect();
            w.add_tensor("output.weight", &[e, v], self.dtype, &head)?;
        }
        Ok(())
    }
}

/// The tiny models checked against llama.cpp (`tests/agreement_tiny.rs`,
/// `scripts/make-golden tiny`), by name: `llama3`, `qwen2`, `olmo2` (window 8 on 3 of
/// every 4 layers, OLMo 3's pattern) and `olmo2-swa` (window 8 on every layer). Four
/// layers, 4 query heads over 2 KV heads of 16, an untied output head.
pub fn reference_model(name: &str, dtype: GgmlType) -> Option<TinyLlama> {
    let arch = match name {
        "llama3" => TinyArch::Llama3,
        "qwen2" => TinyArch::Qwen2,
        "olmo2" => TinyArch::Olmo2 {
            window: 8,
            pattern: 4,
        },
        "olmo2-swa" => TinyArch::Olmo2 {
            window: 8,
            pattern: 0,
        },
        _ => return None,
    };
    Some(TinyLlama {
        arch,
        n_layer: 4,
        dtype,
        embd_dtype: dtype,
        n_ctx: 512,
        // A tied head makes a random model predict mostly the token it was given, whatever
        // the layers do; an untied one makes every logit depend on them.
        untied_output: true,
        head_gain: 4.0,
        seed: 0x7e57 ^ name.len() as u64,
        ..TinyLlama::default()
    })
}
