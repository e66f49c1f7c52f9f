//! The KV caches as the planner sees them: which attention reads each cache value, the
//! geometry and element types that fix its bytes (`kernels::kv`), and the store that writes
//! into it.

use std::collections::HashMap;

use super::infer::Facts;
use super::step::KvOut;
use super::{PlanError, PlanOptions};
use crate::graph::{Graph, Op, ValueId};
use crate::kernels::kv::{self, KvGeom};
use crate::kernels::scalar::attention::AttnParams;

/// Which side of a layer's caches a cache value is, and their geometry.
#[derive(Clone, Copy)]
pub(super) struct CacheSide {
    pub geom: KvGeom,
    pub is_k: bool,
}

impl CacheSide {
    pub fn bytes(&self) -> usize {
        if self.is_k {
            self.geom.k_bytes()
        } else {
            self.geom.v_bytes()
        }
    }

    pub fn out(&self, cache: usize) -> KvOut {
        let (store, _) = if self.is_k {
            kv::store_k(self.geom.k)
        } else {
            kv::store_v(self.geom.v)
        };
        KvOut {
            store,
            cache,
            geom: self.geom,
        }
    }

    pub fn ty(&self) -> crate::vocab::KvType {
        if self.is_k {
            self.geom.k
        } else {
            self.geom.v
        }
    }

    pub fn store_name(&self) -> &'static str {
        if self.is_k {
            kv::store_k(self.geom.k).1
        } else {
            kv::store_v(self.geom.v).1
        }
    }
}

pub(super) fn attn_params(
    head_dim: usize,
    heads: usize,
    kv_heads: usize,
    window: usize,
    opts: &PlanOptions,
) -> AttnParams {
    AttnParams {
        geom: KvGeom::new(opts.kv, kv_heads, head_dim, opts.n_ctx),
        group: heads / kv_heads,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window,
    }
}

/// Every cache value's side and geometry, from the attention that reads it.
pub(super) fn cache_geometry(
    g: &Graph,
    facts: &Facts,
    opts: &PlanOptions,
) -> Result<HashMap<ValueId, CacheSide>, PlanError> {
    let mut caches = HashMap::new();
    for id in g.topo_order() {
        if let Op::Attend {
            heads,
            kv_heads,
            window,
        } = g.g[id].op
        {
            let ins = g.input_values(id);
            let head_dim = facts.get(ins[0]).cols() / heads;
            let geom = attn_params(head_dim, heads, kv_heads, window, opts).geom;
            if let Some(why) = geom.unsupported() {
                return Err(PlanError::Options(format!(
                    "node `{}`: {why}",
                    g.g[id].name
                )));
            }
            caches.insert(ins[1], CacheSide { geom, is_k: true });
            caches.insert(ins[2], CacheSide { geom, is_k: false });
        }
    }
    Ok(caches)
}

pub(super) fn unread_cache(node: &crate::graph::Node) -> PlanError {
    PlanError::Options(format!(
        "internal: node `{}` writes a KV cache that no attention reads",
        node.name
    ))
}
