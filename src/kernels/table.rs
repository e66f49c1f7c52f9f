//! Picks a kernel for each step, once, at plan time.

use super::scalar::gemv::*;
use super::{Chosen, GemvFn, KernelLevel, RowFn};
use crate::quant::GgmlType;

/// The gemv kernel for weights of `dtype` at `level`, or `None` when qgraph has none.
pub fn gemv(dtype: GgmlType, level: KernelLevel) -> Option<Chosen<GemvFn>> {
    let (f, name): (GemvFn, &'static str) = match (dtype, level) {
        (GgmlType::F32, KernelLevel::Scalar) => (gemv_f32_scalar, "gemv_f32_scalar"),
        (GgmlType::F16, KernelLevel::Scalar) => (gemv_f16_scalar, "gemv_f16_scalar"),
        (GgmlType::Q8_0, KernelLevel::Scalar) => (gemv_q8_0_scalar, "gemv_q8_0_scalar"),
        (GgmlType::Q4_0, KernelLevel::Scalar) => (gemv_q4_0_scalar, "gemv_q4_0_scalar"),
        (GgmlType::Q4_1, KernelLevel::Scalar) => (gemv_q4_1_scalar, "gemv_q4_1_scalar"),
        _ => return None,
    };
    Some(Chosen { f, name })
}

/// The row-conversion kernel (embedding lookup) for `dtype` at `level`.
pub fn row(dtype: GgmlType, level: KernelLevel) -> Option<Chosen<RowFn>> {
    let (f, name): (RowFn, &'static str) = match (dtype, level) {
        (GgmlType::F32, KernelLevel::Scalar) => (row_f32_scalar, "embed_f32_scalar"),
        (GgmlType::F16, KernelLevel::Scalar) => (row_f16_scalar, "embed_f16_scalar"),
        (GgmlType::Q8_0, KernelLevel::Scalar) => (row_q8_0_scalar, "embed_q8_0_scalar"),
        (GgmlType::Q4_0, KernelLevel::Scalar) => (row_q4_0_scalar, "embed_q4_0_scalar"),
        (GgmlType::Q4_1, KernelLevel::Scalar) => (row_q4_1_scalar, "embed_q4_1_scalar"),
        _ => return None,
    };
    Some(Chosen { f, name })
}

/// The best level this CPU supports, detected once.
pub fn detect() -> KernelLevel {
    KernelLevel::Scalar
}

use super::scalar::{attention, elementwise, norm, rope};
use super::{AccumulateFn, AttendFn, BinaryFn, RmsNormFn, RopeFn, UnaryFn};

pub fn accumulate(_level: KernelLevel) -> Chosen<AccumulateFn> {
    Chosen {
        f: elementwise::accumulate_scalar,
        name: "accumulate_scalar",
    }
}

pub fn rmsnorm(_level: KernelLevel) -> Chosen<RmsNormFn> {
    Chosen {
        f: norm::rmsnorm_scalar,
        name: "rmsnorm_scalar",
    }
}

pub fn rope(_level: KernelLevel) -> Chosen<RopeFn> {
    Chosen {
        f: rope::rope_scalar,
        name: "rope_scalar",
    }
}

pub fn attend(_level: KernelLevel) -> Chosen<AttendFn> {
    Chosen {
        f: attention::attend_scalar,
        name: "attend_scalar",
    }
}

pub fn add(_level: KernelLevel) -> Chosen<BinaryFn> {
    Chosen {
        f: elementwise::add_scalar,
        name: "add_scalar",
    }
}

pub fn mul(_level: KernelLevel) -> Chosen<BinaryFn> {
    Chosen {
        f: elementwise::mul_scalar,
        name: "mul_scalar",
    }
}

pub fn silu(_level: KernelLevel) -> Chosen<UnaryFn> {
    Chosen {
        f: elementwise::silu_scalar,
        name: "silu_scalar",
    }
}

pub fn softmax(_level: KernelLevel) -> Chosen<UnaryFn> {
    Chosen {
        f: elementwise::softmax_scalar,
        name: "softmax_scalar",
    }
}
