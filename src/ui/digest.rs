//! The targets digest as a mail: the figures of the targets page in the team's language (an
//! HTML part, a plain-text part) and a chart mail clients display: the targets' progress drawn
//! as SVG and rasterised to PNG (resvg), shown inline. The chart has no text (no font needs to
//! be on the server, Japanese included); the mail's words say what its marks mean.

use super::i18n::{self, Lang};
use crate::targets::{Figures, Measured};
use std::fmt::Write;

/// A digest ready to send: subject, both bodies, and the chart.
pub struct DigestMail {
    pub subject: String,
    pub html: String,
    pub text: String,
    pub png: Vec<u8>,
}

/// The content id the HTML part uses for the chart (`<img src="cid:…">`).
pub const CHART_CID: &str = "targets-chart";

/// The chart's width in CSS pixels (drawn at twice that for sharp screens).
const WIDTH: f64 = 600.0;
const ROW: f64 = 44.0;
/// The scale runs from the baseline (0) to 125% of the way to the goal.
const SCALE_END: f64 = 1.25;

/// Where the target's values fall on its way from baseline to goal (0 = baseline, 1 = goal).
struct Shares {
    now: Option<f64>,
    earlier: Option<f64>,
    forecast: Option<f64>,
}

fn shares(m: &Measured) -> Shares {
    let on_the_way = |v: Option<f64>| {
        let b = m.baseline?;
        super::targets::progress(b, m.target.goal_value(b), v?)
    };
    Shares {
        now: on_the_way(m.now),
        earlier: on_the_way(m.earlier),
        forecast: on_the_way(m.forecast),
    }
}

fn x_of(share: f64) -> f64 {
    20.0 + (WIDTH - 40.0) * (share.clamp(0.0, SCALE_END) / SCALE_END)
}

/// One row per target, in the order of the mail's table: a grey track from the baseline (left
/// edge) past the goal (green line), the value now as a bar (green once at the goal), a dark
/// tick for a quarter earlier and an orange one for the forecast.
pub fn chart_svg(figures: &Figures) -> String {
    let rows = figures.targets.len().max(1) as f64;
    let height = 12.0 + ROW * rows;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\
         <rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    for (i, m) in figures.targets.iter().enumerate() {
        let top = 12.0 + ROW * i as f64;
        let s = shares(m);
        let mid = top + 12.0;
        let _ = write!(
            svg,
            "<rect x=\"20\" y=\"{}\" width=\"{}\" height=\"16\" rx=\"3\" fill=\"#eaeef2\"/>",
            mid - 8.0,
            WIDTH - 40.0
        );
        if let Some(now) = s.now {
            let colour = if now >= 1.0 { "#146c2e" } else { "#1f6feb" };
            let _ = write!(
                svg,
                "<rect x=\"20\" y=\"{}\" width=\"{:.1}\" height=\"16\" rx=\"3\" fill=\"{colour}\"/>",
                mid - 8.0,
                x_of(now) - 20.0
            );
        }
        let tick = |svg: &mut String, share: f64, colour: &str, half: f64| {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{}\" width=\"4\" height=\"{}\" fill=\"{colour}\"/>",
                x_of(share) - 2.0,
                mid - half,
                2.0 * half
            );
        };
        tick(&mut svg, 0.0, "#57606a", 12.0);
        tick(&mut svg, 1.0, "#146c2e", 14.0);
        if let Some(e) = s.earlier {
            tick(&mut svg, e, "#24292f", 10.0);
        }
        if let Some(f) = s.forecast {
            tick(&mut svg, f, "#d4700a", 10.0);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// `svg` rasterised at twice its size, as PNG.
pub fn png(svg: &str) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_str(svg, &usvg::Options::default())
        .map_err(|e| anyhow::anyhow!("the chart is not valid SVG: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width() * 2, size.height() * 2)
        .ok_or_else(|| anyhow::anyhow!("the chart has no area"))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(2.0, 2.0),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| anyhow::anyhow!("cannot encode the chart as PNG: {e}"))
}

/// The digest of `figures` for `shop`'s team, in `lang`, amounts in `currency`, times in
/// `zone`.
pub fn mail(
    figures: &Figures,
    lang: Lang,
    currency: &str,
    zone: chrono_tz::Tz,
    shop: &str,
) -> anyhow::Result<DigestMail> {
    let env = super::templates::environment()?;
    let today = crate::metrics::day_number(
        crate::clock::from_millis(figures.as_of)
            .with_timezone(&zone)
            .date_naive(),
    );
    let rows: Vec<serde_json::Value> = figures
        .targets
        .iter()
        .map(|m| super::targets::row(m, currency, lang, today))
        .collect();
    let date = crate::metrics::date_of_day(today).to_string();
    let subject = i18n::fill(lang, "digest.subject", &[("shop", shop), ("date", &date)]);
    let ctx = minijinja::context! {
        lang => lang.code(), zone => zone.name(), currency => currency,
        rows => rows, shop => shop, as_of => figures.as_of, subject => subject, cid => CHART_CID,
    };
    let html = env.get_template("digest.html")?.render(&ctx)?;
    let text = env.get_template("digest.txt")?.render(&ctx)?;
    Ok(DigestMail {
        subject,
        html,
        text,
        png: png(&chart_svg(figures))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{parse_targets, Measured};

    fn figures(now: Option<f64>) -> Figures {
        let yaml = "targets:\n  - id: ltv-up\n    metric: ltv_12m\n    baseline: { from: 2025-01-01, to: 2025-12-31 }\n    goal: +20%\n    deadline: 2026-12-31\n";
        let doc = crate::yaml::parse("t.yaml", yaml).unwrap();
        let (mut targets, diags) = parse_targets("t.yaml", &doc, "JPY");
        assert!(diags.is_empty(), "{diags:?}");
        let target = targets.remove(0);
        Figures {
            as_of: 1_796_000_000_000,
            targets: vec![Measured {
                target,
                baseline: Some(10_000.0),
                now,
                earlier: Some(10_500.0),
                forecast: Some(13_000.0),
                now_from: 0,
                now_to: 0,
            }],
        }
    }

    fn pixel(png: &[u8], x: u32, y: u32) -> [u8; 3] {
        let p = resvg::tiny_skia::Pixmap::decode_png(png).unwrap();
        let c = p.pixel(x, y).unwrap();
        [c.red(), c.green(), c.blue()]
    }

    #[test]
    fn the_chart_is_a_png_with_the_bar_as_far_as_the_value_now() {
        // Baseline 10,000, goal 12,000, now 11,000: half way, so the bar ends at 40% of the
        // scale (which runs to 125%).
        let drawn = png(&chart_svg(&figures(Some(11_000.0)))).unwrap();
        assert_eq!(&drawn[..8], b"\x89PNG\r\n\x1a\n");
        let p = resvg::tiny_skia::Pixmap::decode_png(&drawn).unwrap();
        assert_eq!((p.width(), p.height()), (1200, 112));
        let y = 2 * 24;
        let end = 2.0 * x_of(0.5);
        assert_eq!(
            pixel(&drawn, (end - 20.0) as u32, y),
            [0x1f, 0x6f, 0xeb],
            "blue before"
        );
        assert_eq!(
            pixel(&drawn, (end + 30.0) as u32, y),
            [0xea, 0xee, 0xf2],
            "grey after"
        );
        // The forecast (13,000: 150%, past the end of the scale) sits at its end, orange.
        assert_eq!(pixel(&drawn, 2 * x_of(1.5) as u32, y), [0xd4, 0x70, 0x0a]);
        // No value now: no bar.
        let empty = png(&chart_svg(&figures(None))).unwrap();
        assert_eq!(pixel(&empty, (end - 20.0) as u32, y), [0xea, 0xee, 0xf2]);
    }

    #[test]
    fn the_mail_has_the_figures_in_the_teams_language() {
        let f = figures(Some(11_000.0));
        let en = mail(&f, Lang::En, "JPY", chrono_tz::Asia::Tokyo, "Shop").unwrap();
        assert!(en.subject.contains("Shop"), "{}", en.subject);
        for part in [&en.html, &en.text] {
            assert!(
                part.contains("¥10,000") && part.contains("¥12,000") && part.contains("¥11,000"),
                "{part}"
            );
            assert!(part.contains("50%"), "{part}");
        }
        assert!(en.html.contains(&format!("cid:{CHART_CID}")));
        let ja = mail(&f, Lang::Ja, "JPY", chrono_tz::Asia::Tokyo, "Shop").unwrap();
        assert!(ja.html.contains("目標"), "{}", ja.html);
        assert_ne!(ja.subject, en.subject);
    }
}
