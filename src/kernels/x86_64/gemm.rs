//! Matrix × matrix products for batched prefill: a 4-bit weight matrix times `n_tok`
//! activation rows quantized to 8-bit blocks. Each weight block is read from the model once
//! per call (per 128 tokens) and reused for every token.
//!
//! The layout trick: eight weight rows are unpacked, a chunk of blocks at a time, into an
//! L1-resident panel where one 256-bit register holds four consecutive 4-bit codes (as
//! bytes) of each of the eight rows, one row per 32-bit lane. From a file's row layout that
//! takes a transpose per block; from the planner's row panels (`kernels/panel.rs`) only a
//! mask and a shift, and the decode gemv over panels (`panel.rs`) unpacks tiles the same way
//! and calls the same `block_dot`, so both compute a row bitwise alike. A token's four matching
//! activation bytes are broadcast to every lane, so one `maddubs` + `madd` gives each lane
//! (each row) its partial integer dot product: no horizontal sums, and the per-block scale
//! of all eight rows is one vector. Per block and token: 8 `maddubs`, 7 `add`, 1 `madd`,
//! 1 convert and 3 multiply-adds for 8 × 32 multiply-adds.
//!
//! Every row lane and every token runs the same instructions in the same order whatever the
//! panel, the token group or the thread that computes it, so results do not depend on how a
//! plan splits rows between workers.

use std::arch::x86_64::*;

use super::dot::{bias_sums, dot, signed2_biased_dot, Acc, Dot};
use crate::kernels::scalar::act::BlockQ8Act;
use crate::quant::QK;

/// Rows per panel: one per 32-bit lane.
const PANEL: usize = 8;
/// Blocks packed at once: 64 × 384 bytes = 24 KiB, inside L1 with the activations.
const KCHUNK: usize = 64;
/// Tokens whose accumulators one pass over a panel chunk keeps in registers.
const TOK_GROUP: usize = 4;
/// Tokens per pass over a panel (the accumulator buffer on the stack: 4 KiB).
const TOK_BLOCK: usize = 128;
/// (token, block) bias sums of the biased-code products on the stack (64 KiB): a pass takes
/// fewer tokens on rows of more than `BIASED_SUMS / TOK_BLOCK` blocks, and rows of more than
/// `BIASED_SUMS` blocks run the sign trick, which gives the same bits.
const BIASED_SUMS: usize = 8192;

/// One block of eight rows, unpacked: `q[j]` (j < 4) holds codes 4j..4j+4 of every row,
/// `q[4 + j]` codes 16+4j..16+4j+4; `d` and `m` the rows' float scales and offsets (each
/// format's `Dot` says how they apply). The formats whose 16-weight halves have their own
/// integer scales (Q2_K, Q3_K) keep them in `sc`, and Q2_K its integer offsets in `mn`:
/// each row's lane holds the pair for weights 0..16 and 16..32 as two i16, for a `madd`.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub(super) struct Packed {
    pub(super) q: [__m256i; 8],
    pub(super) d: __m256,
    pub(super) m: __m256,
    pub(super) sc: __m256i,
    pub(super) mn: __m256i,
}

impl Packed {
    /// Every lane zero.
    // SAFETY: all-zero bits are a valid value of every vector type.
    pub(super) const ZERO: Packed = unsafe { std::mem::zeroed() };
}

/// The formats this kernel multiplies: 32 4-bit codes per block, `x = q·d + m`.
pub(super) trait Q4Block {
    /// Block size in bytes, and where its 16 code bytes start.
    const BYTES: usize;
    const QS: usize;
    /// Whether blocks store an offset `m` (else it is `-8·d`).
    const HAS_M: bool;
    /// Bytes of a panel tile's scale header (`kernels/panel.rs`): d[8], and m[8] if any.
    const TILE_HEAD: usize = if Self::HAS_M { 32 } else { 16 };
    /// The block's f16 `d` in the low 16 bits, and its f16 `m` in the high 16 (or 0).
    ///
    /// # Safety
    /// `p` points to a whole block.
    unsafe fn scale_word(p: *const u8) -> i32;
}

pub(super) struct Q4_1;
impl Q4Block for Q4_1 {
    const BYTES: usize = 20;
    const QS: usize = 4;
    const HAS_M: bool = true;
    unsafe fn scale_word(p: *const u8) -> i32 {
        // SAFETY: a Q4_1 block starts with its f16 d then m (read unaligned, little-endian).
        unsafe { (p as *const i32).read_unaligned() }
    }
}

/// Q4_0 is Q4_1 with `m = -8·d`.
pub(super) struct Q4_0;
impl Q4Block for Q4_0 {
    const BYTES: usize = 18;
    const QS: usize = 2;
    const HAS_M: bool = false;
    unsafe fn scale_word(p: *const u8) -> i32 {
        // SAFETY: a Q4_0 block starts with its f16 d.
        unsafe { (p as *const u16).read_unaligned() as i32 }
    }
}

/// Repacks blocks `b0..b0 + out.len()` of the eight rows at `rows` into `out`.
///
/// # Safety
/// Each `rows[i]` points to a row of at least `b0 + out.len()` blocks of `B`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack<B: Q4Block>(rows: &[*const u8; PANEL], b0: usize, out: &mut [Packed]) {
    let low = _mm256_set1_epi8(0x0f);
    for (i, p) in out.iter_mut().enumerate() {
        let at = (b0 + i) * B::BYTES;
        // SAFETY: block b0 + i of each row is in bounds (caller).
        let q: [__m128i; PANEL] = std::array::from_fn(|r| unsafe {
            _mm_loadu_si128(rows[r].add(at + B::QS) as *const __m128i)
        });
        // A 4 × 4 transpose of 32-bit words in each 128-bit half: rows 0–3 low, 4–7 high.
        let a = _mm256_set_m128i(q[4], q[0]);
        let b = _mm256_set_m128i(q[5], q[1]);
        let c = _mm256_set_m128i(q[6], q[2]);
        let d = _mm256_set_m128i(q[7], q[3]);
        let ab_lo = _mm256_unpacklo_epi32(a, b);
        let ab_hi = _mm256_unpackhi_epi32(a, b);
        let cd_lo = _mm256_unpacklo_epi32(c, d);
        let cd_hi = _mm256_unpackhi_epi32(c, d);
        let t = [
            _mm256_unpacklo_epi64(ab_lo, cd_lo),
            _mm256_unpackhi_epi64(ab_lo, cd_lo),
            _mm256_unpacklo_epi64(ab_hi, cd_hi),
            _mm256_unpackhi_epi64(ab_hi, cd_hi),
        ];
        for (j, tj) in t.iter().enumerate() {
            p.q[j] = _mm256_and_si256(*tj, low);
            p.q[4 + j] = _mm256_and_si256(_mm256_srli_epi16::<4>(*tj), low);
        }
        // SAFETY: as above.
        let (d, m) = unsafe { scales8::<B>(rows, at) };
        p.d = d;
        p.m = m;
    }
}

/// Unpacks one panel tile (`kernels/panel.rs`): the same `Packed` that `pack` makes from
/// the eight rows' blocks.
///
/// # Safety
/// `t` points to a whole tile of `B`'s panel layout.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpack_tile<B: Q4Block>(t: *const u8) -> Packed {
    let low = _mm256_set1_epi8(0x0f);
    // SAFETY: the tile holds the scale header then four 32-byte code chunks (caller).
    unsafe {
        let d = _mm256_cvtph_ps(_mm_loadu_si128(t as *const __m128i));
        let m = if B::HAS_M {
            _mm256_cvtph_ps(_mm_loadu_si128(t.add(16) as *const __m128i))
        } else {
            _mm256_mul_ps(d, _mm256_set1_ps(-8.0))
        };
        let c = t.add(B::TILE_HEAD) as *const __m256i;
        let raw: [__m256i; 4] = std::array::from_fn(|j| _mm256_loadu_si256(c.add(j)));
        let q = std::array::from_fn(|j| {
            if j < 4 {
                _mm256_and_si256(raw[j], low)
            } else {
                _mm256_and_si256(_mm256_srli_epi16::<4>(raw[j - 4]), low)
            }
        });
        Packed {
            q,
            d,
            m,
            ..Packed::ZERO
        }
    }
}

/// The scales and offsets of block `at` (a byte offset) of eight rows, as f32 lanes
/// (Q4_0's offset is `-8·d`). The gemv computes them the same way (`gemv.rs`).
///
/// # Safety
/// Each `rows[i] + at` is a whole block of `B`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scales8<B: Q4Block>(rows: &[*const u8; PANEL], at: usize) -> (__m256, __m256) {
    // SAFETY: forwarded from the caller: each block starts with its f16 d (and m).
    let word = |r: usize| unsafe { B::scale_word(rows[r].add(at)) };
    let v = _mm256_setr_epi32(
        word(0),
        word(1),
        word(2),
        word(3),
        word(4),
        word(5),
        word(6),
        word(7),
    );
    // d in the low 16 bits of each word, m in the high: pack them apart, then order lanes.
    let lo = _mm256_and_si256(v, _mm256_set1_epi32(0xffff));
    let hi = _mm256_srli_epi32::<16>(v);
    let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(lo, hi));
    let d = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
    let m = if B::HAS_M {
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(packed))
    } else {
        _mm256_mul_ps(d, _mm256_set1_ps(-8.0))
    };
    (d, m)
}

/// A format in row panels (`kernels/panel.rs`) that the decode gemv (`panel.rs`) and the
/// prefill gemm read one 32-weight activation block at a time: both unpack a block of a
/// tile with `unpack` and multiply it with `dot`, so a row computes bitwise alike in both.
pub(super) trait PanelFormat {
    /// Activation blocks per tile: 1, or 8 for the 256-element formats.
    const BLOCKS: usize;
    /// Bytes per tile (eight rows' blocks).
    const TILE: usize;
    /// What a tile's blocks share, decoded once per tile (the K formats' sub-block scales).
    type Head;
    /// Decodes the head of the tile at `t`.
    ///
    /// # Safety
    /// As `unpack`.
    unsafe fn head(t: *const u8) -> Self::Head;
    /// Unpacks activation block `sub` (< `BLOCKS`) of the tile at `t`, whose head is `head`.
    ///
    /// # Safety
    /// `t` points to a whole tile of the format's panel layout; the CPU has AVX2, FMA, F16C.
    unsafe fn unpack(t: *const u8, head: &Self::Head, sub: usize) -> Packed;
    /// `unpack` leaves block `sub`'s codes times `2^code_shift(sub)` (Q3_K's GFNI unpacking,
    /// which saves an instruction per chunk that way): the VNNI product divides its exact
    /// integer sums back before the scales. The AVX2 products take unshifted codes only.
    #[inline]
    fn code_shift(sub: usize) -> u32 {
        let _ = sub;
        0
    }
    /// How its codes multiply an activation block (`dot::dot`).
    const DOT: super::dot::Dot;
    /// For the signed-code formats (`Dot::Signed`, `Dot::Signed2`), what `unpack_biased`
    /// adds to every code: the AVX-512 VNNI kernels (`vnni.rs`) multiply the codes as
    /// unsigned bytes and subtract `BIAS·Σx`.
    const BIAS: i32 = 128;
    /// `unpack` with every code plus `BIAS`, as an unsigned byte: by default the signed
    /// codes flipped (`c ^ 0x80`); a format whose stored codes are already biased (Q6_K)
    /// returns them as they are.
    ///
    /// # Safety
    /// As `unpack`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_biased(t: *const u8, head: &Self::Head, sub: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        let mut p = unsafe { Self::unpack(t, head, sub) };
        // Unsigned codes multiply as they are.
        if !matches!(
            Self::DOT,
            super::dot::Dot::Signed | super::dot::Dot::Signed2
        ) {
            return p;
        }
        for q in &mut p.q {
            *q = _mm256_xor_si256(*q, _mm256_set1_epi8(-128));
        }
        p
    }
}

impl<B: Q4Block> PanelFormat for B {
    const BLOCKS: usize = 1;
    const TILE: usize = PANEL * B::BYTES;
    const DOT: super::dot::Dot = super::dot::Dot::Affine4;
    type Head = ();
    unsafe fn head(_t: *const u8) {}
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(t: *const u8, _head: &(), _sub: usize) -> Packed {
        // SAFETY: forwarded from the caller.
        unsafe { unpack_tile::<B>(t) }
    }
}

/// Unpacks blocks `b0..b0 + out.len()` of the panel at `panel` (tile `b / BLOCKS`, block
/// `b % BLOCKS` within it), with biased codes (`PanelFormat::unpack_biased`) if `BIASED`.
///
/// # Safety
/// The panel holds tiles up to block `b0 + out.len()`; the CPU has AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpack_blocks<F: PanelFormat, const BIASED: bool>(
    panel: *const u8,
    b0: usize,
    out: &mut [Packed],
) {
    if F::BLOCKS > 1 && b0.is_multiple_of(F::BLOCKS) && out.len().is_multiple_of(F::BLOCKS) {
        // Whole tiles: each block's unpacking specialised (`unrolled_blocks`).
        for (i, tile) in out.chunks_exact_mut(F::BLOCKS).enumerate() {
            let t = panel.wrapping_add((b0 / F::BLOCKS + i) * F::TILE);
            // SAFETY: the tile is in the panel (caller).
            let head = unsafe { F::head(t) };
            unrolled_blocks!(F::BLOCKS, sub => {
                // SAFETY: as above.
                tile[sub] = unsafe {
                    if BIASED {
                        F::unpack_biased(t, &head, sub)
                    } else {
                        F::unpack(t, &head, sub)
                    }
                };
            });
        }
        return;
    }
    let mut head = None;
    for (i, p) in out.iter_mut().enumerate() {
        let b = b0 + i;
        let t = panel.wrapping_add(b / F::BLOCKS * F::TILE);
        if i == 0 || b.is_multiple_of(F::BLOCKS) {
            // SAFETY: tile b / BLOCKS is in the panel (caller).
            head = Some(unsafe { F::head(t) });
        }
        if let Some(h) = &head {
            // SAFETY: as above; `h` is this tile's head.
            *p = unsafe {
                if BIASED {
                    F::unpack_biased(t, h, b % F::BLOCKS)
                } else {
                    F::unpack(t, h, b % F::BLOCKS)
                }
            };
        }
    }
}

/// The batched product for format `F`, from the file's rows of `B` blocks (`PANELS`
/// false: eight rows are packed by a transpose, `pack`) or from row panels (`PANELS`: `w`
/// is the start of a panel, tiles are unpacked with `F::unpack`).
///
/// A format with small biased codes (Q6_K: `Dot::Signed2`, stored codes 0..64) multiplies
/// them as they are (`dot::signed2_biased_dot`, as the decode gemv does), with `BIAS·Σx` per
/// half block computed once per pass of up to `TOK_BLOCK` tokens: the same integer sums as
/// the sign trick for about a third fewer instructions per block.
///
/// # Safety
/// As `kernels::GemmFn`, for a matrix of the format in the layout `PANELS` says.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gemm_tiles<F: PanelFormat, B: Q4Block, const PANELS: bool>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    if rows == 0 || n_tok == 0 {
        return;
    }
    let nb = xq.len() / n_tok;
    if PANELS && F::DOT == Dot::Signed2 && F::BIAS <= 32 && (1..=BIASED_SUMS).contains(&nb) {
        let mut sums = [[0i32; 2]; BIASED_SUMS];
        let tok_block = (BIASED_SUMS / nb).min(TOK_BLOCK);
        for t0 in (0..n_tok).step_by(tok_block) {
            let nt = (n_tok - t0).min(tok_block);
            let x = &xq[t0 * nb..(t0 + nt) * nb];
            bias_sums(F::BIAS, x, &mut sums[..x.len()]);
            // SAFETY: tokens t0..t0 + nt of the call, whose rows start at out + t0 · ldo.
            unsafe {
                products::<F, B, PANELS, true>(
                    w,
                    row_bytes,
                    rows,
                    x,
                    &sums[..x.len()],
                    nt,
                    out.add(t0 * ldo),
                    ldo,
                )
            };
        }
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { products::<F, B, PANELS, false>(w, row_bytes, rows, xq, &[], n_tok, out, ldo) }
}

/// `gemm_tiles` for `n_tok > 0` tokens, with biased codes and `bias[t · nb + b]` the bias
/// sums of token t's block b when `BIASED`.
///
/// # Safety
/// As `gemm_tiles`; `BIASED` only for a format with small biased codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn products<F: PanelFormat, B: Q4Block, const PANELS: bool, const BIASED: bool>(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    bias: &[[i32; 2]],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    let nb = xq.len() / n_tok;
    let mut panel = [Packed {
        q: [_mm256_setzero_si256(); 8],
        d: _mm256_setzero_ps(),
        m: _mm256_setzero_ps(),
        ..Packed::ZERO
    }; KCHUNK];
    let mut acc = [_mm256_setzero_ps(); TOK_BLOCK];
    for r0 in (0..rows).step_by(PANEL) {
        let live = (rows - r0).min(PANEL);
        // Lanes past the last row repeat it (rows) or are zero blocks (panels): their results
        // are computed and never stored. With panels, ptrs[0] is the panel.
        // SAFETY: rows r0..r0 + live are rows of the matrix (caller).
        let ptrs: [*const u8; PANEL] = std::array::from_fn(|i| unsafe {
            w.add((r0 + if PANELS { 0 } else { i.min(live - 1) }) * row_bytes)
        });
        // The next panel's rows stream in while this one is multiplied.
        super::gemv::prefetch(w.wrapping_add((r0 + PANEL) * row_bytes), PANEL * row_bytes);
        for t0 in (0..n_tok).step_by(TOK_BLOCK) {
            let nt = (n_tok - t0).min(TOK_BLOCK);
            acc[..nt].fill(_mm256_setzero_ps());
            for b0 in (0..nb).step_by(KCHUNK) {
                let nk = (nb - b0).min(KCHUNK);
                if PANELS {
                    // Panel r0 / 8 starts at r0 · row_bytes.
                    // SAFETY: blocks b0..b0 + nk < nb of the panel at row r0 (caller).
                    unsafe { unpack_blocks::<F, BIASED>(ptrs[0], b0, &mut panel[..nk]) };
                } else {
                    // SAFETY: every row has nb blocks (caller), b0 + nk ≤ nb.
                    unsafe { pack::<B>(&ptrs, b0, &mut panel[..nk]) };
                }
                let mut g = 0;
                while g + TOK_GROUP <= nt {
                    let x: [&[BlockQ8Act]; TOK_GROUP] =
                        std::array::from_fn(|i| &xq[(t0 + g + i) * nb + b0..][..nk]);
                    let s = BIASED
                        .then(|| std::array::from_fn(|i| &bias[(t0 + g + i) * nb + b0..][..nk]));
                    let sums = (&mut acc[g..g + TOK_GROUP])
                        .try_into()
                        .expect("TOK_GROUP sums");
                    add_products::<F, TOK_GROUP>(&panel[..nk], x, s, sums);
                    g += TOK_GROUP;
                }
                for t in g..nt {
                    let x = &xq[(t0 + t) * nb + b0..][..nk];
                    let s = BIASED.then(|| [&bias[(t0 + t) * nb + b0..][..nk]]);
                    let sums = (&mut acc[t..t + 1]).try_into().expect("one sum");
                    add_products::<F, 1>(&panel[..nk], [x], s, sums);
                }
            }
            for (t, a) in acc[..nt].iter().enumerate() {
                // SAFETY: out holds rows r0..r0 + live of token t0 + t (caller: ldo ≥ rows).
                let dst = unsafe { out.add((t0 + t) * ldo + r0) };
                if live == PANEL {
                    // SAFETY: 8 floats at dst, as above.
                    unsafe { _mm256_storeu_ps(dst, *a) };
                } else {
                    let mut lanes = [0f32; PANEL];
                    // SAFETY: lanes is 8 floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *a) };
                    // SAFETY: `live` floats at dst, as above.
                    unsafe { std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, live) };
                }
            }
        }
    }
}

/// Q4_1 weights × 8-bit activations, for `n_tok` tokens at once.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; otherwise as `kernels::GemmFn`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_1_avx2(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_tiles::<Q4_1, Q4_1, false>(w, row_bytes, rows, xq, n_tok, out, ldo) }
}

/// `sums[i]` plus token i's products with the unpacked blocks `panel` (whole tiles of `F`).
/// Q2_K's and Q3_K's open sums (`dot::Acc`) live for one tile and join `sums` at its end, so
/// only they hold registers across the tile; the other formats add to `sums` block by block.
/// With `bias` (token i's bias sums per block), the blocks' codes are biased (Q6_K).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_products<F: PanelFormat, const N: usize>(
    panel: &[Packed],
    x: [&[BlockQ8Act]; N],
    bias: Option<[&[[i32; 2]]; N]>,
    sums: &mut [__m256; N],
) {
    // Each token's blocks as many as the panel's: the indexing below needs no checks.
    let x = x.map(|x| &x[..panel.len()]);
    if let Some(s) = bias {
        let s = s.map(|s| &s[..panel.len()]);
        for (b, p) in panel.iter().enumerate() {
            for i in 0..N {
                sums[i] = signed2_biased_dot(p, &x[i][b], s[i][b], sums[i]);
            }
        }
        return;
    }
    if !F::DOT.tiled() {
        let mut a: [Acc; N] = std::array::from_fn(|i| Acc::open::<F>(sums[i]));
        for (b, p) in panel.iter().enumerate() {
            for i in 0..N {
                a[i] = dot::<F>(p, &x[i][b], a[i]);
            }
        }
        for i in 0..N {
            sums[i] = a[i].sum;
        }
        return;
    }
    let tile = F::BLOCKS;
    for (k, blocks) in panel.chunks(tile).enumerate() {
        let mut a: [Acc; N] = std::array::from_fn(|i| Acc::open::<F>(sums[i]));
        for (b, p) in blocks.iter().enumerate() {
            for i in 0..N {
                a[i] = dot::<F>(p, &x[i][k * tile + b], a[i]);
            }
        }
        let (last, b_last) = (&blocks[blocks.len() - 1], k * tile + blocks.len() - 1);
        for i in 0..N {
            sums[i] = a[i].close::<F>(last, &x[i][b_last], sums[i]);
        }
    }
}

/// Q4_0 weights × 8-bit activations, for `n_tok` tokens at once.
///
/// # Safety
/// As `gemm_q4_1_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_0_avx2(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_tiles::<Q4_0, Q4_0, false>(w, row_bytes, rows, xq, n_tok, out, ldo) }
}

/// Q4_1 weights in row panels × 8-bit activations, for `n_tok` tokens at once.
///
/// # Safety
/// As `gemm_q4_1_avx2`, with `w` the start of a panel of `kernels/panel.rs`'s layout.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_1x8_avx2(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_tiles::<Q4_1, Q4_1, true>(w, row_bytes, rows, xq, n_tok, out, ldo) }
}

/// Q4_0 weights in row panels × 8-bit activations, for `n_tok` tokens at once.
///
/// # Safety
/// As `gemm_q4_1x8_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_0x8_avx2(
    w: *const u8,
    row_bytes: usize,
    rows: usize,
    xq: &[BlockQ8Act],
    n_tok: usize,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_tiles::<Q4_0, Q4_0, true>(w, row_bytes, rows, xq, n_tok, out, ldo) }
}

const _: () = assert!(QK == 32 && std::mem::size_of::<Packed>() == 384);
const _: () = assert!(Q4_1::TILE_HEAD + 128 == PANEL * Q4_1::BYTES);
const _: () = assert!(Q4_0::TILE_HEAD + 128 == PANEL * Q4_0::BYTES);
