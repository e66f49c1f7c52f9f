//! Recoded code bytes: the formats whose file layout spreads one code over several arrays
//! (a few bits here, the rest there) have their tile's code bytes rewritten by the repack
//! (`panel::repack`) so that most codes come whole out of one byte, and decoded back for a
//! row read from the panels (`panel::gather_block`). A recode keeps a tile's length: the
//! same bits, in other places. The kernels that read a recoded tile (`x86_64/kbits.rs` for
//! Q3_K, `x86_64/kpanel.rs` for Q5_0, Q5_1, Q5_K and Q6_K) name the function that wrote it.

use crate::quant::GgmlType;

/// A format's recoding: where in its tile the rewritten bytes start, the rewrite, and its
/// inverse (each over the tile's bytes from that offset).
type Codec = (usize, fn(&mut [u8]), fn(&mut [u8]));

/// The recoding of `dtype`'s tiles, if it has one.
fn codec(dtype: GgmlType) -> Option<Codec> {
    Some(match dtype {
        GgmlType::Q3K => (Q3_CODES, q3_recode, q3_decode),
        GgmlType::Q6K => (Q6_CODES, q6_recode, q6_decode),
        GgmlType::Q5K => (Q5K_CODES, q5k_recode, q5k_decode),
        GgmlType::Q5_0 => (Q5_0_QH, q5_spread_qh, q5_gather_qh),
        GgmlType::Q5_1 => (Q5_1_QH, q5_spread_qh, q5_gather_qh),
        _ => return None,
    })
}

/// Rewrites the code bytes of one tile of `dtype` (as `panel::repack` laid it out), where
/// the format has a recoding.
pub(super) fn recode(dtype: GgmlType, tile: &mut [u8]) {
    if let Some((at, rewrite, _)) = codec(dtype) {
        rewrite(&mut tile[at..]);
    }
}

/// The inverse of `recode`: the tile's code bytes as the file's blocks hold them.
pub(super) fn decode(dtype: GgmlType, tile: &mut [u8]) {
    if let Some((at, _, inverse)) = codec(dtype) {
        inverse(&mut tile[at..]);
    }
}

/// Where a Q3_K tile's codes start: after `d` (16 bytes) and the scale runs (96).
pub const Q3_CODES: usize = 112;
/// Bytes of one of a Q3_K tile's code planes (8 chunks).
pub const Q3_PLANE: usize = 256;

/// Recodes a Q3_K tile's code bytes (16 chunks of `qs`, then 8 of `hmask`) into three planes
/// A, B, C of 8 chunks, in place. Byte i of the file's arrays holds, for each activation
/// block b = 4h + j of the tile, two bits of code b in qs chunk 8h + i / 32 (bits 2j, 2j + 1)
/// and its high bit in hmask (bit b): three loads, shifts and masks per code. Byte i of the
/// planes holds the same eight three-bit codes whole:
///
/// ```text
/// A = c0 | c1 << 3 | (c6 & 3) << 6      B = c2 | c3 << 3 | (c7 & 3) << 6
/// C = c4 | c5 << 3 | (c6 >> 2) << 6 | (c7 >> 2) << 7
/// ```
///
/// so codes 0–5 take one mask (and for 1, 3, 5 a shift, or a code scaled by 8 where the
/// product can take it) and codes 6 and 7 two sources: about half the unpacking.
fn q3_recode(codes: &mut [u8]) {
    let (qs, hm) = codes.split_at_mut(2 * Q3_PLANE);
    let (q0, q1) = qs.split_at_mut(Q3_PLANE);
    for ((a, b), c) in q0.iter_mut().zip(q1.iter_mut()).zip(hm.iter_mut()) {
        let code = |k: usize| {
            let low = if k < 4 { *a } else { *b } >> (2 * (k % 4)) & 3;
            low | (*c >> k & 1) << 2
        };
        let k: [u8; 8] = std::array::from_fn(code);
        (*a, *b, *c) = (
            k[0] | k[1] << 3 | (k[6] & 3) << 6,
            k[2] | k[3] << 3 | (k[7] & 3) << 6,
            k[4] | k[5] << 3 | (k[6] >> 2) << 6 | (k[7] >> 2) << 7,
        );
    }
}

/// The inverse of `q3_recode`: the file's `qs` and `hmask` bytes back from the planes.
fn q3_decode(codes: &mut [u8]) {
    let (ab, cs) = codes.split_at_mut(2 * Q3_PLANE);
    let (a_s, b_s) = ab.split_at_mut(Q3_PLANE);
    for ((a, b), c) in a_s.iter_mut().zip(b_s.iter_mut()).zip(cs.iter_mut()) {
        let k = [
            *a & 7,
            *a >> 3 & 7,
            *b & 7,
            *b >> 3 & 7,
            *c & 7,
            *c >> 3 & 7,
            *a >> 6 | (*c >> 6 & 1) << 2,
            *b >> 6 | (*c >> 7) << 2,
        ];
        let low = |h: usize| (0..4).fold(0u8, |v, j| v | (k[4 * h + j] & 3) << (2 * j));
        let high = (0..8).fold(0u8, |v, i| v | (k[i] >> 2) << i);
        (*a, *b, *c) = (low(0), low(1), high);
    }
}

/// Where a Q6_K tile's codes start: after `d` (16 bytes) and the scale runs (128).
pub const Q6_CODES: usize = 144;
/// Bytes of one of a Q6_K tile's code planes (8 chunks).
pub const Q6_PLANE: usize = 256;

/// The four six-bit codes at one byte position of a Q6_K half tile, from its `ql` bytes of
/// quarters 0/2 and 1/3 and its `qh` byte (the file's packing).
fn q6_codes(ql0: u8, ql1: u8, qh: u8) -> [u8; 4] {
    [
        ql0 & 15 | (qh & 3) << 4,
        ql1 & 15 | (qh >> 2 & 3) << 4,
        ql0 >> 4 | (qh >> 4 & 3) << 4,
        ql1 >> 4 | (qh >> 6) << 4,
    ]
}

/// Recodes a Q6_K tile's code bytes (32 chunks of `ql`, then 16 of `qh`) into two halves of
/// three planes A, B, C of 8 chunks each, in place. In the file, code c of quarter q of a
/// half tile (activation block 4·half + q) takes its low four bits from a nibble of one of
/// two `ql` chunks and its high two from bits 2q of a `qh` chunk: two loads, two shifts,
/// two masks and an OR. Byte i of the planes holds the half's four codes at position i:
///
/// ```text
/// A = c0 | (c3 & 3) << 6     B = c1 | (c3 >> 2 & 3) << 6     C = c2 | (c3 >> 4) << 6
/// ```
///
/// so codes 0–2 take one mask, and code 3 a shift and a mask per plane and two ORs (with
/// GFNI, three affine transforms and one `vpternlog`).
fn q6_recode(codes: &mut [u8]) {
    let mut file = [0u8; 6 * Q6_PLANE];
    file.copy_from_slice(&codes[..6 * Q6_PLANE]);
    for half in 0..2 {
        let (ql, qh) = (
            &file[2 * Q6_PLANE * half..],
            &file[4 * Q6_PLANE + Q6_PLANE * half..],
        );
        let planes = &mut codes[3 * Q6_PLANE * half..][..3 * Q6_PLANE];
        for o in 0..Q6_PLANE {
            let c = q6_codes(ql[o], ql[Q6_PLANE + o], qh[o]);
            planes[o] = c[0] | (c[3] & 3) << 6;
            planes[Q6_PLANE + o] = c[1] | (c[3] >> 2 & 3) << 6;
            planes[2 * Q6_PLANE + o] = c[2] | (c[3] >> 4) << 6;
        }
    }
}

/// The four codes held by one byte position of a Q6_K half tile's planes A, B, C.
fn q6_plane_codes(a: u8, b: u8, c: u8) -> [u8; 4] {
    [
        a & 63,
        b & 63,
        c & 63,
        a >> 6 | (b >> 6) << 2 | (c >> 6) << 4,
    ]
}

/// The inverse of `q6_recode`: the file's `ql` and `qh` bytes back from the planes.
fn q6_decode(codes: &mut [u8]) {
    let mut planes = [0u8; 6 * Q6_PLANE];
    planes.copy_from_slice(&codes[..6 * Q6_PLANE]);
    for half in 0..2 {
        let p = &planes[3 * Q6_PLANE * half..];
        for o in 0..Q6_PLANE {
            let k = q6_plane_codes(p[o], p[Q6_PLANE + o], p[2 * Q6_PLANE + o]);
            codes[2 * Q6_PLANE * half + o] = k[0] & 15 | (k[2] & 15) << 4;
            codes[2 * Q6_PLANE * half + Q6_PLANE + o] = k[1] & 15 | (k[3] & 15) << 4;
            codes[4 * Q6_PLANE + Q6_PLANE * half + o] =
                k[0] >> 4 | (k[1] >> 4) << 2 | (k[2] >> 4) << 4 | (k[3] >> 4) << 6;
        }
    }
}

/// Where a Q5_0 tile's fifth bits start (after `d`), and a Q5_1 tile's (after `d`, `m`).
pub const Q5_0_QH: usize = 16;
pub const Q5_1_QH: usize = 32;

/// Where bit `e` of a Q5_0/Q5_1 block's `qh` (the fifth bit of element e) goes in the
/// recoded word: byte k = e % 4 holds the fifth bits of the four elements each code
/// register gives that byte (`x86_64/kpanel.rs`: register j holds elements 4j + k, register
/// 4 + j elements 16 + 4j + k), at bit j and bit 4 + j. So register j's fifth bits reach
/// bit 4 of their bytes with one 32-bit shift (left by 4 − j, or right by j) and one mask,
/// where the file's order took a byte shuffle, two masks and a compare.
fn q5_spread(e: u32) -> u32 {
    let (k, j, high) = (e % 4, e % 16 / 4, e / 16);
    8 * k + j + 4 * high
}

/// The inverse of `q5_spread`.
fn q5_gather(b: u32) -> u32 {
    let (k, j, high) = (b / 8, b % 4, b % 8 / 4);
    4 * j + k + 16 * high
}

/// `q5_recode` of a Q5_0/Q5_1 tile's `qh` run (32 bytes from `qh`) into `q5_spread`'s order.
fn q5_spread_qh(qh: &mut [u8]) {
    q5_recode(&mut qh[..32], q5_spread);
}

/// The inverse of `q5_spread_qh`.
fn q5_gather_qh(qh: &mut [u8]) {
    q5_recode(&mut qh[..32], q5_gather);
}

/// Moves bit e of each row's `qh` word (eight little-endian u32, a tile's `qh` run) to bit
/// `to(e)`.
fn q5_recode(qh: &mut [u8], to: fn(u32) -> u32) {
    for word in qh.chunks_exact_mut(4) {
        let v = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let moved = (0..32).fold(0u32, |m, e| m | (v >> e & 1) << to(e));
        word.copy_from_slice(&moved.to_le_bytes());
    }
}

/// Where a Q5_K tile's code bytes start: after `d`, `dmin` (32 bytes) and the scale runs
/// (96): 8 chunks of `qh`, then 32 of nibbles.
pub const Q5K_CODES: usize = 128;
/// Bytes of one of a Q5_K tile's code planes (8 chunks).
pub const Q5K_PLANE: usize = 256;

/// The eight five-bit codes (sub-blocks 0..8) at byte position `o` of a Q5_K tile's code
/// bytes as the file packs them: sub-block s's low four bits in a nibble of chunk
/// 8·(s / 2) + o / 32, its fifth in bit s of `qh` chunk o / 32.
fn q5k_codes(codes: &[u8], o: usize) -> [u8; 8] {
    let qh = codes[o];
    std::array::from_fn(|s| {
        let nib = codes[Q5K_PLANE * (1 + s / 2) + o] >> (4 * (s % 2)) & 15;
        nib | (qh >> s & 1) << 4
    })
}

/// Recodes a Q5_K tile's code bytes (8 chunks of `qh`, then 32 of nibbles) into five planes
/// P0..P4 of 8 chunks, in place. In the file, every code takes two loads, a shift and a
/// mask for each part and an OR. Byte i of the planes holds the eight sub-blocks' codes at
/// position i: codes 0–4 whole in the low five bits of P0..P4, codes 5–7 in their top three:
///
/// ```text
/// P0 = c0 | (c5 & 7) << 5          P1 = c1 | (c5 >> 3) << 5 | (c6 & 1) << 7
/// P2 = c2 | (c6 >> 1 & 7) << 5     P3 = c3 | (c6 >> 4) << 5 | (c7 & 3) << 6
/// P4 = c4 | (c7 >> 2) << 5
/// ```
///
/// so five of the eight sub-blocks unpack with one mask per register.
fn q5k_recode(codes: &mut [u8]) {
    let mut file = [0u8; 5 * Q5K_PLANE];
    file.copy_from_slice(&codes[..5 * Q5K_PLANE]);
    for o in 0..Q5K_PLANE {
        let c = q5k_codes(&file, o);
        let planes = [
            c[0] | (c[5] & 7) << 5,
            c[1] | (c[5] >> 3) << 5 | (c[6] & 1) << 7,
            c[2] | (c[6] >> 1 & 7) << 5,
            c[3] | (c[6] >> 4) << 5 | (c[7] & 3) << 6,
            c[4] | (c[7] >> 2) << 5,
        ];
        for (k, v) in planes.into_iter().enumerate() {
            codes[Q5K_PLANE * k + o] = v;
        }
    }
}

/// The eight codes at byte position `o` of a recoded Q5_K tile's planes.
fn q5k_plane_codes(planes: &[u8], o: usize) -> [u8; 8] {
    let p: [u8; 5] = std::array::from_fn(|k| planes[Q5K_PLANE * k + o]);
    [
        p[0] & 31,
        p[1] & 31,
        p[2] & 31,
        p[3] & 31,
        p[4] & 31,
        p[0] >> 5 | (p[1] >> 5 & 3) << 3,
        p[1] >> 7 | (p[2] >> 5) << 1 | (p[3] >> 5 & 1) << 4,
        p[3] >> 6 | (p[4] >> 5) << 2,
    ]
}

/// The inverse of `q5k_recode`: the file's `qh` and nibble bytes back from the planes.
fn q5k_decode(codes: &mut [u8]) {
    let mut planes = [0u8; 5 * Q5K_PLANE];
    planes.copy_from_slice(&codes[..5 * Q5K_PLANE]);
    for o in 0..Q5K_PLANE {
        let c = q5k_plane_codes(&planes, o);
        codes[o] = (0..8).fold(0u8, |h, s| h | (c[s] >> 4) << s);
        for pair in 0..4 {
            codes[Q5K_PLANE * (1 + pair) + o] = c[2 * pair] & 15 | (c[2 * pair + 1] & 15) << 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q3_planes_hold_the_files_codes_and_decode_back() {
        // Every byte triple (qs of the first half, qs of the second, hmask) at each of a
        // tile's 256 byte positions: the planes' fields are the codes the file's bits give
        // (`q3_recode`'s table), and decoding gives the file's bytes back.
        let step = if cfg!(miri) { 4099 } else { 1 };
        let triples: Vec<u32> = (0..1u32 << 24).step_by(step).collect();
        for batch in triples.chunks(Q3_PLANE) {
            let mut codes = vec![0u8; 3 * Q3_PLANE];
            for (i, &v) in batch.iter().enumerate() {
                let [q0, q1, h, _] = v.to_le_bytes();
                (codes[i], codes[Q3_PLANE + i], codes[2 * Q3_PLANE + i]) = (q0, q1, h);
            }
            let file = codes.clone();
            q3_recode(&mut codes);
            for (i, &v) in batch.iter().enumerate() {
                let [q0, q1, h, _] = v.to_le_bytes();
                let want = |b: usize| ([q0, q1][b / 4] >> (2 * (b % 4)) & 3) | (h >> b & 1) << 2;
                let (a, b, c) = (codes[i], codes[Q3_PLANE + i], codes[2 * Q3_PLANE + i]);
                let got = [
                    a & 7,
                    a >> 3 & 7,
                    b & 7,
                    b >> 3 & 7,
                    c & 7,
                    c >> 3 & 7,
                    (a >> 6) | (c >> 6 & 1) << 2,
                    (b >> 6) | (c >> 7) << 2,
                ];
                for (k, &g) in got.iter().enumerate() {
                    assert_eq!(g, want(k), "code {k} of bytes {q0:#x} {q1:#x} {h:#x}");
                }
            }
            q3_decode(&mut codes);
            assert_eq!(codes, file);
        }
    }

    #[test]
    fn q6_planes_hold_the_files_codes_and_decode_back() {
        // Every byte triple (ql of quarters 0/2, ql of 1/3, qh), in both halves of a tile.
        let step = if cfg!(miri) { 4099 } else { 1 };
        let triples: Vec<u32> = (0..1u32 << 24).step_by(step).collect();
        for batch in triples.chunks(2 * Q6_PLANE) {
            let mut codes = vec![0u8; 6 * Q6_PLANE];
            let at = |i: usize| (i / Q6_PLANE, i % Q6_PLANE);
            for (i, &v) in batch.iter().enumerate() {
                let [l0, l1, h, _] = v.to_le_bytes();
                let (half, o) = at(i);
                codes[2 * Q6_PLANE * half + o] = l0;
                codes[2 * Q6_PLANE * half + Q6_PLANE + o] = l1;
                codes[4 * Q6_PLANE + Q6_PLANE * half + o] = h;
            }
            let file = codes.clone();
            q6_recode(&mut codes);
            for (i, &v) in batch.iter().enumerate() {
                let [l0, l1, h, _] = v.to_le_bytes();
                let (half, o) = at(i);
                // The file's bits, as ggml's dequantize_row_q6_K reads them.
                let want = [
                    l0 & 0xf | (h & 3) << 4,
                    l1 & 0xf | (h >> 2 & 3) << 4,
                    l0 >> 4 | (h >> 4 & 3) << 4,
                    l1 >> 4 | (h >> 6 & 3) << 4,
                ];
                let p = &codes[3 * Q6_PLANE * half..];
                let got = q6_plane_codes(p[o], p[Q6_PLANE + o], p[2 * Q6_PLANE + o]);
                assert_eq!(got, want, "bytes {l0:#x} {l1:#x} {h:#x}, half {half}");
            }
            q6_decode(&mut codes);
            assert_eq!(codes, file);
        }
    }

    #[test]
    fn q5_fifth_bits_move_to_their_registers_bytes_and_back() {
        // A permutation of bits: each single bit shows where every bit goes.
        for e in 0..32u32 {
            let (k, j) = (e % 4, e % 16 / 4);
            let to = q5_spread(e);
            assert_eq!(to / 8, k, "element {e} is in byte {k} of its register");
            assert_eq!(to % 8, j + 4 * (e / 16), "element {e}'s bit in that byte");
            assert_eq!(q5_gather(to), e);
            let mut qh = rows_of(1 << e);
            q5_recode(&mut qh, q5_spread);
            assert_eq!(qh, rows_of(1 << to));
            q5_recode(&mut qh, q5_gather);
            assert_eq!(qh, rows_of(1 << e));
        }
    }

    /// A tile's `qh` run with every row's word `w`.
    fn rows_of(w: u32) -> Vec<u8> {
        w.to_le_bytes().repeat(8)
    }

    #[test]
    fn q5k_planes_hold_the_files_codes_and_decode_back() {
        // The recoding moves bits: every single bit of a position's five file bytes, then
        // random bytes, show each lands where its code needs it and comes back.
        let mut rng = crate::sample::rng::SplitMix64(5);
        let mut cases: Vec<[u8; 5]> = (0..40)
            .map(|b| std::array::from_fn(|k| if k == b / 8 { 1 << (b % 8) } else { 0 }))
            .collect();
        let random = if cfg!(miri) { 64 } else { 4096 };
        cases.extend((0..random).map(|_| std::array::from_fn(|_| (rng.next_f32() * 256.0) as u8)));
        for batch in cases.chunks(Q5K_PLANE) {
            let mut codes = vec![0u8; 5 * Q5K_PLANE];
            for (o, bytes) in batch.iter().enumerate() {
                for (k, &v) in bytes.iter().enumerate() {
                    codes[Q5K_PLANE * k + o] = v;
                }
            }
            let file = codes.clone();
            q5k_recode(&mut codes);
            for (o, bytes) in batch.iter().enumerate() {
                // The file's bits, as ggml's dequantize_row_q5_K reads them.
                let want: [u8; 8] = std::array::from_fn(|s| {
                    (bytes[1 + s / 2] >> (4 * (s % 2)) & 15) | (bytes[0] >> s & 1) << 4
                });
                assert_eq!(q5k_plane_codes(&codes, o), want, "file bytes {bytes:?}");
            }
            q5k_decode(&mut codes);
            assert_eq!(codes, file);
        }
    }
}
