//! Plans for people: text (one line per step), JSON (schema in docs/plan-schema.md),
//! Graphviz DOT of the schedule, and an SVG of the arena. All deterministic: schedule order,
//! no addresses, no hash-map order.

pub mod dot;
pub mod json;
pub mod svg;
pub mod text;

use super::{BufId, Plan};

/// `name [rows, cols] f32 @offset a..b` for a buffer (a cache: its element type, and `kv`
/// for its life, as long as the session's).
pub(crate) fn describe(plan: &Plan, b: BufId) -> String {
    let buf = &plan.buffers[b.0 as usize];
    let live = buf
        .live
        .map_or("kv".to_string(), |l| format!("{}..{}", l.first, l.last));
    match buf.kv {
        Some(ty) => format!(
            "{} {:?} {ty} @{} {}",
            buf.name, buf.fact.shape, buf.offset, live
        ),
        None => format!("{} {} @{} {}", buf.name, buf.fact, buf.offset, live),
    }
}

/// Which layers a dump shows: `0..2` shows layers 0 and 1; steps outside any layer always
/// show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerRange {
    pub start: u32,
    pub end: u32,
}

impl LayerRange {
    /// Every layer expanded.
    pub const ALL: LayerRange = LayerRange {
        start: 0,
        end: u32::MAX,
    };
}

impl std::str::FromStr for LayerRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "all" {
            return Ok(LayerRange::ALL);
        }
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| format!("`{s}`: expected START..END (e.g. 0..2) or all"))?;
        let start = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not a layer number"))?;
        let end = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not a layer number"))?;
        if end <= start {
            return Err(format!("`{s}` is empty"));
        }
        Ok(LayerRange { start, end })
    }
}

/// The layer a step belongs to, from its `blk.N.` name.
pub(crate) fn layer_of(name: &str) -> Option<u32> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}
