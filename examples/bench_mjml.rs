//! What the MJML pipeline costs per message: the shipped cross-sell mail, rendered by
//! `rebuy check`'s sample context into MJML, then turned into HTML (mrml), its CSS inlined
//! (css-inline) and a text part made from it (html2text), 1,000 times; beside the same mail's
//! plain HTML template through `inline_css` (which leaves HTML without `<style>` as it is).
//! Usage: cargo run --release --example bench_mjml

use rebuy::render::{from_mjml, inline_css, precompile, to_text, Renderer};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let renderer = Renderer::new(&dir);
    renderer
        .recommendations()
        .install(rebuy::recommend_view::Learned::sample());
    let mut shop = std::collections::BTreeMap::new();
    for (k, v) in [
        ("name", "はだまる Skincare"),
        ("url", "https://hadamaru.example"),
        ("address", "東京都渋谷区神南1-2-3"),
        ("contact", "support@hadamaru.example"),
    ] {
        shop.insert(k.to_string(), v.to_string());
    }
    let ctx = rebuy::render::sample_context(&shop, "https://hadamaru.example/unsubscribe");
    let mjml = renderer
        .env()
        .get_template("cross_sell.mjml")?
        .render(&ctx)?;
    let n = 1000;
    let time = |label: &str, f: &dyn Fn() -> usize| {
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += f();
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{label}: {us:.0} µs per message ({} bytes)", bytes / n);
    };
    time("MJML → HTML (mrml) with CSS inlined", &|| {
        from_mjml(&mjml).map_or(0, |h| h.len())
    });
    let out = from_mjml(&mjml)?;
    time("text part made from that HTML (html2text)", &|| {
        to_text(&out).len()
    });
    let plain = renderer
        .env()
        .template_from_str(
            "{% set picks = recommend(customer, n=3) %}{% include '_recommended.html' %}",
        )?
        .render(&ctx)?;
    time(
        "plain HTML template: inline_css (no <style>: as it is)",
        &|| inline_css(&plain).len(),
    );
    // The shipped thank-you mail, whose tags all sit in text: made HTML per message against
    // made once (what the renderer does for it) and then rendered per message.
    let thanks = renderer.env().get_template("thanks.mjml")?;
    time(
        "thanks.mjml per message: template, then mrml and css-inline",
        &|| {
            thanks
                .render(&ctx)
                .ok()
                .and_then(|m| from_mjml(&m).ok())
                .map_or(0, |h| h.len())
        },
    );
    let once = precompile(thanks.source()).expect("the shipped thank-you mail is made once");
    let compiled = renderer.env().template_from_str(&once)?;
    time(
        "thanks.mjml made HTML once: the template per message",
        &|| compiled.render(&ctx).map_or(0, |h| h.len()),
    );
    Ok(())
}
