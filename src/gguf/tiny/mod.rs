//! Tiny llama-architecture models with seeded random weights, written with `GgufWriter`.
//! Tests use them to prove nothing about SmolLM2 is hard-coded, and to exercise every
//! weight format on a model small enough to check exhaustively.

use super::value::{Value, ValueType};
use super::write::GgufWriter;
use crate::quant::{GgmlType, QuantError};
use crate::rng::SplitMix64;

/// The shape of a tiny llama model. Row lengths (`n_embd`, `n_ff`) must be multiples of 32
/// when `dtype` is a block format.
#[derive(Debug, Clone)]
pub struct TinyLlama {
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_kv_head: u32,
    pub n_ff: u32,
    pub n_vocab: u32,
    pub n_ctx: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// The format of the projection matrices.
    pub dtype: GgmlType,
    /// The format of the token embedding.
    pub embd_dtype: GgmlType,
    /// Whether to write a separate `output.weight` (otherwise the embedding is tied).
    pub untied_output: bool,
    pub seed: u64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        TinyLlama {
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
            seed: 0x5eed,
        }
    }
}

impl TinyLlama {
    /// A writer holding the whole model: llama metadata, a byte-level vocabulary and every
    /// tensor, named as llama.cpp's converter names them.
    pub fn writer(&self) -> Result<GgufWriter, QuantError> {
        let mut rng = SplitMix64(self.seed);
        let head_dim = self.n_embd / self.n_head.max(1);
        let kv_dim = (head_dim * self.n_kv_head) as u64;
        let (e, ff, v) = (self.n_embd as u64, self.n_ff as u64, self.n_vocab as u64);
        let mut w = GgufWriter::new();
        w.set_str("general.architecture", "llama")
            .set_str("general.name", "tiny-llama")
            .set_u32("llama.block_count", self.n_layer)
            .set_u32("llama.context_length", self.n_ctx)
            .set_u32("llama.embedding_length", self.n_embd)
            .set_u32("llama.feed_forward_length", self.n_ff)
            .set_u32("llama.attention.head_count", self.n_head)
            .set_u32("llama.attention.head_count_kv", self.n_kv_head)
            .set_f32("llama.rope.freq_base", self.rope_theta)
            .set_f32("llama.attention.layer_norm_rms_epsilon", self.rms_eps)
            .set_u32("llama.rope.dimension_count", head_dim)
            .set_str("tokenizer.ggml.model", "gpt2");
        let tokens: Vec<String> = (0..self.n_vocab).map(|i| format!("t{i}")).collect();
        w.set_str_array("tokenizer.ggml.tokens", &tokens);
        w.set(
            "tokenizer.ggml.token_type",
            Value::Array(
                ValueType::I32,
                (0..self.n_vocab).map(|_| Value::I32(1)).collect(),
            ),
        );

        let matrix = |rng: &mut SplitMix64, cols: u64, rows: u64| -> Vec<f32> {
            let scale = 1.0 / (cols as f32).sqrt();
            (0..cols * rows).map(|_| rng.next_f32() * scale).collect()
        };
        let norm = |rng: &mut SplitMix64| -> Vec<f32> {
            (0..e).map(|_| 1.0 + 0.1 * rng.next_f32()).collect()
        };
        let embd: Vec<f32> = (0..e * v).map(|_| rng.next_f32()).collect();
        w.add_tensor("token_embd.weight", &[e, v], self.embd_dtype, &embd)?;
        for l in 0..self.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            w.add_tensor(&n("attn_norm"), &[e], GgmlType::F32, &norm(&mut rng))?;
            w.add_tensor(&n("attn_q"), &[e, e], self.dtype, &matrix(&mut rng, e, e))?;
            w.add_tensor(
                &n("attn_k"),
                &[e, kv_dim],
                self.dtype,
                &matrix(&mut rng, e, kv_dim),
            )?;
            w.add_tensor(
                &n("attn_v"),
                &[e, kv_dim],
                self.dtype,
                &matrix(&mut rng, e, kv_dim),
            )?;
            w.add_tensor(
                &n("attn_output"),
                &[e, e],
                self.dtype,
                &matrix(&mut rng, e, e),
            )?;
            w.add_tensor(&n("ffn_norm"), &[e], GgmlType::F32, &norm(&mut rng))?;
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
        }
        w.add_tensor("output_norm.weight", &[e], GgmlType::F32, &norm(&mut rng))?;
        if self.untied_output {
            w.add_tensor(
                "output.weight",
                &[e, v],
                self.dtype,
                &matrix(&mut rng, e, v),
            )?;
        }
        Ok(w)
    }
}
