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

/// The funnel of each step (and variant): for every row, bars for its stages (sent,
/// opened, clicked, converted after), each as long as its share of the first stage, with the
/// count at the bar's end. `rows`: (label, count per stage); `stages`: the stages' names.
pub fn funnel(rows: &[(String, [i64; 4])], stages: &[String; 4], title: &str) -> String {
    const COLOURS: [&str; 4] = ["#1f6feb", "#8250df", "#bf3989", "#1a7f37"];
    if rows.is_empty() {
        return String::new();
    }
    let (w, label_w, bar_h, gap) = (640.0, 150.0, 12.0, 14.0);
    let row_h = 4.0 * bar_h + gap;
    let legend_h = 22.0;
    let h = legend_h + row_h * rows.len() as f64;
    let span = w - label_w - 70.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    for (k, name) in stages.iter().enumerate() {
        let x = label_w + 120.0 * k as f64;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"14\" font-size=\"12\" fill=\"#1f2328\">{}</text>",
            COLOURS[k],
            x + 16.0,
            esc(name)
        );
    }
    for (i, (label, counts)) in rows.iter().enumerate() {
        let top = legend_h + row_h * i as f64;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"13\" fill=\"#1f2328\">{}</text>",
            top + 2.0 * bar_h + 4.0,
            esc(label)
        );
        let base = counts[0].max(1) as f64;
        for (k, n) in counts.iter().enumerate() {
            let y = top + bar_h * k as f64;
            let len = span * (*n as f64 / base).clamp(0.0, 1.0);
            let _ = write!(
                s,
                "<g><title>{}: {}</title><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#1f2328\">{}</text></g>",
                esc(&stages[k]),
                n,
                bar_h - 2.0,
                COLOURS[k],
                label_w + len + 4.0,
                y + bar_h - 3.0,
                crate::domain::group_thousands((*n).max(0) as u64)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Colours of the cohorts' lines, oldest to newest shown (distinguishable, readable on white).
const LINE_COLOURS: [&str; 12] = [
    "#8250df", "#bf3989", "#cf222e", "#bc4c00", "#9a6700", "#4d7c0f", "#1a7f37", "#0f766e",
    "#0969da", "#1f2328", "#6e7781", "#0550ae",
];

/// The cohorts' LTV curves (the newest `LINE_COLOURS.len()` of them): revenue per customer by
/// months since the first order, one line each, with a legend; `money` writes the axis' amounts.
pub fn ltv_curves(
    curves: &[crate::metrics::LtvCurve],
    title: &str,
    x_label: &str,
    money: impl Fn(f64) -> String,
) -> String {
    let shown = &curves[curves.len().saturating_sub(LINE_COLOURS.len())..];
    if shown.is_empty() {
        return String::new();
    }
    let (w, h) = (640.0, 300.0);
    let (left, right, top, bottom) = (78.0, 130.0, 14.0, 40.0);
    let months = shown
        .iter()
        .map(|c| c.per_customer.len())
        .max()
        .unwrap_or(1)
        .max(2)
        - 1;
    let hi = shown
        .iter()
        .flat_map(|c| c.per_customer.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let x = |m: usize| left + (w - left - right) * m as f64 / months as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / hi);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    for k in 0..=4 {
        let v = hi * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d0d7de\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#57606a\">{}</text>",
            w - right,
            left - 6.0,
            y(v) + 4.0,
            esc(&money(v)),
            y = y(v)
        );
    }
    let step = months.div_ceil(12).max(1);
    for m in (0..=months).step_by(step) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#57606a\">{m}</text>",
            x(m),
            h - bottom + 16.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#1f2328\">{}</text>",
        left + (w - left - right) / 2.0,
        h - 6.0,
        esc(x_label)
    );
    for (i, c) in shown.iter().enumerate() {
        let colour = LINE_COLOURS[i];
        let points: Vec<String> = c
            .per_customer
            .iter()
            .enumerate()
            .map(|(m, v)| format!("{:.1},{:.1}", x(m), y(*v)))
            .collect();
        let last = c.per_customer.last().copied().unwrap_or(0.0);
        let _ = write!(
            s,
            "<g><title>{}</title><polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            esc(&format!("{} ({}): {}", c.month, c.customers, money(last))),
            points.join(" ")
        );
        let ly = top + 6.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#1f2328\">{}</text></g>",
            w - right + 12.0,
            ly - 2.0,
            w - right + 32.0,
            ly + 4.0,
            esc(&c.month)
        );
    }
    s.push_str("</svg>");
    s
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
    fn a_funnel_draws_each_stage_as_its_share_of_the_sent() {
        let stages = [
            "sent".to_string(),
            "opened".into(),
            "clicked".into(),
            "ordered".into(),
        ];
        assert_eq!(funnel(&[], &stages, "t"), "");
        let svg = funnel(
            &[
                ("thank-you".into(), [1000, 500, 100, 0]),
                ("b <x>".into(), [0, 0, 0, 0]),
            ],
            &stages,
            "Funnel",
        );
        assert_eq!(
            svg.matches("<rect").count(),
            4 + 8,
            "a legend and 4 bars a row"
        );
        let span = 640.0 - 150.0 - 70.0;
        assert!(
            svg.contains(&format!("width=\"{span:.1}\"")),
            "the sent at full length"
        );
        assert!(
            svg.contains(&format!("width=\"{:.1}\"", span / 2.0)),
            "half opened"
        );
        assert!(svg.contains(&format!("width=\"{:.1}\"", span / 10.0)));
        assert!(svg.contains(">1,000<") && svg.contains("b &lt;x&gt;"));
    }

    #[test]
    fn ltv_curves_draw_the_newest_cohorts_each_as_far_as_its_months() {
        let curve = |month: &str, per_customer: Vec<f64>| crate::metrics::LtvCurve {
            month: month.into(),
            customers: 10,
            per_customer,
        };
        assert_eq!(ltv_curves(&[], "t", "x", |v| v.to_string()), "");
        let mut curves: Vec<_> = (1..=14)
            .map(|m| curve(&format!("c{m:02}"), vec![1000.0; (16 - m) as usize]))
            .collect();
        curves.push(curve("2026-03", vec![3000.0, 4000.0]));
        let svg = ltv_curves(&curves, "LTV <curves>", "months", |v| format!("¥{v:.0}"));
        assert_eq!(svg.matches("<polyline").count(), 12, "the newest 12");
        assert!(!svg.contains(">c03<") && svg.contains(">c04<"));
        assert!(svg.contains("2026-03 (10): ¥4000"), "{svg}");
        assert!(
            svg.contains(">¥4000<"),
            "the axis runs to the highest value"
        );
        assert!(svg.contains("LTV &lt;curves&gt;"));
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
