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

/// The elements of MJML 4 (and `mjml` itself). mrml passes an element it does not know into
/// the HTML as it is, without a word: a misspelt one would reach every mail as a raw
/// `<mj-…>` tag without its layout.
pub const MJML_ELEMENTS: [&str; 37] = [
    "mjml",
    "mj-head",
    "mj-body",
    "mj-attributes",
    "mj-all",
    "mj-class",
    "mj-breakpoint",
    "mj-font",
    "mj-html-attributes",
    "mj-html-attribute",
    "mj-selector",
    "mj-preview",
    "mj-style",
    "mj-title",
    "mj-accordion",
    "mj-accordion-element",
    "mj-accordion-title",
    "mj-accordion-text",
    "mj-button",
    "mj-carousel",
    "mj-carousel-image",
    "mj-column",
    "mj-divider",
    "mj-group",
    "mj-hero",
    "mj-image",
    "mj-navbar",
    "mj-navbar-link",
    "mj-raw",
    "mj-section",
    "mj-social",
    "mj-social-element",
    "mj-spacer",
    "mj-table",
    "mj-text",
    "mj-wrapper",
    "mj-include",
];

/// Each `<mj-…>` element of an MJML source that MJML does not have, with its line (1-based),
/// once per name.
pub fn unknown_elements(source: &str) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        for (at, _) in line.match_indices("<mj-") {
            let name: String = line[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let known = MJML_ELEMENTS.contains(&name.as_str());
            if !known && !found.iter().any(|(_, n)| *n == name) {
                found.push((i + 1, name));
            }
        }
    }
    found
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

/// MJML elements whose content mrml passes through as it is: template tags may sit there.
const VERBATIM: [&str; 5] = ["mj-text", "mj-button", "mj-title", "mj-preview", "mj-raw"];

/// What stands in for a template tag while mrml reads the template.
const TOKEN: &str = "__rebuy_tag_";

/// An MJML template made responsive HTML once, its template tags kept, so that each message
/// renders plain HTML (mrml and css-inline cost about 170 µs a message): possible when every
/// tag (`{{ }}`, `{% %}`, `{# #}`) sits in the content of an element mrml passes through
/// ([`VERBATIM`]) or in an attribute's value, so that no tag can change the MJML structure.
/// None when one does not (a loop over `mj-column`s, an include between sections), or mrml
/// refuses the document, or a tag does not come out once and in its place: such a template
/// is made HTML per message, as before.
pub fn precompile(source: &str) -> Option<String> {
    // Plain ASCII stands in for each tag: mrml writes other characters of attribute values
    // as escapes.
    // In a table the HTML parser moves text (a tag) out in front of it, keeping the tags'
    // order: `{% if %}<tr>…{% else %}<tr>…{% endif %}` would come out with both rows. Tables
    // are made per message.
    let lower = source.to_ascii_lowercase();
    if source.contains(TOKEN) || lower.contains("<table") || lower.contains("mj-table") {
        return None;
    }
    let tags = template_tags(source)?;
    let token = |i: usize| format!("{TOKEN}{i}__");
    let mut masked = String::with_capacity(source.len());
    let mut at = 0;
    for (i, t) in tags.iter().enumerate() {
        masked.push_str(&source[at..t.start]);
        masked.push_str(&token(i));
        at = t.end;
    }
    masked.push_str(&source[at..]);
    if !tokens_are_verbatim(&masked, tags.len()) {
        return None;
    }
    let html = from_mjml(&masked).ok()?;
    // Each tag comes out in its order. mrml writes some content twice (`mj-title` is also the
    // body's `aria-label`): an output tag (`{{ }}`) may come out more than once, and is put
    // back everywhere; a block tag must come out once.
    let mut last = 0;
    for (i, t) in tags.iter().enumerate() {
        let token = token(i);
        let first = html.find(&token)?;
        if first < last
            || (html.matches(&token).count() > 1 && !source[t.clone()].starts_with("{{"))
        {
            return None;
        }
        last = first;
    }
    let mut out = html;
    for (i, t) in tags.iter().enumerate() {
        out = out.replace(&token(i), &source[t.clone()]);
    }
    (!out.contains(TOKEN)).then_some(out)
}

/// Where the template tags of `source` are; None if one is left open.
fn template_tags(source: &str) -> Option<Vec<std::ops::Range<usize>>> {
    let mut tags = Vec::new();
    let mut at = 0;
    while let Some(i) = source[at..].find('{') {
        let start = at + i;
        let close = match source.as_bytes().get(start + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                at = start + 1;
                continue;
            }
        };
        let end = start + 2 + source[start + 2..].find(close)? + 2;
        tags.push(start..end);
        at = end;
    }
    Some(tags)
}

/// Whether every token of `masked` is inside an attribute's value or in the content of a
/// [`VERBATIM`] element (the innermost MJML element open there).
fn tokens_are_verbatim(masked: &str, tokens: usize) -> bool {
    let mut open: Vec<&str> = Vec::new();
    let mut seen = 0;
    let mut rest = masked;
    while !rest.is_empty() {
        let (text, tag) = match rest.find('<') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let in_text = text.matches(TOKEN).count();
        if in_text > 0 && !open.last().is_some_and(|e| VERBATIM.contains(e)) {
            return false;
        }
        seen += in_text;
        if tag.is_empty() {
            break;
        }
        let Some(end) = tag.find('>') else {
            return false;
        };
        let markup = &tag[1..end];
        // Inside the markup, a token must be in a quoted value.
        let quoted: usize = markup
            .split('"')
            .skip(1)
            .step_by(2)
            .map(|v| v.matches(TOKEN).count())
            .sum();
        let all = markup.matches(TOKEN).count();
        if quoted != all {
            return false;
        }
        seen += all;
        let name = markup
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        if name.starts_with("mj-") {
            if markup.starts_with('/') {
                if open.pop() != Some(name) {
                    return false;
                }
            } else if !markup.ends_with('/') {
                open.push(name);
            }
        }
        rest = &tag[end + 1..];
    }
    seen == tokens
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
    fn an_element_mjml_does_not_have_is_found_with_its_line() {
        assert!(unknown_elements(MAIL).is_empty());
        let typo = MAIL.replace("<mj-text>山田", "<mj-txt>山田");
        assert_eq!(unknown_elements(&typo), [(5, "mj-txt".to_string())]);
        // mrml itself says nothing: the raw tag goes into the mail.
        let html = from_mjml(&typo).unwrap();
        assert!(html.contains("<mj-txt>山田"), "{html}");
    }

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
    fn mjml_with_tags_only_in_text_and_attributes_is_made_html_once() {
        let mjml = r#"<mjml>
  <mj-head><mj-title>{{ shop.name }}</mj-title></mj-head>
  <mj-body>
    <mj-section><mj-column>
      <mj-text><p>{{ customer.name }}様</p>{% for i in items %}<p>{{ i }}</p>{% endfor %}</mj-text>
      <mj-button href="{{ url }}?a=1&amp;b={{ b }}">見る</mj-button>
      <mj-text>{% include "_footer.html" %}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"#;
        let html = precompile(mjml).expect("every tag is in text or an attribute");
        for tag in [
            "{{ shop.name }}",
            "{{ customer.name }}様",
            "{% for i in items %}",
            "{{ i }}",
            "{% endfor %}",
            "href=\"{{ url }}?a=1&amp;b={{ b }}\"",
            "{% include \"_footer.html\" %}",
        ] {
            assert!(html.contains(tag), "{tag} in {html}");
        }
        // The same as made per message, once the tags are filled in.
        let env = minijinja::Environment::new();
        let ctx = minijinja::context! { shop => minijinja::context!{ name => "店" }, customer => minijinja::context!{ name => "綾" }, items => ["x", "y"], url => "https://s.example", b => 2 };
        let once = env
            .render_str(&html.replace("{% include \"_footer.html\" %}", "F"), &ctx)
            .unwrap();
        let per = from_mjml(
            &env.render_str(&mjml.replace("{% include \"_footer.html\" %}", "F"), &ctx)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(once, per);
        assert!(once.contains("綾様") && once.contains("s.example?a=1&amp;b=2"));
        // The title is written twice by mrml (the body's label too): filled in both places.
        assert!(!once.contains(TOKEN), "{once}");
        assert!(once.contains("aria-label=\"店\""), "{once}");
        let jp = from_mjml("<mjml><mj-body><mj-section><mj-column><mj-image alt=\"化粧水\" src=\"https://s.example/a.png\" /></mj-column></mj-section></mj-body></mjml>").unwrap();
        assert!(jp.contains("化粧水"), "{jp}");
    }

    #[test]
    fn mjml_whose_tags_shape_its_structure_is_made_html_per_message() {
        let looped = "<mjml><mj-body><mj-section>{% for p in picks %}<mj-column><mj-text>{{ p }}</mj-text></mj-column>{% endfor %}</mj-section></mj-body></mjml>";
        assert_eq!(precompile(looped), None);
        let included = "<mjml><mj-body>{% include \"_recommended.mjml\" %}</mj-body></mjml>";
        assert_eq!(precompile(included), None);
        // mrml writes the title twice: a block tag there would come out twice.
        let titled = "<mjml><mj-head><mj-title>{% if a %}A{% endif %}</mj-title></mj-head><mj-body></mj-body></mjml>";
        assert_eq!(precompile(titled), None);
        let in_markup = "<mjml><mj-body><mj-section {{ attrs }}></mj-section></mj-body></mjml>";
        assert_eq!(precompile(in_markup), None);
        assert_eq!(precompile("<mjml><mj-body><mj-text>{{ open"), None);
        // Between a table's rows the HTML parser moves text (the tags) out of the table: the
        // tags would not come out in their place.
        let rows = "<mjml><mj-body><mj-section><mj-column><mj-text><table>{% for i in items %}<tr><td>{{ i }}</td></tr>{% endfor %}</table></mj-text></mj-column></mj-section></mj-body></mjml>";
        assert_eq!(precompile(rows), None);
        // Both rows would come out whatever the condition: the tags keep their order there.
        let branches = "<mjml><mj-body><mj-section><mj-column><mj-text><TABLE>{% if x %}<tr><td>A</td></tr>{% else %}<tr><td>B</td></tr>{% endif %}</TABLE></mj-text></mj-column></mj-section></mj-body></mjml>";
        assert_eq!(precompile(branches), None);
        let mj_table = "<mjml><mj-body><mj-section><mj-column><mj-table>{% if x %}<tr><td>A</td></tr>{% endif %}</mj-table></mj-column></mj-section></mj-body></mjml>";
        assert_eq!(precompile(mj_table), None);
        let shipped = include_str!("../../templates/cross_sell.mjml");
        assert_eq!(precompile(shipped), None, "its products are MJML columns");
    }

    #[test]
    fn the_shipped_templates_but_the_cross_sell_are_made_html_once() {
        for (name, mjml) in [
            ("thanks", include_str!("../../templates/thanks.mjml")),
            ("howto", include_str!("../../templates/howto.mjml")),
            ("replenish", include_str!("../../templates/replenish.mjml")),
            ("winback", include_str!("../../templates/winback.mjml")),
            (
                "cart_reminder",
                include_str!("../../templates/cart_reminder.mjml"),
            ),
            (
                "support_apology",
                include_str!("../../templates/support_apology.mjml"),
            ),
            (
                "support_check_in",
                include_str!("../../templates/support_check_in.mjml"),
            ),
        ] {
            assert!(precompile(mjml).is_some(), "{name}");
        }
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
