//! The KV cache's layout: where each position's K and V values of each KV head sit, for
//! every cache type (`vocab::KvType`), and the store that writes one position of one head.
//!
//! One layer's K cache (and likewise its V cache) is one region per KV head, so the heads a
//! worker attends read memory that no other worker's heads share, from start to end:
//!
//! ```text
//! K, head g: tiles of 8 positions; tile i holds positions 8i..8i+8, transposed:
//!   f32  [head_dim][8] f32        value (p, d) at d·8 + p%8
//!   f16  [head_dim][8] f16        likewise
//!   q8_0 per 32 dims c: [8] f16 scales (one per position) | [32][8] i8 codes  (272 B)
//! V, head g: rows of one position, head_dim values each:
//!   f32 / f16 plain, q8_0 ggml's blocks (f16 d, 32 i8 codes)
//! ```
//!
//! K is transposed inside a tile so that attention computes eight positions' scores in the
//! eight lanes of one vector, each lane summing `q[d]·k[d]` over `d` in order: a position's
//! score then never depends on which other positions or query rows share the call, which is
//! what keeps a prompt fed as a batch bitwise equal to the same prompt fed token by token.
//! A Q8_0 K value keeps ggml's Q8_0 quantization of its 32-value run (one scale per
//! position and run); only the bytes are arranged per tile.

use crate::quant::blocks::quantize_q8_0;
use crate::quant::QK;
use crate::vocab::KvType;
use half::f16;

/// Positions per K tile.
pub const KV_TILE: usize = 8;

/// Bytes of `n` values of `ty` (`n` a multiple of 32 for Q8_0).
pub const fn value_bytes(ty: KvType, n: usize) -> usize {
    match ty {
        KvType::F32 => 4 * n,
        KvType::F16 => 2 * n,
        KvType::Q8_0 => n / QK * 34,
    }
}

/// Positions a cache of `n_ctx` holds: whole tiles of `KV_TILE`.
pub const fn cache_rows(n_ctx: usize) -> usize {
    n_ctx.div_ceil(KV_TILE) * KV_TILE
}

/// One layer's K and V caches: their types and sizes. Every offset the kernels compute
/// comes from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KvGeom {
    pub k: KvType,
    pub v: KvType,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Positions each head's region holds: the context rounded up to whole tiles.
    pub rows: usize,
}

impl KvGeom {
    pub fn new(
        types: crate::vocab::KvTypes,
        kv_heads: usize,
        head_dim: usize,
        n_ctx: usize,
    ) -> Self {
        KvGeom {
            k: types.k,
            v: types.v,
            kv_heads,
            head_dim,
            rows: cache_rows(n_ctx),
        }
    }

    /// Why these types cannot hold heads of this size, if they cannot.
    pub fn unsupported(&self) -> Option<String> {
        for (which, ty) in [("K", self.k), ("V", self.v)] {
            if ty == KvType::Q8_0 && !self.head_dim.is_multiple_of(QK) {
                return Some(format!(
                    "a {which} cache of type q8_0 needs a head size that is a multiple of {QK} \
                     (this model's is {})",
                    self.head_dim
                ));
            }
        }
        None
    }

    /// Bytes of one K tile (8 positions of one head).
    pub fn k_tile_bytes(&self) -> usize {
        value_bytes(self.k, KV_TILE * self.head_dim)
    }

    /// Bytes of one V row (one position of one head).
    pub fn v_row_bytes(&self) -> usize {
        value_bytes(self.v, self.head_dim)
    }

    /// Bytes of one head's K region.
    pub fn k_head_bytes(&self) -> usize {
        self.rows / KV_TILE * self.k_tile_bytes()
    }

    /// Bytes of one head's V region.
    pub fn v_head_bytes(&self) -> usize {
        self.rows * self.v_row_bytes()
    }

    /// Bytes of one layer's K cache, and of its V cache.
    pub fn k_bytes(&self) -> usize {
        self.kv_heads * self.k_head_bytes()
    }

    pub fn v_bytes(&self) -> usize {
        self.kv_heads * self.v_head_bytes()
    }
}

/// Writes head `g`'s values `x` (`head_dim` of them) of position `pos` into a cache.
///
/// # Safety
/// `cache` is the start of a layer's K (for `store_k_*`) or V cache laid out as `geom`
/// says; `g < kv_heads`, `pos < rows`, `x.len() == head_dim`.
pub type KvStoreFn = unsafe fn(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize);

/// The store for a K cache of type `ty`, and its name for plan dumps.
pub fn store_k(ty: KvType) -> (KvStoreFn, &'static str) {
    match ty {
        KvType::F32 => (store_k_f32, "kstore_f32"),
        KvType::F16 => (store_k_f16, "kstore_f16"),
        KvType::Q8_0 => (store_k_q8_0, "kstore_q8_0"),
    }
}

/// The store for a V cache of type `ty`, and its name for plan dumps.
pub fn store_v(ty: KvType) -> (KvStoreFn, &'static str) {
    match ty {
        KvType::F32 => (store_v_f32, "vstore_f32"),
        KvType::F16 => (store_v_f16, "vstore_f16"),
        KvType::Q8_0 => (store_v_q8_0, "vstore_q8_0"),
    }
}

/// Start of position `pos`'s tile in head `g`'s K region, and its lane.
fn k_tile(geom: &KvGeom, g: usize, pos: usize) -> (usize, usize) {
    (
        g * geom.k_head_bytes() + pos / KV_TILE * geom.k_tile_bytes(),
        pos % KV_TILE,
    )
}

unsafe fn store_k_f32(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize) {
    let (at, lane) = k_tile(geom, g, pos);
    // SAFETY: the caller's contract: the tile lies in the cache, head_dim·8 f32 from `at`.
    let tile = unsafe { cache.add(at) as *mut f32 };
    for (d, &v) in x.iter().enumerate() {
        // SAFETY: d·8 + lane < head_dim·8.
        unsafe { tile.add(d * KV_TILE + lane).write_unaligned(v) };
    }
}

unsafe fn store_k_f16(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize) {
    let (at, lane) = k_tile(geom, g, pos);
    // SAFETY: the caller's contract: the tile lies in the cache, head_dim·8 f16 from `at`.
    let tile = unsafe { cache.add(at) as *mut u16 };
    for (d, &v) in x.iter().enumerate() {
        // SAFETY: d·8 + lane < head_dim·8.
        unsafe {
            tile.add(d * KV_TILE + lane)
                .write_unaligned(f16::from_f32(v).to_bits())
        };
    }
}

/// Bytes of one 32-dim run of a Q8_0 K tile: 8 f16 scales, then 32 × 8 codes.
const K_Q8_RUN: usize = 2 * KV_TILE + QK * KV_TILE;

unsafe fn store_k_q8_0(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize) {
    let (at, lane) = k_tile(geom, g, pos);
    for (c, run) in x.chunks_exact(QK).enumerate() {
        let b = quantize_q8_0(run);
        // SAFETY: the caller's contract: run c of the tile lies in the cache (head_dim is a
        // multiple of 32: KvGeom::unsupported, checked by the planner).
        unsafe {
            let base = cache.add(at + c * K_Q8_RUN);
            (base as *mut u16).add(lane).write_unaligned(b.d.to_bits());
            let codes = base.add(2 * KV_TILE) as *mut i8;
            for (d, &q) in b.qs.iter().enumerate() {
                codes.add(d * KV_TILE + lane).write(q);
            }
        }
    }
}

unsafe fn store_v_f32(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize) {
    // SAFETY: the caller's contract: the row lies in head g's V region.
    unsafe {
        let row = cache.add(g * geom.v_head_bytes() + pos * geom.v_row_bytes());
        std::ptr::copy_nonoverlapping(x.as_ptr() as *const u8, row, 4 * x.len());
    }
}

unsafe fn store_v_f16(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize) {
    // SAFETY: the caller's contract: the row lies in head g's V region.
    let row = unsafe { cache.add(g * geom.v_head_bytes() + pos * geom.v_row_bytes()) as *mut u16 };
    for (d, &v) in x.iter().enumerate() {
        // SAFETY: d < head_dim values of the row.
        unsafe { row.add(d).write_unaligned(f16::from_f32(v).to_bits()) };
    }
}

unsafe fn store_v_q8_0(x: &[f32], cache: *mut u8, geom: &KvGeom, g: usize, pos: usize) {
    // SAFETY: the caller's contract: the row lies in head g's V region.
    let row = unsafe { cache.add(g * geom.v_head_bytes() + pos * geom.v_row_bytes()) };
    for (c, run) in x.chunks_exact(QK).enumerate() {
        let b = quantize_q8_0(run);
        // SAFETY: block c of head_dim / 32 in the row; BlockQ8_0 is 34 bytes, align 2 at
        // most, written unaligned.
        unsafe { (row.add(34 * c) as *mut crate::quant::BlockQ8_0).write_unaligned(b) };
    }
}

/// Reads head `g`'s K values of position `pos` back as f32 (the reference kernels and the
/// tests).
///
/// # Safety
/// As `KvStoreFn`, with `out` in place of `x`.
pub unsafe fn load_k(cache: *const u8, geom: &KvGeom, g: usize, pos: usize, out: &mut [f32]) {
    let (at, lane) = k_tile(geom, g, pos);
    // SAFETY (every read): the caller's contract; each index lies in the tile.
    unsafe {
        let tile = cache.add(at);
        match geom.k {
            KvType::F32 => {
                for (d, o) in out.iter_mut().enumerate() {
                    *o = (tile as *const f32)
                        .add(d * KV_TILE + lane)
                        .read_unaligned();
                }
            }
            KvType::F16 => {
                for (d, o) in out.iter_mut().enumerate() {
                    let bits = (tile as *const u16)
                        .add(d * KV_TILE + lane)
                        .read_unaligned();
                    *o = f16::from_bits(bits).to_f32();
                }
            }
            KvType::Q8_0 => {
                for (c, run) in out.chunks_exact_mut(QK).enumerate() {
                    let base = tile.add(c * K_Q8_RUN);
                    let d =
                        f16::from_bits((base as *const u16).add(lane).read_unaligned()).to_f32();
                    let codes = base.add(2 * KV_TILE) as *const i8;
                    for (i, o) in run.iter_mut().enumerate() {
                        *o = codes.add(i * KV_TILE + lane).read() as f32 * d;
                    }
                }
            }
        }
    }
}

/// Reads head `g`'s V values of position `pos` back as f32.
///
/// # Safety
/// As `load_k`, for a V cache.
pub unsafe fn load_v(cache: *const u8, geom: &KvGeom, g: usize, pos: usize, out: &mut [f32]) {
    // SAFETY (every read): the caller's contract; the row lies in head g's V region.
    unsafe {
        let row = cache.add(g * geom.v_head_bytes() + pos * geom.v_row_bytes());
        match geom.v {
            KvType::F32 => {
                for (d, o) in out.iter_mut().enumerate() {
                    *o = (row as *const f32).add(d).read_unaligned();
                }
            }
            KvType::F16 => {
                for (d, o) in out.iter_mut().enumerate() {
                    *o = f16::from_bits((row as *const u16).add(d).read_unaligned()).to_f32();
                }
            }
            KvType::Q8_0 => {
                for (c, run) in out.chunks_exact_mut(QK).enumerate() {
                    let b = (row.add(34 * c) as *const crate::quant::BlockQ8_0).read_unaligned();
                    let d = b.d.to_f32();
                    for (o, &q) in run.iter_mut().zip(&b.qs) {
                        *o = q as f32 * d;
                    }
                }
            }
        }
    }
}

/// Byte offset of run `c` (32 dims) of a Q8_0 K tile; its scales come first, then codes.
pub const fn k_q8_run(c: usize) -> usize {
    c * K_Q8_RUN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::KvTypes;

    #[test]
    fn every_type_reads_back_what_was_stored() {
        let (heads, hd, ctx) = (3, 64, 21);
        for k in KvType::ALL {
            for v in KvType::ALL {
                let geom = KvGeom::new(KvTypes { k, v }, heads, hd, ctx);
                assert_eq!(geom.rows, 24);
                let mut kc = vec![0u8; geom.k_bytes()];
                let mut vc = vec![0u8; geom.v_bytes()];
                // Computed once: under Miri two calls of sin() may differ in the last bit.
                let rows: Vec<Vec<f32>> = (0..heads * ctx)
                    .map(|i| (0..hd).map(|d| ((i * 3 + d) as f32 * 0.37).sin()).collect())
                    .collect();
                let row = |g: usize, p: usize| rows[g * ctx + p].clone();
                for g in 0..heads {
                    for p in 0..ctx {
                        // SAFETY: g < heads, p < rows, hd values; the buffers are whole.
                        unsafe {
                            store_k(k).0(&row(g, p), kc.as_mut_ptr(), &geom, g, p);
                            store_v(v).0(&row(g, p), vc.as_mut_ptr(), &geom, g, p);
                        }
                    }
                }
                let tol = |t: KvType| match t {
                    KvType::F32 => 0.0,
                    KvType::F16 => 1e-3,
                    KvType::Q8_0 => 1.0 / 127.0,
                };
                let mut out = vec![0f32; hd];
                for g in 0..heads {
                    for p in 0..ctx {
                        let want = row(g, p);
                        // SAFETY: as above.
                        unsafe { load_k(kc.as_ptr(), &geom, g, p, &mut out) };
                        for (a, b) in out.iter().zip(&want) {
                            assert!((a - b).abs() <= tol(k), "K {k} g{g} p{p}: {a} vs {b}");
                        }
                        // SAFETY: as above.
                        unsafe { load_v(vc.as_ptr(), &geom, g, p, &mut out) };
                        for (a, b) in out.iter().zip(&want) {
                            assert!((a - b).abs() <= tol(v), "V {v} g{g} p{p}: {a} vs {b}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_follow_the_types() {
        let geom = KvGeom::new(
            KvTypes {
                k: KvType::Q8_0,
                v: KvType::F16,
            },
            3,
            64,
            2048,
        );
        assert_eq!(geom.k_bytes(), 3 * 2048 * 64 / 32 * 34);
        assert_eq!(geom.v_bytes(), 3 * 2048 * 64 * 2);
        assert!(geom.unsupported().is_none());
        let odd = KvGeom::new(
            KvTypes {
                k: KvType::Q8_0,
                v: KvType::F16,
            },
            2,
            16,
            64,
        );
        assert!(odd.unsupported().unwrap().contains("multiple of 32"));
    }
}
