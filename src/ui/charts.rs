//! Pure drawing for the pages: the RFM grid as a heat map, a segment's size over time as a
//! small line, and the colour of a share in a heat-coloured table. Data in, SVG or a colour
//! out; dark text stays readable on every colour (axe's contrast rule).

use std::fmt::Write;

fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

/// From white (0) to a mid blue (1), on which dark text keeps a contrast above 4.5.
pub fn heat(share: f64) -> String {
    let s = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * s).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(255.0, 0x8f as f64),
        mix(255.0, 0xb5 as f64),
        mix(255.0, 0xf5 as f64)
    )
}

/// The R×F grid: recency score 5 (recent) at the top, frequency score 1 to 5 left to right,
/// each cell coloured by its share of the largest cell and labelled with its customers.
/// `cells` are (r, f, customers); missing cells are empty.
pub fn rfm_heatmap(cells: &[(i64, i64, i64)], title: &str, r_label: &str, f_label: &str) -> String {
    let (cell, left, top) = (84.0, 44.0, 8.0);
    let max = cells.iter().map(|c| c.2).max().unwrap_or(0).max(1) as f64;
    let (w, h) = (left + cell * 5.0 + 8.0, top + cell * 5.0 + 40.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    for r in 1..=5i64 {
        let y = top + cell * (5 - r) as f64;
        let _ = write!(
            s,
            "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"13\" text-anchor=\"end\">R{r}</text>",
            left - 8.0,
            y + cell / 2.0 + 4.0
        );
        for f in 1..=5i64 {
            let x = left + cell * (f - 1) as f64;
            let n = cells
                .iter()
                .find(|c| c.0 == r && c.1 == f)
                .map_or(0, |c| c.2);
            let _ = write!(
                s,
                "<rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{c:.0}\" height=\"{c:.0}\" fill=\"{fill}\" stroke=\"#d0d7de\" stroke-width=\"1\"><title>R{r} F{f}: {raw}</title></rect>\
                 <text x=\"{tx:.0}\" y=\"{ty:.0}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#1f2328\">{n}</text>",
                c = cell,
                fill = heat(n as f64 / max),
                tx = x + cell / 2.0,
                ty = y + cell / 2.0 + 4.0,
                raw = n,
                n = crate::domain::group_thousands(n.unsigned_abs()),
            );
        }
    }
    for f in 1..=5i64 {
        let x = left + cell * (f as f64 - 0.5);
        let _ = write!(
            s,
            "<text x=\"{x:.0}\" y=\"{:.0}\" font-size=\"13\" text-anchor=\"middle\">F{f}</text>",
            top + cell * 5.0 + 16.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#57606a\">{} ↑ · {} →</text></svg>",
        left + cell * 2.5,
        top + cell * 5.0 + 34.0,
        esc(r_label),
        esc(f_label)
    );
    s
}

/// A segment's size over its evaluated days as a small line with its last value; `—` with
/// fewer than two days.
pub fn sparkline(points: &[(String, i64)], label: &str) -> String {
    if points.len() < 2 {
        return String::new();
    }
    let (w, h, pad) = (180.0, 36.0, 3.0);
    let lo = points.iter().map(|p| p.1).min().unwrap_or(0) as f64;
    let hi = points.iter().map(|p| p.1).max().unwrap_or(0) as f64;
    let span = (hi - lo).max(1.0);
    let step = (w - 2.0 * pad) / (points.len() - 1) as f64;
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let x = pad + step * i as f64;
            let y = h - pad - (*v as f64 - lo) / span * (h - 2.0 * pad);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let first = &points[0];
    let last = &points[points.len() - 1];
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
         <polyline points=\"{}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\"/></svg>",
        path.join(" "),
        t = esc(&format!("{label}: {} ({}) → {} ({})", first.1, first.0, last.1, last.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heat_map_has_25_cells_coloured_by_size() {
        let svg = rfm_heatmap(&[(5, 5, 1200), (1, 1, 300)], "RFM", "recency", "frequency");
        assert_eq!(svg.matches("<rect").count(), 25);
        assert!(svg.contains("R5 F5: 1200") && svg.contains(">1,200<"));
        assert!(svg.contains(&format!("fill=\"{}\"", heat(1.0))));
        assert!(svg.contains(&format!("fill=\"{}\"", heat(0.25))));
        assert!(
            svg.contains(&format!("fill=\"{}\"", heat(0.0))),
            "an empty cell is white"
        );
        assert_eq!(heat(0.0), "#ffffff");
        assert_eq!(heat(1.0), "#8fb5f5");
        assert_eq!(heat(7.0), heat(1.0));
    }

    #[test]
    fn a_sparkline_runs_from_the_first_day_to_the_last() {
        assert_eq!(sparkline(&[("2026-12-01".into(), 5)], "x"), "");
        let svg = sparkline(
            &[
                ("2026-12-01".into(), 10),
                ("2026-12-02".into(), 30),
                ("2026-12-03".into(), 20),
            ],
            "vip <1>",
        );
        assert!(
            svg.contains("vip &lt;1&gt;: 10 (2026-12-01) → 20 (2026-12-03)"),
            "{svg}"
        );
        assert!(
            svg.contains("3.0,33.0") && svg.contains("90.0,3.0"),
            "{svg}"
        );
    }
}
