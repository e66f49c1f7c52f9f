//! `fuse-rope-kv`: rope is applied as Q and K leave their projection, and K and V are
//! written by the projection straight into row `pos[t]` of the layer's caches, so the
//! `kv_write` copy step and both rope steps disappear.

use super::{gemv_as_proj, only_reader, value, Pass};
use crate::graph::{Epilogue, Graph, NodeId, Op, ValueId};
use crate::plan::error::PlanError;

pub struct FuseRopeKv;

impl Pass for FuseRopeKv {
    fn name(&self) -> &'static str {
        "fuse-rope-kv"
    }

    fn run(&self, g: &mut Graph) -> Result<bool, PlanError> {
        let mut changed = false;
        for attend in g.topo_order() {
            if !matches!(g.g[attend].op, Op::Attend { .. }) {
                continue;
            }
            let ins = g.input_values(attend);
            let pos = ins[3];
            changed |= fuse_kv(g, ins[1], ins[2], pos);
            changed |= fuse_rope_into_projection(g, ins[0], pos);
        }
        Ok(changed)
    }
}

/// A projection output (of a plain gemv or a proj) stored as is and read only by `reader`.
fn stored_projection(g: &Graph, v: ValueId, reader: NodeId) -> bool {
    let stored = match &g.g[v.node].op {
        Op::Gemv => true,
        Op::Proj { outs, .. } => outs[v.out] == Epilogue::Store,
        _ => false,
    };
    stored && only_reader(g, v).map(|r| r.0) == Some(reader)
}

/// Makes `proj` (a gemv turned proj) read positions as input 1 if it does not yet.
fn ensure_positions(g: &mut Graph, proj: NodeId, pos: ValueId) {
    let ins = g.input_values(proj);
    if ins.len() == 1 {
        g.set_inputs(proj, &[ins[0], pos]);
    }
}

fn set_epilogue(g: &mut Graph, v: ValueId, e: Epilogue) {
    if let Op::Proj { outs, .. } = &mut g.g[v.node].op {
        outs[v.out] = e;
    }
}

/// Rope `roped`'s epilogue for projection output `v`: the rope's frequency-factor weight,
/// if it has one, moves to the projection, after its matrices in output order (the order
/// `infer` and `lower` read them in).
fn rope_epilogue(g: &mut Graph, roped: NodeId, v: ValueId, to_cache: bool) -> Option<Epilogue> {
    let Op::Rope {
        heads,
        theta,
        layout,
    } = g.g[roped].op
    else {
        return None;
    };
    let factor = g.g[roped].weights.first().copied();
    if let (Some(w), Op::Proj { norm, outs }) = (factor, &g.g[v.node].op) {
        let before = outs[..v.out].iter().filter(|e| e.rope_factors()).count();
        let at = norm.is_some() as usize + outs.len() + before;
        g.g[v.node].weights.insert(at, w);
    }
    let factors = factor.is_some();
    Some(if to_cache {
        Epilogue::RopeToCache {
            heads,
            theta,
            layout,
            factors,
        }
    } else {
        Epilogue::Rope {
            heads,
            theta,
            layout,
            factors,
        }
    })
}

/// `rope(proj_out)` (Q) read only by its consumer → the projection ropes as it stores.
/// Returns whether it fused.
fn fuse_rope_into_projection(g: &mut Graph, roped: ValueId, pos: ValueId) -> bool {
    let Op::Rope { .. } = g.g[roped.node].op else {
        return false;
    };
    let src = g.input_values(roped.node)[0];
    if !stored_projection(g, src, roped.node) || only_reader(g, roped).is_none() {
        return false;
    }
    gemv_as_proj(g, src.node);
    ensure_positions(g, src.node, pos);
    if let Some(e) = rope_epilogue(g, roped.node, src, false) {
        set_epilogue(g, src, e);
    }
    g.replace_uses(roped, src);
    g.g.remove_node(roped.node);
    true
}

/// `kv_write(rope(k_proj), v_proj)` → the projections write the caches themselves.
fn fuse_kv(g: &mut Graph, kcache: ValueId, vcache: ValueId, pos: ValueId) -> bool {
    let kv = kcache.node;
    if g.g[kv].op != Op::KvWrite || vcache.node != kv {
        return false;
    }
    let kv_ins = g.input_values(kv);
    let (k_roped, v) = (kv_ins[0], kv_ins[1]);
    let Op::Rope { .. } = g.g[k_roped.node].op else {
        return false;
    };
    let k_src = g.input_values(k_roped.node)[0];
    if !stored_projection(g, k_src, k_roped.node) || !stored_projection(g, v, kv) {
        return false;
    }
    if only_reader(g, k_roped).map(|r| r.0) != Some(kv) {
        return false;
    }
    // K: rope into the cache, in the projection.
    gemv_as_proj(g, k_src.node);
    ensure_positions(g, k_src.node, pos);
    if let Some(e) = rope_epilogue(g, k_roped.node, k_src, true) {
        set_epilogue(g, k_src, e);
    }
    // V: straight into the cache.
    gemv_as_proj(g, v.node);
    ensure_positions(g, v.node, pos);
    set_epilogue(g, v, Epilogue::ToCache);
    g.replace_uses(value(kv, 0), k_src);
    g.replace_uses(value(kv, 1), v);
    g.g.remove_node(kv);
    g.g.remove_node(k_roped.node);
    true
}
