//! Templates written in MJML, through the real engine, `rebuy check` and `rebuy preview`: the
//! mail is responsive HTML with its CSS inlined and a text part made from it, a broken MJML
//! file is reported at its line, and the preview page shows the mail at two widths.

use crate::helpers::*;

const NOTE: &str = "id: note\ntrigger: first_order\nsteps:\n  - id: hello\n    wait: 1h\n    send: { template: note, subject: \"hello {{ customer.name }}\" }\n";

const MJML: &str = r#"<mjml>
  <mj-head><mj-style>.fine { color: #b03a2e; }</mj-style></mj-head>
  <mj-body>
    <mj-section>
      <mj-column><mj-text css-class="fine">{{ customer.name }}様 & ようこそ</mj-text></mj-column>
      <mj-column><mj-button href="https://hadamaru.example/new">新作を見る</mj-button></mj-column>
    </mj-section>
    <mj-section><mj-column><mj-text>{% include "_legal.html" %}</mj-text></mj-column></mj-section>
  </mj-body>
</mjml>"#;

fn rebuy(shop: &TestShop, args: &[&str]) -> (bool, String, String) {
    let config = shop.file("rebuy.yaml");
    let o = crate::helpers::binary()
        .arg("--config")
        .arg(&config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_config(shop: &TestShop) {
    let c = &shop.config;
    let shop_keys: String = c
        .shop
        .iter()
        .map(|(k, v)| format!("  {k}: \"{v}\"\n"))
        .collect();
    std::fs::write(
        shop.file("rebuy.yaml"),
        format!(
            "database: {}\nscenarios_dir: {}\ntemplates_dir: {}\nshop:\n{shop_keys}unsubscribe:\n  base_url: https://hadamaru.example/unsubscribe\n",
            c.database,
            c.scenarios_dir.display(),
            c.templates_dir.display()
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn an_mjml_step_is_sent_as_responsive_html_with_inlined_css_and_a_text_part() {
    let shop = TestShop::new(&[("note.yaml", NOTE)], &[("note.mjml", MJML)], None);
    let store = shop.store().await;
    store
        .upsert_customers(
            &[customer(
                "C1",
                "c1@example.jp",
                "山田 <花子>",
                "Asia/Tokyo",
                "{}",
            )],
            0,
        )
        .await
        .unwrap();
    add_orders(&store, &[order("O1", "C1", "2026-11-02T03:00:00Z", 3980)]).await;
    let daemon = shop.daemon(&store).await;
    daemon
        .engine
        .tick(utc("2026-11-02T04:00:00Z"))
        .await
        .unwrap();
    daemon
        .engine
        .tick(utc("2026-11-02T05:00:00Z"))
        .await
        .unwrap();
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 1);
    let html = &rows[0].html;
    // MJML's tables and the media query that stacks the two columns on a phone.
    assert!(
        html.contains("@media only screen and (min-width:480px)"),
        "{html}"
    );
    // The class's rule written on the element; the customer's name escaped, not markup.
    assert!(html.contains("color: #b03a2e"), "{html}");
    assert!(
        html.contains("山田 &lt;花子&gt;様 &amp; ようこそ"),
        "{html}"
    );
    assert!(html.contains("https://hadamaru.example/new"));
    // No note.txt: the text part is made from the HTML, link and footer included.
    let text = &rows[0].body_text;
    assert!(text.contains("山田 <花子>様 & ようこそ"), "{text}");
    assert!(text.contains("https://hadamaru.example/new"), "{text}");
    assert!(
        text.contains("https://hadamaru.example/unsubscribe"),
        "{text}"
    );
    assert!(!text.contains("<td"), "{text}");

    // The preview page: the same mail at a desktop client's width and a phone's.
    write_config(&shop);
    let page = shop.file("preview.html");
    let (ok, out, err) = rebuy(
        &shop,
        &[
            "preview",
            "note",
            "hello",
            "--customer",
            "C1",
            "--part",
            "subject",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "hello 山田 <花子>");
    let page = std::fs::read_to_string(page).unwrap();
    assert!(
        page.contains(r#"<iframe sandbox width="600""#)
            && page.contains(r#"<iframe sandbox width="375""#)
    );
    assert!(
        page.contains("min-width:480px"),
        "the mail is in the frames"
    );
    store.close().await;
}

#[test]
fn broken_mjml_is_reported_by_check_at_its_line() {
    let broken = MJML.replace("</mj-section>\n    <mj-section>", "\n    <mj-section>");
    let shop = TestShop::new(&[("note.yaml", NOTE)], &[("note.mjml", &broken)], None);
    write_config(&shop);
    let (ok, out, err) = rebuy(&shop, &["check"]);
    assert!(!ok, "{out}");
    let all = format!("{out}{err}");
    let at = format!("{}:", shop.config.templates_dir.join("note.mjml").display());
    assert!(all.contains(&at) && all.contains("invalid MJML"), "{all}");
    // A misspelt element is refused at its line, with the element meant.
    let typo = MJML.replace("<mj-button", "<mj-buton");
    std::fs::write(shop.config.templates_dir.join("note.mjml"), typo).unwrap();
    let (ok, out, err) = rebuy(&shop, &["check"]);
    assert!(!ok, "{out}");
    let all = format!("{out}{err}");
    assert!(
        all.contains(&format!("{at}6:"))
            && all.contains("<mj-buton> is not an MJML element")
            && all.contains("did you mean <mj-button>?"),
        "{all}"
    );
    // Fixed, it passes; no text part is needed.
    std::fs::write(shop.config.templates_dir.join("note.mjml"), MJML).unwrap();
    let (ok, out, err) = rebuy(&shop, &["check"]);
    assert!(ok, "{out}{err}");
}
