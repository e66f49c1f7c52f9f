//! The arena as a picture: x is the schedule step, y the arena offset; one rectangle per
//! buffer spans its live interval and its bytes, so reuse shows as rectangles stacked in
//! the same rows at different times.

use std::fmt::Write as _;

use crate::plan::{BufKind, Plan};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn to_svg(plan: &Plan) -> String {
    let steps = plan.steps.len().max(1);
    let (w, h, margin) = (1200.0f64, 700.0f64, 60.0f64);
    let peak = plan.peak_bytes.max(1) as f64;
    let xs = (w - 2.0 * margin) / steps as f64;
    let ys = (h - 2.0 * margin) / peak;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="monospace" font-size="10">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{margin}" y="20" font-size="14">{} arena: peak {} B (no reuse: {} B), {} steps; x = step, y = offset</text>"#,
        escape(&plan.graph_name),
        plan.peak_bytes,
        plan.naive_bytes,
        plan.steps.len()
    );
    let _ = writeln!(
        s,
        r##"<rect x="{margin}" y="{margin}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        w - 2.0 * margin,
        h - 2.0 * margin
    );
    for (i, b) in plan.buffers.iter().enumerate() {
        if b.kind == BufKind::KvCache {
            continue;
        }
        let Some(live) = b.live else { continue };
        let x = margin + live.first as f64 * xs;
        let width = ((live.last - live.first + 1) as f64 * xs).max(1.0);
        let y = margin + (b.offset - plan.arena_offset) as f64 * ys;
        let height = (b.bytes as f64 * ys).max(1.0);
        let hue = (i * 47) % 360;
        let fill = match b.kind {
            BufKind::Scratch => "hsl(0,0%,75%)".to_string(),
            _ => format!("hsl({hue},60%,70%)"),
        };
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}" fill="{fill}" stroke="#333" stroke-width="0.3"><title>{} {} @{} live {}..{}</title></rect>"##,
            escape(&b.name),
            b.fact,
            b.offset,
            live.first,
            live.last
        );
        if width > 40.0 && height > 10.0 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 2.0,
                y + 10.0,
                escape(&b.name)
            );
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}
