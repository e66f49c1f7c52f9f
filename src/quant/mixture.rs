//! llama-quantize's file types and per-tensor mixture rules, for `qgraph quantize`: which
//! tensors are quantized, which get more bits than the file type's base format, and the
//! fallback when a row does not hold whole blocks. Written from reading llama.cpp's
//! `src/llama-quant.cpp` (the version llama-cpp-python 0.3.36 builds) for dense models;
//! `tests/quantize.rs` checks the choices against a file llama.cpp itself quantized.

use super::{GgmlType, QuantError};

/// A tensor as the rules see it: its name, ggml dims (`dims[0]` is the row length) and type.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    pub dtype: GgmlType,
}

/// A file type as llama-quantize names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
    Iq4Nl,
    Iq4Xs,
}

use FileType as F;

impl FileType {
    /// Every file type, with its llama-quantize name and `LLAMA_FTYPE_MOSTLY_*` number.
    pub const ALL: [(FileType, &'static str, u32); 18] = [
        (F::Q4_0, "Q4_0", 2),
        (F::Q4_1, "Q4_1", 3),
        (F::Q5_0, "Q5_0", 8),
        (F::Q5_1, "Q5_1", 9),
        (F::Q8_0, "Q8_0", 7),
        (F::Q2K, "Q2_K", 10),
        (F::Q3KS, "Q3_K_S", 11),
        (F::Q3KM, "Q3_K_M", 12),
        (F::Q3KL, "Q3_K_L", 13),
        (F::Q4KS, "Q4_K_S", 14),
        (F::Q4KM, "Q4_K_M", 15),
        (F::Q5KS, "Q5_K_S", 16),
        (F::Q5KM, "Q5_K_M", 17),
        (F::Q6K, "Q6_K", 18),
        (F::Iq4Nl, "IQ4_NL", 25),
        (F::Iq4Xs, "IQ4_XS", 30),
        (F::F16, "F16", 1),
        (F::BF16, "BF16", 32),
    ];

    /// Types llama-quantize has that need an importance matrix (qgraph takes none).
    const NEED_IMATRIX: [&'static str; 6] =
        ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "Q2_K_S"];

    /// The type named `s` (case-insensitive; Q3_K, Q4_K and Q5_K mean their _M variants, as
    /// in llama-quantize), or a message that says why not.
    pub fn from_name(s: &str) -> Result<FileType, String> {
        let up = s.to_ascii_uppercase();
        let up = match up.as_str() {
            "Q3_K" | "Q4_K" | "Q5_K" => format!("{up}_M"),
            _ => up,
        };
        if let Some((t, _, _)) = Self::ALL.iter().find(|(_, n, _)| *n == up) {
            return Ok(*t);
        }
        let names: Vec<&str> = Self::ALL.iter().map(|(_, n, _)| *n).collect();
        if Self::NEED_IMATRIX.contains(&up.as_str()) {
            return Err(format!(
                "{s} needs an importance matrix, which qgraph quantize does not take (types: {})",
                names.join(", ")
            ));
        }
        Err(format!(
            "unknown file type `{s}` (types: {})",
            names.join(", ")
        ))
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    /// `general.file_type`: llama.cpp's `LLAMA_FTYPE_MOSTLY_*` number.
    pub fn llama_id(self) -> u32 {
        Self::ALL.iter().find(|e| e.0 == self).map_or(0, |e| e.2)
    }

    /// The format most tensors get.
    pub fn base(self) -> GgmlType {
        match self {
            F::F16 => GgmlType::F16,
            F::BF16 => GgmlType::BF16,
            F::Q4_0 => GgmlType::Q4_0,
            F::Q4_1 => GgmlType::Q4_1,
            F::Q5_0 => GgmlType::Q5_0,
            F::Q5_1 => GgmlType::Q5_1,
            F::Q8_0 => GgmlType::Q8_0,
            F::Q2K => GgmlType::Q2K,
            F::Q3KS | F::Q3KM | F::Q3KL => GgmlType::Q3K,
            F::Q4KS | F::Q4KM => GgmlType::Q4K,
            F::Q5KS | F::Q5KM => GgmlType::Q5K,
            F::Q6K => GgmlType::Q6K,
            F::Iq4Nl => GgmlType::Iq4Nl,
            F::Iq4Xs => GgmlType::Iq4Xs,
        }
    }
}

/// What happens to one tensor.
#[derive(Debug, Clone)]
pub struct Choice {
    pub name: String,
    pub dims: Vec<u64>,
    pub from: GgmlType,
    pub to: GgmlType,
    pub n_elements: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why `to` is not the rule's type (a fallback), for the progress lines.
    pub note: Option<&'static str>,
}

impl Choice {
    /// Whether the tensor's bytes change (else they are copied).
    pub fn changes(&self) -> bool {
        self.from != self.to
    }
}

/// Why a model cannot be quantized as asked.
#[derive(Debug, thiserror::Error)]
pub enum MixtureError {
    #[error(
        "tensor {name} is {dtype}, which qgraph cannot convert (it converts {})",
        GgmlType::computable_list()
    )]
    Unconvertible { name: String, dtype: GgmlType },
    #[error("tensor {name}: rows of {cols} elements fit neither {want} nor its fallback blocks")]
    NoFallback {
        name: String,
        cols: u64,
        want: GgmlType,
    },
}

/// Whether llama-quantize quantizes a tensor at all: 2-D (or more) weights, not norms.
fn quantizable(name: &str, dims: &[u64]) -> bool {
    name.ends_with("weight")
        && dims.len() >= 2
        && !name.contains("_norm.weight")
        && !name.contains("ffn_gate_inp.weight")
        && !name.contains("pos_embd")
        && !name.contains("token_types")
}

/// `use_more_bits`: the first and last eighth of layers, and every third between.
fn use_more_bits(i: u64, n: u64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64) % 3 == 2
}

/// The layer index of a `blk.N.` tensor.
fn layer_of(name: &str) -> Option<u64> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama-quantize's rule for one quantized tensor (before the fallback).
fn rule(ftype: FileType, name: &str, layer: u64, n_layer: u64, tied: bool) -> GgmlType {
    let base = ftype.base();
    let is = |s: &str| name.contains(s);
    if name == "output.weight" || (tied && name == "token_embd.weight") {
        return if base == GgmlType::Q8_0 {
            GgmlType::Q8_0
        } else {
            GgmlType::Q6K
        };
    }
    if is("attn_v.weight") || is("attn_qkv.weight") {
        return match ftype {
            F::Q2K | F::Q3KL => {
                if ftype == F::Q2K {
                    GgmlType::Q3K
                } else {
                    GgmlType::Q5K
                }
            }
            F::Q3KM if layer < 2 => GgmlType::Q5K,
            F::Q3KM => GgmlType::Q4K,
            F::Q4KM | F::Q5KM if use_more_bits(layer, n_layer) => GgmlType::Q6K,
            F::Q4KS if layer < 4 => GgmlType::Q5K,
            _ => base,
        };
    }
    if is("ffn_down") {
        return match ftype {
            F::Q2K => GgmlType::Q3K,
            F::Q3KM if layer < n_layer / 16 => GgmlType::Q5K,
            F::Q3KM => GgmlType::Q4K,
            F::Q3KL => GgmlType::Q5K,
            F::Q4KM | F::Q5KM if use_more_bits(layer, n_layer) => GgmlType::Q6K,
            F::Iq4Nl | F::Iq4Xs if layer < n_layer / 8 => GgmlType::Q5K,
            F::Q4KS if layer < n_layer / 8 => GgmlType::Q5K,
            _ => base,
        };
    }
    if is("attn_output.weight") {
        return match ftype {
            F::Q2K => GgmlType::Q3K,
            F::Q3KM => GgmlType::Q4K,
            F::Q3KL => GgmlType::Q5K,
            _ => base,
        };
    }
    base
}

/// `want`, or llama-quantize's fallback when rows of `cols` do not hold whole blocks of it.
fn fit(
    name: &str,
    cols: u64,
    want: GgmlType,
) -> Result<(GgmlType, Option<&'static str>), MixtureError> {
    if cols.is_multiple_of(want.block_len()) {
        return Ok((want, None));
    }
    let fallback = match want {
        GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
        GgmlType::Iq4Xs => GgmlType::Iq4Nl,
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => {
            return Err(MixtureError::NoFallback {
                name: name.to_string(),
                cols,
                want,
            })
        }
    };
    if cols.is_multiple_of(fallback.block_len()) {
        Ok((fallback, Some("fallback: rows are not whole blocks")))
    } else {
        Ok((GgmlType::F16, Some("fallback to F16: unusual row length")))
    }
}

/// Each of a model's tensors, in file order, with the type it gets in `ftype`.
pub fn plan(tensors: &[Tensor], ftype: FileType, pure: bool) -> Result<Vec<Choice>, MixtureError> {
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let n_layer = tensors
        .iter()
        .filter_map(|t| layer_of(t.name))
        .max()
        .map_or(0, |l| l + 1);
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let cols = t.dims.first().copied().unwrap_or(1);
        let n_elements: u64 = t.dims.iter().product();
        let (to, note) = if !quantizable(t.name, t.dims) {
            (t.dtype, None)
        } else if ftype.base().is_float() {
            (ftype.base(), None)
        } else {
            let want = if pure {
                ftype.base()
            } else {
                rule(ftype, t.name, layer_of(t.name).unwrap_or(0), n_layer, tied)
            };
            fit(t.name, cols, want)?
        };
        if to != t.dtype && !t.dtype.is_computable() {
            return Err(MixtureError::Unconvertible {
                name: t.name.to_string(),
                dtype: t.dtype,
            });
        }
        let bytes_in = t.dtype.bytes_for(n_elements).unwrap_or(0);
        out.push(Choice {
            name: t.name.to_string(),
            dims: t.dims.to_vec(),
            from: t.dtype,
            to,
            n_elements,
            bytes_in,
            // `fit` chose a type whose blocks divide the rows
            bytes_out: to.bytes_for(n_elements).unwrap_or(bytes_in),
            note,
        });
    }
    Ok(out)
}

/// The tensor's bytes `src` (of `c.from`) converted to `c.to`, rows split over `threads`.
pub fn convert(c: &Choice, src: &[u8], threads: usize) -> Result<Vec<u8>, QuantError> {
    let cols = c.dims.first().copied().unwrap_or(1) as usize;
    let rows = (c.n_elements as usize) / cols.max(1);
    let in_row = src.len() / rows.max(1);
    let per = rows.div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<u8>, QuantError>> = std::thread::scope(|s| {
        let jobs: Vec<_> = src
            .chunks(per * in_row)
            .map(|chunk| {
                s.spawn(move || {
                    let mut x = vec![0f32; chunk.len() / in_row * cols];
                    super::dequantize(c.from, chunk, &mut x)?;
                    super::quantize(c.to, &x)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::with_capacity(c.bytes_out as usize);
    for p in parts {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_in_the_first_and_last_eighth_and_every_third() {
        let picked: Vec<u64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!(FileType::from_name("q4_k_m"), Ok(FileType::Q4KM));
        assert_eq!(FileType::from_name("Q4_K"), Ok(FileType::Q4KM));
        assert!(FileType::from_name("IQ2_XXS")
            .unwrap_err()
            .contains("importance matrix"));
        assert!(FileType::from_name("Q9").unwrap_err().contains("Q4_K_M"));
    }
}
