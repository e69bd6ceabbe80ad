//! Mail HTML after the template: MJML turned into responsive HTML (`mrml`), `<style>` rules
//! inlined into the elements (`css-inline`: Gmail and most clients drop or ignore a head's
//! styles; media queries stay in a `<style>` for the clients that read them), and a plain-text
//! part made from the HTML when a step gives none (`html2text`).

/// An MJML document that mrml refuses, with the line (in the rendered document) it names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct MjmlError {
    pub line: usize,
    pub message: String,
}

/// The responsive HTML of a rendered MJML document, its CSS inlined.
pub fn from_mjml(source: &str) -> Result<String, MjmlError> {
    let parsed = mrml::parse(source).map_err(|e| located(source, &e.to_string()))?;
    let html = parsed
        .element
        .render(&mrml::prelude::render::RenderOptions::default())
        .map_err(|e| MjmlError {
            line: 1,
            message: e.to_string(),
        })?;
    Ok(inline_css(&html))
}

/// mrml names a byte position ("… at position 120..130"), told as a line; the end of the
/// document when it ran out (an element left open).
fn located(source: &str, message: &str) -> MjmlError {
    let line_at = |at: usize| {
        source.as_bytes()[..at.min(source.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let line = match message.split_once("at position ") {
        Some((_, rest)) => {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().map_or(1, line_at)
        }
        None if message.contains("end of stream") => line_at(source.len()),
        None => 1,
    };
    MjmlError {
        line,
        message: message.to_string(),
    }
}

/// The HTML with its `<style>` rules written into each element's `style`; rules that cannot be
/// inlined (media queries) stay in the head. HTML without a `<style>` is returned as it is, and
/// so is HTML the inliner cannot read (it is still valid mail, only less styled).
pub fn inline_css(html: &str) -> String {
    if !html.contains("<style") {
        return html.to_string();
    }
    let inliner = css_inline::CSSInliner::options()
        .keep_style_tags(true)
        .load_remote_stylesheets(false)
        .build();
    inliner.inline(html).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "CSS could not be inlined; the HTML is sent with its <style>");
        html.to_string()
    })
}

/// A plain-text part for an HTML part: text wrapped at 78 columns, links listed as footnotes.
/// Never empty for HTML with text: should html2text refuse, the tags are stripped instead.
pub fn to_text(html: &str) -> String {
    html2text::from_read(html.as_bytes(), 78).unwrap_or_else(|_| strip_tags(html))
}

/// The text between the tags, for when html2text cannot lay a document out.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    html_escape::decode_html_entities(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &str = r#"<mjml>
  <mj-head><mj-attributes><mj-text font-size="16px" /></mj-attributes></mj-head>
  <mj-body>
    <mj-section>
      <mj-column><mj-text>山田 花子様</mj-text></mj-column>
      <mj-column><mj-button href="https://shop.example.jp/p/LO-01">化粧水を見る</mj-button></mj-column>
    </mj-section>
  </mj-body>
</mjml>"#;

    #[test]
    fn mjml_becomes_responsive_html_with_its_css_inlined_and_a_text_part() {
        let html = from_mjml(MAIL).unwrap();
        assert!(html.contains("山田 花子様"), "{html}");
        assert!(html.contains("https://shop.example.jp/p/LO-01"));
        // Two columns that stack on a phone: a media query kept in the head…
        assert!(
            html.contains("@media only screen and (min-width:480px)"),
            "{html}"
        );
        // …and the text's size written on the element itself.
        assert!(html.contains("font-size:16px"), "{html}");
        let text = to_text(&html);
        assert!(text.contains("山田 花子様"), "{text}");
        assert!(text.contains("https://shop.example.jp/p/LO-01"), "{text}");
    }

    #[test]
    fn broken_mjml_is_refused_with_its_line() {
        let broken =
            "<mjml>\n  <mj-body>\n    <mj-section>\n      <mj-column>\n  </mj-body>\n</mjml>";
        let e = from_mjml(broken).unwrap_err();
        assert_eq!(
            e.line, 6,
            "an element left open: the end of the document; {e}"
        );
        let unknown = "<mjml>\n  <mj-body>\n    </mj-column>\n  </mj-body>\n</mjml>";
        let e = from_mjml(unknown).unwrap_err();
        // mrml stops at the `</mj-body>` the stray close leaves unmatched: byte 38, line 4.
        assert_eq!(e.line, 4, "{e}");
        assert!(from_mjml("not mjml at all").is_err());
    }

    #[test]
    fn stripped_text_is_the_fallback() {
        assert_eq!(strip_tags("<p>a &amp; <b>b</b></p>"), "a & b");
    }

    #[test]
    fn styles_in_the_head_are_written_into_the_elements() {
        let html =
            "<html><head><style>p { color: red }</style></head><body><p>hi</p></body></html>";
        assert!(
            inline_css(html).contains(r#"<p style="color: red;">hi</p>"#),
            "{}",
            inline_css(html)
        );
        let plain = "<p>hi</p>";
        assert_eq!(inline_css(plain), plain);
    }
}
