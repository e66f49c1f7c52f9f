//! Picks a kernel for each step, once, at plan time (the role of ggml's `type_traits_cpu`
//! table and tract's `linalg` plugs): the CPU's features are detected once, each step gets
//! a fn pointer, and no kernel tests a feature itself.

use super::scalar::{act, attention, elementwise, gemv as sg, norm, rope as srope};
use super::{
    AccumulateFn, AttendFn, BinaryFn, Chosen, FloatGemmFn, GemmFn, GemvFn, KernelLevel, PanelRowFn,
    QuantizeActFn, RmsNormFn, RopeFn, RowFn, SiluMulFn, UnaryFn, WeightLayout,
};
use crate::quant::GgmlType;

/// The best level this CPU supports, detected once per process.
pub fn detect() -> KernelLevel {
    static LEVEL: std::sync::OnceLock<KernelLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if supports(KernelLevel::Avx512) {
            KernelLevel::Avx512
        } else if supports(KernelLevel::Avx2) {
            KernelLevel::Avx2
        } else {
            KernelLevel::Scalar
        }
    })
}

/// Whether this CPU can run `level`'s kernels.
pub fn supports(level: KernelLevel) -> bool {
    match level {
        KernelLevel::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx2 => {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        }
        #[cfg(target_arch = "x86_64")]
        KernelLevel::Avx512 => {
            supports(KernelLevel::Avx2)
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        KernelLevel::Avx2 | KernelLevel::Avx512 => false,
    }
}

/// The AVX-512 VNNI twin for `dtype` among `twins` (format, kernel, name), if it has one:
/// a kernel that reads 8-bit activations.
#[cfg(target_arch = "x86_64")]
fn twin<F: Copy>(dtype: GgmlType, twins: &[(GgmlType, F, &'static str)]) -> Option<Chosen<F>> {
    twins
        .iter()
        .find(|t| t.0 == dtype)
        .map(|&(_, f, name)| Chosen {
            f,
            name,
            wants_q8: true,
        })
}

fn chosen<F>(f: F, name: &'static str) -> Chosen<F> {
    Chosen {
        f,
        name,
        wants_q8: false,
    }
}

/// The gemv kernel for rows of `k` elements of `dtype` in `layout` at `level`, or `None`
/// when qgraph has none for the format in that layout.
pub fn gemv(
    dtype: GgmlType,
    level: KernelLevel,
    k: usize,
    layout: WeightLayout,
) -> Option<Chosen<GemvFn>> {
    if layout == WeightLayout::Panels {
        return gemv_panels(dtype, level);
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        use super::x86_64::float::*;
        use super::x86_64::gemv::*;
        use super::x86_64::half::{gemv_bf16_avx2, gemv_f16_avx2};
        let q8 = |f: GemvFn, name| {
            Some(Chosen {
                f,
                name,
                wants_q8: true,
            })
        };
        match dtype {
            GgmlType::Q4_1 => return q8(gemv_q4_1_avx2, "gemv_q4_1_avx2"),
            GgmlType::Q4_0 => return q8(gemv_q4_0_avx2, "gemv_q4_0_avx2"),
            GgmlType::Q8_0 => return q8(gemv_q8_0_avx2, "gemv_q8_0_avx2"),
            GgmlType::F16 if k.is_multiple_of(8) => {
                return Some(chosen(gemv_f16_avx2 as GemvFn, "gemv_f16_avx2"))
            }
            GgmlType::BF16 if k.is_multiple_of(8) => {
                return Some(chosen(gemv_bf16_avx2 as GemvFn, "gemv_bf16_avx2"))
            }
            GgmlType::F32 if k.is_multiple_of(8) => {
                return Some(chosen(gemv_f32_avx2 as GemvFn, "gemv_f32_avx2"))
            }
            _ => {}
        }
    }
    let _ = k;
    scalar_gemv(dtype).map(|(f, name)| chosen(f, name))
}

/// The reference gemv of every computable format (f32 arithmetic, weights dequantized
/// block by block); also what the AVX2 level runs for a format in the file's rows that has
/// no SIMD kernel in that layout.
fn scalar_gemv(dtype: GgmlType) -> Option<(GemvFn, &'static str)> {
    use crate::quant::*;
    use sg::gemv_blocks_scalar as g;
    Some(match dtype {
        GgmlType::F32 => (sg::gemv_f32_scalar, "gemv_f32_scalar"),
        GgmlType::F16 => (sg::gemv_f16_scalar, "gemv_f16_scalar"),
        GgmlType::BF16 => (sg::gemv_bf16_scalar, "gemv_bf16_scalar"),
        GgmlType::Q8_0 => (g::<BlockQ8_0>, "gemv_q8_0_scalar"),
        GgmlType::Q4_0 => (g::<BlockQ4_0>, "gemv_q4_0_scalar"),
        GgmlType::Q4_1 => (g::<BlockQ4_1>, "gemv_q4_1_scalar"),
        GgmlType::Q5_0 => (g::<BlockQ5_0>, "gemv_q5_0_scalar"),
        GgmlType::Q5_1 => (g::<BlockQ5_1>, "gemv_q5_1_scalar"),
        GgmlType::Iq4Nl => (g::<BlockIq4Nl>, "gemv_iq4_nl_scalar"),
        GgmlType::Q2K => (g::<BlockQ2K>, "gemv_q2_k_scalar"),
        GgmlType::Q3K => (g::<BlockQ3K>, "gemv_q3_k_scalar"),
        GgmlType::Q4K => (g::<BlockQ4K>, "gemv_q4_k_scalar"),
        GgmlType::Q5K => (g::<BlockQ5K>, "gemv_q5_k_scalar"),
        GgmlType::Q6K => (g::<BlockQ6K>, "gemv_q6_k_scalar"),
        GgmlType::Iq4Xs => (g::<BlockIq4Xs>, "gemv_iq4_xs_scalar"),
        _ => return None,
    })
}

/// The gemv over row panels (`kernels/panel.rs`) for `dtype` at `level`: the kernels a
/// repacked matrix runs. The scalar level reads the file's rows only.
fn gemv_panels(dtype: GgmlType, level: KernelLevel) -> Option<Chosen<GemvFn>> {
    #[cfg(target_arch = "x86_64")]
    if level == KernelLevel::Avx512 {
        use super::x86_64::vnni::*;
        // Q8_0 decodes no faster with VNNI (its gemv waits on memory): it keeps the AVX2
        // kernel.
        let twins: [(GgmlType, GemvFn, &'static str); 9] = [
            (GgmlType::Q2K, gemv_q2_kx8_vnni, "gemv_q2_kx8_vnni"),
            (GgmlType::Q3K, gemv_q3_kx8_vnni, "gemv_q3_kx8_vnni"),
            (GgmlType::Q6K, gemv_q6_kx8_vnni, "gemv_q6_kx8_vnni"),
            (GgmlType::Q5_0, gemv_q5_0x8_vnni, "gemv_q5_0x8_vnni"),
            (GgmlType::Q5_1, gemv_q5_1x8_vnni, "gemv_q5_1x8_vnni"),
            (GgmlType::Q5K, gemv_q5_kx8_vnni, "gemv_q5_kx8_vnni"),
            (GgmlType::Q4K, gemv_q4_kx8_vnni, "gemv_q4_kx8_vnni"),
            (GgmlType::Iq4Nl, gemv_iq4_nlx8_vnni, "gemv_iq4_nlx8_vnni"),
            (GgmlType::Iq4Xs, gemv_iq4_xsx8_vnni, "gemv_iq4_xsx8_vnni"),
        ];
        if is_x86_feature_detected!("gfni") {
            use super::x86_64::gfni::*;
            let gfni: [(GgmlType, GemvFn, &'static str); 1] =
                [(GgmlType::Q3K, gemv_q3_kx8_gfni, "gemv_q3_kx8_gfni")];
            if let Some(k) = twin(dtype, &gfni) {
                return Some(k);
            }
        }
        if let Some(k) = twin(dtype, &twins) {
            return Some(k);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        use super::x86_64::kpanel::*;
        use super::x86_64::panel::{gemv_q4_0x8_avx2, gemv_q4_1x8_avx2};
        let (f, name): (GemvFn, &'static str) = match dtype {
            GgmlType::Q4_1 => (gemv_q4_1x8_avx2, "gemv_q4_1x8_avx2"),
            GgmlType::Q4_0 => (gemv_q4_0x8_avx2, "gemv_q4_0x8_avx2"),
            GgmlType::Q8_0 => (gemv_q8_0x8_avx2, "gemv_q8_0x8_avx2"),
            GgmlType::Q5_0 => (gemv_q5_0x8_avx2, "gemv_q5_0x8_avx2"),
            GgmlType::Q5_1 => (gemv_q5_1x8_avx2, "gemv_q5_1x8_avx2"),
            GgmlType::Q4K => (gemv_q4_kx8_avx2, "gemv_q4_kx8_avx2"),
            GgmlType::Q5K => (gemv_q5_kx8_avx2, "gemv_q5_kx8_avx2"),
            GgmlType::Q6K => (gemv_q6_kx8_avx2, "gemv_q6_kx8_avx2"),
            GgmlType::Q3K => (gemv_q3_kx8_avx2, "gemv_q3_kx8_avx2"),
            GgmlType::Q2K => (gemv_q2_kx8_avx2, "gemv_q2_kx8_avx2"),
            GgmlType::Iq4Nl => (gemv_iq4_nlx8_avx2, "gemv_iq4_nlx8_avx2"),
            GgmlType::Iq4Xs => (gemv_iq4_xsx8_avx2, "gemv_iq4_xsx8_avx2"),
            _ => return None,
        };
        return Some(Chosen {
            f,
            name,
            wants_q8: true,
        });
    }
    let _ = (dtype, level);
    None
}

/// The batched (matrix × matrix) kernel for `dtype` in `layout` at `level`, when there is
/// one; steps of a plan for one token, and formats without one, loop the gemv over the
/// tokens. The scalar level has none on purpose: its prefill is its decode, token by token.
pub fn gemm(dtype: GgmlType, level: KernelLevel, layout: WeightLayout) -> Option<Chosen<GemmFn>> {
    #[cfg(target_arch = "x86_64")]
    if level == KernelLevel::Avx512 && layout == WeightLayout::Panels {
        use super::x86_64::vnni::*;
        let twins: [(GgmlType, GemmFn, &'static str); 12] = [
            (GgmlType::Q2K, gemm_q2_kx8_vnni, "gemm_q2_kx8_vnni"),
            (GgmlType::Q4_0, gemm_q4_0x8_vnni, "gemm_q4_0x8_vnni"),
            (GgmlType::Q4_1, gemm_q4_1x8_vnni, "gemm_q4_1x8_vnni"),
            (GgmlType::Q5_0, gemm_q5_0x8_vnni, "gemm_q5_0x8_vnni"),
            (GgmlType::Q5_1, gemm_q5_1x8_vnni, "gemm_q5_1x8_vnni"),
            (GgmlType::Q4K, gemm_q4_kx8_vnni, "gemm_q4_kx8_vnni"),
            (GgmlType::Q5K, gemm_q5_kx8_vnni, "gemm_q5_kx8_vnni"),
            (GgmlType::Q8_0, gemm_q8_0x8_vnni, "gemm_q8_0x8_vnni"),
            (GgmlType::Q6K, gemm_q6_kx8_vnni, "gemm_q6_kx8_vnni"),
            (GgmlType::Q3K, gemm_q3_kx8_vnni, "gemm_q3_kx8_vnni"),
            (GgmlType::Iq4Nl, gemm_iq4_nlx8_vnni, "gemm_iq4_nlx8_vnni"),
            (GgmlType::Iq4Xs, gemm_iq4_xsx8_vnni, "gemm_iq4_xsx8_vnni"),
        ];
        if let Some(k) = twin(dtype, &twins) {
            return Some(k);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        use super::x86_64::gemm::*;
        use super::x86_64::kpanel::*;
        let (f, name): (GemmFn, &'static str) = match (dtype, layout) {
            (GgmlType::Q4_1, WeightLayout::Rows) => (gemm_q4_1_avx2, "gemm_q4_1_avx2"),
            (GgmlType::Q4_0, WeightLayout::Rows) => (gemm_q4_0_avx2, "gemm_q4_0_avx2"),
            (GgmlType::Q4_1, WeightLayout::Panels) => (gemm_q4_1x8_avx2, "gemm_q4_1x8_avx2"),
            (GgmlType::Q4_0, WeightLayout::Panels) => (gemm_q4_0x8_avx2, "gemm_q4_0x8_avx2"),
            (GgmlType::Q8_0, WeightLayout::Panels) => (gemm_q8_0x8_avx2, "gemm_q8_0x8_avx2"),
            (GgmlType::Q5_0, WeightLayout::Panels) => (gemm_q5_0x8_avx2, "gemm_q5_0x8_avx2"),
            (GgmlType::Q5_1, WeightLayout::Panels) => (gemm_q5_1x8_avx2, "gemm_q5_1x8_avx2"),
            (GgmlType::Q4K, WeightLayout::Panels) => (gemm_q4_kx8_avx2, "gemm_q4_kx8_avx2"),
            (GgmlType::Q5K, WeightLayout::Panels) => (gemm_q5_kx8_avx2, "gemm_q5_kx8_avx2"),
            (GgmlType::Q6K, WeightLayout::Panels) => (gemm_q6_kx8_avx2, "gemm_q6_kx8_avx2"),
            (GgmlType::Q3K, WeightLayout::Panels) => (gemm_q3_kx8_avx2, "gemm_q3_kx8_avx2"),
            (GgmlType::Q2K, WeightLayout::Panels) => (gemm_q2_kx8_avx2, "gemm_q2_kx8_avx2"),
            (GgmlType::Iq4Nl, WeightLayout::Panels) => (gemm_iq4_nlx8_avx2, "gemm_iq4_nlx8_avx2"),
            (GgmlType::Iq4Xs, WeightLayout::Panels) => (gemm_iq4_xsx8_avx2, "gemm_iq4_xsx8_avx2"),
            _ => return None,
        };
        return Some(Chosen {
            f,
            name,
            wants_q8: true,
        });
    }
    let _ = (dtype, level, layout);
    None
}

/// The few-token kernel (`x86_64/few.rs`) for a quantized matrix in row panels: a
/// server's decode step multiplies one row per request, too few for the batched gemm.
pub fn few(dtype: GgmlType, level: KernelLevel, layout: WeightLayout) -> Option<Chosen<GemmFn>> {
    #[cfg(target_arch = "x86_64")]
    if level == KernelLevel::Avx512 && layout == WeightLayout::Panels {
        use super::x86_64::few_vnni::*;
        let twins: [(GgmlType, GemmFn, &'static str); 12] = [
            (GgmlType::Q4_0, few_q4_0x8_vnni, "few_q4_0x8_vnni"),
            (GgmlType::Q4_1, few_q4_1x8_vnni, "few_q4_1x8_vnni"),
            (GgmlType::Q5_0, few_q5_0x8_vnni, "few_q5_0x8_vnni"),
            (GgmlType::Q5_1, few_q5_1x8_vnni, "few_q5_1x8_vnni"),
            (GgmlType::Q4K, few_q4_kx8_vnni, "few_q4_kx8_vnni"),
            (GgmlType::Q5K, few_q5_kx8_vnni, "few_q5_kx8_vnni"),
            (GgmlType::Q8_0, few_q8_0x8_vnni, "few_q8_0x8_vnni"),
            (GgmlType::Q6K, few_q6_kx8_vnni, "few_q6_kx8_vnni"),
            (GgmlType::Q2K, few_q2_kx8_vnni, "few_q2_kx8_vnni"),
            (GgmlType::Q3K, few_q3_kx8_vnni, "few_q3_kx8_vnni"),
            (GgmlType::Iq4Nl, few_iq4_nlx8_vnni, "few_iq4_nlx8_vnni"),
            (GgmlType::Iq4Xs, few_iq4_xsx8_vnni, "few_iq4_xsx8_vnni"),
        ];
        if let Some(k) = twin(dtype, &twins) {
            return Some(k);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() && layout == WeightLayout::Panels {
        use super::x86_64::few::*;
        let (f, name): (GemmFn, &'static str) = match dtype {
            GgmlType::Q4_0 => (few_q4_0x8_avx2, "few_q4_0x8_avx2"),
            GgmlType::Q4_1 => (few_q4_1x8_avx2, "few_q4_1x8_avx2"),
            GgmlType::Q8_0 => (few_q8_0x8_avx2, "few_q8_0x8_avx2"),
            GgmlType::Q5_0 => (few_q5_0x8_avx2, "few_q5_0x8_avx2"),
            GgmlType::Q5_1 => (few_q5_1x8_avx2, "few_q5_1x8_avx2"),
            GgmlType::Q2K => (few_q2_kx8_avx2, "few_q2_kx8_avx2"),
            GgmlType::Q3K => (few_q3_kx8_avx2, "few_q3_kx8_avx2"),
            GgmlType::Q4K => (few_q4_kx8_avx2, "few_q4_kx8_avx2"),
            GgmlType::Q5K => (few_q5_kx8_avx2, "few_q5_kx8_avx2"),
            GgmlType::Q6K => (few_q6_kx8_avx2, "few_q6_kx8_avx2"),
            GgmlType::Iq4Nl => (few_iq4_nlx8_avx2, "few_iq4_nlx8_avx2"),
            GgmlType::Iq4Xs => (few_iq4_xsx8_avx2, "few_iq4_xsx8_avx2"),
            _ => return None,
        };
        return Some(Chosen {
            f,
            name,
            wants_q8: true,
        });
    }
    let _ = (dtype, level, layout);
    None
}

/// The batched kernel for a float format (F32, F16, BF16) in rows of `k`, when there is
/// one: it reads the steps' f32 input rather than 8-bit blocks.
pub fn float_gemm(dtype: GgmlType, level: KernelLevel, k: usize) -> Option<Chosen<FloatGemmFn>> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() && k.is_multiple_of(8) {
        use super::x86_64::float::*;
        use super::x86_64::half::{gemm_bf16_avx2, gemm_f16_avx2};
        let (f, name): (FloatGemmFn, &'static str) = match dtype {
            GgmlType::F32 => (gemm_f32_avx2, "gemm_f32_avx2"),
            GgmlType::F16 => (gemm_f16_avx2, "gemm_f16_avx2"),
            GgmlType::BF16 => (gemm_bf16_avx2, "gemm_bf16_avx2"),
            _ => return None,
        };
        return Some(chosen(f, name));
    }
    let _ = (dtype, level, k);
    None
}

/// The scalar twin of each 8-bit-activation gemv (same arithmetic), for tests and benches.
pub fn gemv_q8_twin(dtype: GgmlType) -> Option<GemvFn> {
    match dtype {
        GgmlType::Q4_1 => Some(act::gemv_q4_1_q8_scalar),
        GgmlType::Q4_0 => Some(act::gemv_q4_0_q8_scalar),
        GgmlType::Q8_0 => Some(act::gemv_q8_0_q8_scalar),
        _ => None,
    }
}

pub fn quantize_act(level: KernelLevel) -> Chosen<QuantizeActFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        return chosen(super::x86_64::math::quantize_act_avx2, "quantize_q8_avx2");
    }
    let _ = level;
    chosen(act::quantize_act_scalar, "quantize_q8_scalar")
}

/// The activation quantizer for a step whose products' formats are `dtypes`: one scale per
/// 256 values where one is Q2_K or Q3_K (`act::quantize_act_tiled_scalar`), whose products
/// sum a tile's blocks in integers and so need every block of a tile to share its activation
/// scale; else `quantize_act`.
pub fn quantize_act_for(
    dtypes: impl IntoIterator<Item = GgmlType>,
    level: KernelLevel,
) -> Chosen<QuantizeActFn> {
    if !dtypes.into_iter().any(needs_tiled_act) {
        return quantize_act(level);
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        use super::x86_64::math::quantize_act_tiled_avx2;
        return chosen(quantize_act_tiled_avx2, "quantize_q8_tiled_avx2");
    }
    chosen(act::quantize_act_tiled_scalar, "quantize_q8_tiled_scalar")
}

/// Rows of activations (each a multiple of 256 long where it matters) quantized by the scalar
/// reference as a plan quantizes a step's input for `dtype`'s products (`quantize_act_for`):
/// for tests, benchmarks and examples that call one format's kernels directly.
pub fn quantize_act_reference(dtype: GgmlType, x: &[f32], out: &mut [act::BlockQ8Act]) {
    if needs_tiled_act(dtype) {
        act::quantize_act_tiled_scalar(x, out);
    } else {
        act::quantize_act_scalar(x, out);
    }
}

/// Whether `dtype`'s products need activations with one scale per 256 values
/// (`quantize_act_for`).
pub fn needs_tiled_act(dtype: GgmlType) -> bool {
    matches!(dtype, GgmlType::Q2K | GgmlType::Q3K)
}

/// The row-conversion kernel (embedding lookup) for rows of `n` elements of `dtype`.
pub fn row(dtype: GgmlType, level: KernelLevel, n: usize) -> Option<Chosen<RowFn>> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        use super::x86_64::math::{row_f16_avx2, row_q8_0_avx2};
        match dtype {
            GgmlType::Q8_0 => return Some(chosen(row_q8_0_avx2 as RowFn, "embed_q8_0_avx2")),
            GgmlType::F16 if n.is_multiple_of(8) => {
                return Some(chosen(row_f16_avx2 as RowFn, "embed_f16_avx2"))
            }
            _ => {}
        }
    }
    let _ = (level, n);
    use crate::quant::*;
    use sg::row_blocks_scalar as r;
    let (f, name): (RowFn, &'static str) = match dtype {
        GgmlType::F32 => (sg::row_f32_scalar, "embed_f32_scalar"),
        GgmlType::F16 => (sg::row_half_scalar::<false>, "embed_f16_scalar"),
        GgmlType::BF16 => (sg::row_half_scalar::<true>, "embed_bf16_scalar"),
        GgmlType::Q8_0 => (r::<BlockQ8_0>, "embed_q8_0_scalar"),
        GgmlType::Q4_0 => (r::<BlockQ4_0>, "embed_q4_0_scalar"),
        GgmlType::Q4_1 => (r::<BlockQ4_1>, "embed_q4_1_scalar"),
        GgmlType::Q5_0 => (r::<BlockQ5_0>, "embed_q5_0_scalar"),
        GgmlType::Q5_1 => (r::<BlockQ5_1>, "embed_q5_1_scalar"),
        GgmlType::Iq4Nl => (r::<BlockIq4Nl>, "embed_iq4_nl_scalar"),
        GgmlType::Q2K => (r::<BlockQ2K>, "embed_q2_k_scalar"),
        GgmlType::Q3K => (r::<BlockQ3K>, "embed_q3_k_scalar"),
        GgmlType::Q4K => (r::<BlockQ4K>, "embed_q4_k_scalar"),
        GgmlType::Q5K => (r::<BlockQ5K>, "embed_q5_k_scalar"),
        GgmlType::Q6K => (r::<BlockQ6K>, "embed_q6_k_scalar"),
        GgmlType::Iq4Xs => (r::<BlockIq4Xs>, "embed_iq4_xs_scalar"),
        _ => return None,
    };
    Some(chosen(f, name))
}

/// The row-conversion kernel for a table of `dtype` held in row panels (a tied embedding
/// whose matrix the output head reads repacked): plain Rust at every level, since a lookup
/// converts one row per token.
pub fn row_panels(dtype: GgmlType) -> Option<Chosen<PanelRowFn>> {
    use super::panel::*;
    let (f, name): (PanelRowFn, &'static str) = match dtype {
        GgmlType::Q4_0 => (row_q4_0_panel, "embed_q4_0x8_scalar"),
        GgmlType::Q4_1 => (row_q4_1_panel, "embed_q4_1x8_scalar"),
        GgmlType::Q5_0 => (row_q5_0_panel, "embed_q5_0x8_scalar"),
        GgmlType::Q5_1 => (row_q5_1_panel, "embed_q5_1x8_scalar"),
        GgmlType::Q8_0 => (row_q8_0_panel, "embed_q8_0x8_scalar"),
        GgmlType::Q4K => (row_q4_k_panel, "embed_q4_kx8_scalar"),
        GgmlType::Q5K => (row_q5_k_panel, "embed_q5_kx8_scalar"),
        GgmlType::Q6K => (row_q6_k_panel, "embed_q6_kx8_scalar"),
        GgmlType::Q3K => (row_q3_k_panel, "embed_q3_kx8_scalar"),
        GgmlType::Q2K => (row_q2_k_panel, "embed_q2_kx8_scalar"),
        GgmlType::Iq4Nl => (row_iq4_nl_panel, "embed_iq4_nlx8_scalar"),
        GgmlType::Iq4Xs => (row_iq4_xs_panel, "embed_iq4_xsx8_scalar"),
        _ => return None,
    };
    Some(chosen(f, name))
}

pub fn rmsnorm(level: KernelLevel) -> Chosen<RmsNormFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        return chosen(super::x86_64::math::rmsnorm_avx2, "rmsnorm_avx2");
    }
    let _ = level;
    chosen(norm::rmsnorm_scalar, "rmsnorm_scalar")
}

/// Rope for heads of `head_dim`: the angles are computed once per pair and shared by every
/// head; the AVX2 rotation needs `head_dim` a multiple of 16.
pub fn rope(level: KernelLevel, head_dim: usize) -> Chosen<RopeFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2()
        && head_dim.is_multiple_of(16)
        && head_dim <= super::x86_64::math::ROPE_MAX_HEAD_DIM
    {
        return chosen(super::x86_64::math::rope_avx2, "rope_avx2");
    }
    let _ = (level, head_dim);
    chosen(srope::rope_scalar, "rope_scalar")
}

/// Attention over caches of the given types; the AVX2 kernels need `head_dim` a multiple
/// of 16 (they hold 16 output values per head in registers).
pub fn attend(level: KernelLevel, head_dim: usize, kv: crate::vocab::KvTypes) -> Chosen<AttendFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() && head_dim.is_multiple_of(16) {
        let (f, name) = super::x86_64::attention::attend_for(kv.k, kv.v);
        return chosen(f, name);
    }
    let _ = (level, head_dim, kv);
    chosen(attention::attend_scalar, "attend_scalar")
}

pub fn silu_mul(level: KernelLevel) -> Chosen<SiluMulFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        return chosen(super::x86_64::math::silu_mul_avx2, "silu_mul_avx2");
    }
    let _ = level;
    chosen(elementwise::silu_mul_scalar, "silu_mul_scalar")
}

pub fn gelu_mul(level: KernelLevel) -> Chosen<SiluMulFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        return chosen(super::x86_64::math::gelu_mul_avx2, "gelu_mul_avx2");
    }
    let _ = level;
    chosen(elementwise::gelu_mul_scalar, "gelu_mul_scalar")
}

pub fn accumulate(level: KernelLevel) -> Chosen<AccumulateFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        return chosen(super::x86_64::math::accumulate_avx2, "accumulate_avx2");
    }
    let _ = level;
    chosen(elementwise::accumulate_scalar, "accumulate_scalar")
}

/// Unfused elementwise ops (only plans with passes off run them): simple loops the compiler
/// vectorizes at every level.
pub fn add(_level: KernelLevel) -> Chosen<BinaryFn> {
    chosen(elementwise::add_scalar, "add_scalar")
}

pub fn mul(_level: KernelLevel) -> Chosen<BinaryFn> {
    chosen(elementwise::mul_scalar, "mul_scalar")
}

pub fn silu(_level: KernelLevel) -> Chosen<UnaryFn> {
    chosen(elementwise::silu_scalar, "silu_scalar")
}

pub fn gelu(level: KernelLevel) -> Chosen<UnaryFn> {
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() {
        return chosen(super::x86_64::math::gelu_avx2, "gelu_avx2");
    }
    let _ = level;
    chosen(elementwise::gelu_scalar, "gelu_scalar")
}

pub fn softmax(_level: KernelLevel) -> Chosen<UnaryFn> {
    chosen(elementwise::softmax_scalar, "softmax_scalar")
}
