//! Bad input gets a located, actionable message, loses nothing already stored, and does not
//! stop a running daemon.

use crate::helpers::*;
use rebuy::config::JobConfig;
use rebuy::daemon::Job;
use rebuy::scenario::check_all;

const GOOD: &str = "id: good\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: ok, subject: \"hi {{ customer.name }}\" }\n";

fn diagnostics(scenarios: &[(&str, &str)], templates: &[(&str, &str)]) -> (TestShop, Vec<String>) {
    let shop = TestShop::new(scenarios, templates, None);
    let report = check_all(
        &shop.config.scenarios_dir,
        &shop.config.templates_dir,
        &shop.config.shop,
    );
    let root = format!("{}/", shop.path().display());
    let lines = report
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&root, ""))
        .collect();
    (shop, lines)
}

#[test]
fn every_kind_of_scenario_and_template_problem_is_reported_with_its_place() {
    let (_shop, lines) = diagnostics(
        &[
            ("good.yaml", GOOD),
            ("malformed.yaml", "id: m\nsteps: [\n  - id: a\n"),
            ("typo.yaml", "id: typo\ntrigger: first_order\nsteps:\n  - id: a\n    wiat: 3d\n    send: { template: ok, subject: s }\n"),
            ("duration.yaml", "id: duration\ntrigger: first_order\nsteps:\n  - id: a\n    wait: 3 days\n    send: { template: ok, subject: s }\n"),
            ("missing.yaml", "id: missing\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: thanx, subject: s }\n"),
            ("syntax.yaml", "id: syntax\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: nofooter_broken, subject: s }\n"),
            ("undefined.yaml", "id: undefined\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: nofooter_typo_var, subject: \"{{ custmer.name }}\" }\n"),
        ],
        &[
            ("ok.html", "<p>{{ customer.name }}</p>"),
            ("ok.txt", "{{ customer.name }}"),
            ("thanks.html", "x"),
            ("thanks.txt", "x"),
            ("nofooter_broken.html", "<p>\n{% if customer.name %}\n"),
            ("nofooter_broken.txt", "fine"),
            ("nofooter_typo_var.html", "<p>\n  Dear {{ customer.nmae }}</p>"),
            ("nofooter_typo_var.txt", "{{ order.totl }} {{ metrics.rfm_segmnt }}"),
        ],
    );
    let all = lines.join("\n");
    let expect = [
        "scenarios/malformed.yaml:3:",
        "scenarios/typo.yaml:5:5: unknown key 'wiat'\n  hint: did you mean 'wait'?",
        "scenarios/duration.yaml:5:11: bad duration '3 days': no spaces",
        "scenarios/missing.yaml:5:23: unknown template 'thanx': neither thanx.html (or thanx.mjml) nor thanx.txt exists in",
        "hint: did you mean 'thanks'?",
        "templates/nofooter_broken.html:2:1: template syntax error: {% if %} opened here is never closed (add {% endif %})",
        "templates/nofooter_typo_var.html:2:11: undefined variable 'customer.nmae' (scenario 'undefined')\n  hint: did you mean 'name'?",
        "templates/nofooter_typo_var.txt:1:4: undefined variable 'order.totl' (scenario 'undefined')\n  hint: did you mean 'total'?",
        "templates/nofooter_typo_var.txt:1:21: undefined variable 'metrics.rfm_segmnt' (scenario 'undefined')\n  hint: did you mean 'rfm_segment'?",
        "scenarios/undefined.yaml:5:51: subject of step 'a' uses undefined variable 'custmer.name'\n  hint: did you mean 'customer'?",
    ];
    for e in expect {
        assert!(all.contains(e), "missing:\n{e}\n--- in ---\n{all}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("scenarios/malformed.yaml:3:") && l.contains("invalid YAML")),
        "{all}"
    );
    assert!(
        !all.contains("good.yaml"),
        "a valid scenario has no problems: {all}"
    );
    assert_eq!(lines.len(), 9, "{all}");
}

#[test]
fn durations_too_long_for_the_calendar_are_located_errors_not_panics() {
    let step = |key: &str, value: &str| {
        format!("id: s\ntrigger: first_order\nsteps:\n  - id: a\n    {key}: {value}\n    send: {{ template: ok, subject: s }}\n")
    };
    let files = [
        ("wait.yaml", step("wait", "100000000d")),
        ("max.yaml", step("wait", "9223372036854775807s")),
        ("sum.yaml", step("wait", "106751991166d106751991166d")),
        ("goal.yaml", "id: g\ntrigger: first_order\ngoal: { within: 106751991167301d }\nsteps:\n  - id: a\n    send: { template: ok, subject: s }\n".to_string()),
        ("reentry.yaml", "id: r\ntrigger: order_placed\nreentry: 106751991167301d\nsteps:\n  - id: a\n    send: { template: ok, subject: s }\n".to_string()),
        ("predicted.yaml", "id: p\ntrigger: { expected_next_order: -106751991167301d }\nsteps:\n  - id: a\n    send: { template: ok, subject: s }\n".to_string()),
    ];
    let scenarios: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_shop, lines) = diagnostics(
        &scenarios,
        &[("ok.html", "<p>{{ customer.name }}</p>"), ("ok.txt", "x")],
    );
    let all = lines.join("\n");
    for (name, _) in &files {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("scenarios/{name}:"))
                    && l.contains("longer than 3650d")),
            "{name}: {all}"
        );
    }
}

#[test]
fn vars_outside_a_manual_scenario_and_unknown_shop_settings_are_caught() {
    let (_shop, lines) = diagnostics(
        &[("v.yaml", "id: v\ntrigger: order_placed\naudience: \"customer.orders_cnt > 1\"\nsteps:\n  - id: a\n    send: { template: t, subject: \"{{ vars.x }} {{ shop.phone }}\" }\n")],
        &[("t.html", "x"), ("t.txt", "x")],
    );
    let all = lines.join("\n");
    assert!(all.contains("scenarios/v.yaml:3:11: audience uses undefined variable 'customer.orders_cnt'\n  hint: did you mean 'orders_count'?"), "{all}");
    assert!(all.contains("only manual scenarios have vars"), "{all}");
    assert!(
        all.contains(
            "undefined variable 'shop.phone'\n  hint: add 'phone' under shop: in the config"
        ),
        "{all}"
    );
}

#[tokio::test]
async fn a_bad_import_and_a_broken_render_do_not_stop_the_daemon_or_lose_anything() {
    let smtp = SmtpServer::start();
    let scenario = "id: s\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: t, subject: \"hi {{ customer.name }}\" }\n";
    // The template needs an attribute that one customer lacks: that message fails, visibly.
    let shop = TestShop::new(
        &[("s.yaml", scenario)],
        &[
            ("t.html", "{{ customer.attributes.plan }}"),
            ("t.txt", "{{ customer.attributes.plan }}"),
        ],
        Some(&smtp),
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer(
                    "C1",
                    "a@example.jp",
                    "A",
                    "Asia/Tokyo",
                    r#"{"plan":"gold"}"#,
                ),
                customer("C2", "b@example.jp", "B", "Asia/Tokyo", "{}"),
            ],
            0,
        )
        .await
        .unwrap();
    let orders = shop.file("orders.csv");
    std::fs::write(
        &orders,
        "order_id,customer_id,placed_at,currency,total\nO1,C1,2026-11-01T01:00:00Z,JPY,1000\nO2,GHOST,2026-11-01T01:00:00Z,JPY,1000\nO3,C2,not a date,JPY,1000\nO4,C2,2026-11-01T01:05:00Z,JPY,1000\n",
    )
    .unwrap();
    let mut daemon = shop.daemon(&store).await;
    let job = JobConfig {
        name: "nightly".into(),
        cron: serde_saphyr::from_str("cron: \"* * * * *\"")
            .map(|w: Wrapper| w.cron)
            .unwrap(),
        import_customers: None,
        import_orders: Some(orders),
        refresh_metrics: true,
        digest: None,
    };
    let schedule = rebuy::config::parse_cron("* * * * *").unwrap();
    daemon
        .jobs
        .push(Job::new(job, schedule, chrono_tz::Asia::Tokyo));

    let t0 = utc("2026-11-01T02:00:00Z");
    daemon.run_once(t0).await.unwrap();
    let r = daemon
        .run_once(t0 + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(r.jobs_run, 1);
    assert_eq!((r.tick.enrolled, r.tick.queued, r.tick.failed), (2, 1, 1));
    assert_eq!(r.delivery.sent, 1);
    let rows = store.outbox_rows().await.unwrap();
    let failed = rows.iter().find(|r| r.customer_id == "C2").unwrap();
    assert_eq!(failed.status, "failed");
    assert!(
        failed.last_error.as_deref().unwrap().contains("t.html:1"),
        "{:?}",
        failed.last_error
    );
    assert_eq!(smtp.received().len(), 1);
    // The job refreshed the metrics after its import: the two customers with a good order.
    let metrics: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.metrics_rows())
        .await
        .unwrap();
    let ids: Vec<&str> = metrics.iter().map(|m| m.customer_id.as_str()).collect();
    assert_eq!(ids, ["C1", "C2"]);
    assert!(metrics.iter().all(|m| m.as_of == "2026-11-01"));
    // The daemon keeps going.
    let r = daemon
        .run_once(t0 + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(
        r.jobs_run, 1,
        "the job runs again, rejecting the same rows, changing nothing"
    );
    assert_eq!((r.tick.enrolled, r.delivery.sent), (0, 0));
}

#[derive(serde::Deserialize)]
struct Wrapper {
    cron: serde_saphyr::Spanned<String>,
}

#[test]
fn check_refuses_a_marketing_scenario_whose_mail_lacks_the_sender_footer() {
    let (shop, lines) = diagnostics(
        &[
            ("ad.yaml", "id: ad\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: nofooter_plain, subject: s }\n"),
            ("half.yaml", "id: half\ntrigger: first_order\nsteps:\n  - id: a\n    send: { template: nofooter_half, subject: s }\n"),
            ("receipt.yaml", "id: receipt\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: nofooter_plain, subject: s }\n"),
            ("good.yaml", GOOD),
        ],
        &[
            ("nofooter_plain.html", "<p>{{ customer.name }}</p>"),
            ("nofooter_plain.txt", "{{ customer.name }}"),
            // The HTML has it all; the text part forgets the unsubscribe link.
            ("nofooter_half.html", "<p>{{ shop.name }} {{ shop.address }} {{ shop.contact }} <a href=\"{{ unsubscribe_url }}\">stop</a></p>"),
            ("nofooter_half.txt", "{{ shop.name }} {{ shop.address }} {{ shop.contact }}"),
            ("ok.html", "<p>{{ customer.name }}</p>"),
            ("ok.txt", "{{ customer.name }}"),
        ],
    );
    let all = lines.join("\n");
    // One problem per step, naming everything missing and every part that misses it.
    let ad: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("scenarios/ad.yaml:5:23: marketing mail"))
        .map(String::as_str)
        .collect();
    assert_eq!(ad.len(), 1, "{all}");
    assert!(
        ad[0].contains("must show the sender's name, the sender's postal address, a contact address and the unsubscribe link ({{ unsubscribe_url }}), but nofooter_plain.html and nofooter_plain.txt (step 'a') do not"),
        "{all}"
    );
    assert!(all.contains("scenarios/half.yaml:5:23: marketing mail must show the unsubscribe link ({{ unsubscribe_url }}), but nofooter_half.txt (step 'a') does not"), "{all}");
    assert!(
        !all.contains("half.yaml:5:23: marketing mail must show the sender's name"),
        "{all}"
    );
    assert!(
        !all.contains("receipt.yaml"),
        "transactional mail needs no footer: {all}"
    );
    assert!(!all.contains("good.yaml"), "{all}");
    assert_eq!(lines.len(), 2, "{all}");

    // Without a postal address in the config, every marketing scenario is refused.
    let mut shop_cfg = shop.config.shop.clone();
    shop_cfg.remove("address");
    let report = check_all(
        &shop.config.scenarios_dir,
        &shop.config.templates_dir,
        &shop_cfg,
    );
    assert!(
        report.diagnostics.iter().any(|d| d
            .to_string()
            .contains("marketing scenario 'good' needs shop.address in the config")),
        "{:?}",
        report.diagnostics
    );
}

#[test]
fn check_renders_every_step_for_an_order_without_line_items_and_says_where_it_fails() {
    let (_shop, lines) = diagnostics(
        &[
            ("items.yaml", "id: items\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: items, subject: \"{{ order.items[0].name }}\" }\n"),
            ("guarded.yaml", "id: guarded\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: guarded, subject: \"{{ order.items[0].name if order.items else 'your order' }}\" }\n"),
            // A manual trigger's declared `--var`s get sample values.
            ("case.yaml", "id: case\ntrigger: manual\ntransactional: true\nvars: [case_id]\nsteps:\n  - id: a\n    send: { template: case, subject: \"case {{ vars.case_id }}\" }\n"),
            // Made-up sample values can fail where real ones would not: not judged.
            ("numeric.yaml", "id: numeric\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: numeric, subject: s }\n"),
        ],
        &[
            ("items.html", "<p>{{ customer.name }}</p>\n<p>{{ order.items[0].sku }}</p>"),
            ("items.txt", "{{ order.items[0].sku }}"),
            ("guarded.html", "{% if order.items %}{{ order.items[0].sku }}{% else %}-{% endif %}"),
            ("guarded.txt", "{% if order.items %}{{ order.items[0].sku }}{% endif %}"),
            ("case.html", "<p>{{ vars.case_id }}</p>"),
            ("case.txt", "{{ vars.case_id }}"),
            ("numeric.html", "<p>{{ customer.attributes.points + 1 }}</p>"),
            ("numeric.txt", "{{ customer.attributes.points + 1 }}"),
        ],
    );
    let all = lines.join("\n");
    assert!(
        all.contains("scenarios/items.yaml:6:")
            && all.contains("subject of step 'a' fails to render for an order without line items"),
        "{all}"
    );
    assert!(all.contains("templates/items.html:2:1: items.html (step 'a' of scenario 'items') fails to render for an order without line items: undefined value"), "{all}");
    assert!(all.contains("templates/items.txt:1:1: items.txt (step 'a' of scenario 'items') fails to render for an order without line items"), "{all}");
    assert!(
        !all.contains("guarded") && !all.contains("case") && !all.contains("numeric"),
        "{all}"
    );
    assert_eq!(lines.len(), 3, "{all}");
}

#[test]
fn check_catches_a_missing_include_and_a_runaway_loop_and_knows_range_and_namespace() {
    let (_shop, lines) = diagnostics(
        &[
            ("inc.yaml", "id: inc\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: inc, subject: s }\n"),
            ("loop.yaml", "id: loop\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: spin, subject: s }\n"),
            ("globals.yaml", "id: globals\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: globals, subject: s }\n"),
        ],
        &[
            ("inc.html", "<p>hi</p>\n{% include 'footer-missing.html' %}"),
            ("inc.txt", "hi"),
            ("spin.html", "{% for a in range(100000) %}{% for b in range(100000) %}.{% endfor %}{% endfor %}"),
            ("spin.txt", "x"),
            ("globals.html", "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"),
            ("globals.txt", "{{ range(2) | list | length }}"),
        ],
    );
    let all = lines.join("\n");
    assert!(
        all.contains(
            "templates/inc.html:2:1: inc.html (step 'a' of scenario 'inc') fails to render: "
        ) && all.contains("footer-missing.html"),
        "{all}"
    );
    assert!(
        all.contains("spin.html (step 'a' of scenario 'loop') fails to render: ")
            && all.contains("fuel"),
        "{all}"
    );
    assert!(!all.contains("globals"), "{all}");
    assert_eq!(lines.len(), 2, "{all}");
}

/// What fails whatever the customer's data is found by `check`, not by the first message: an
/// expression that cannot be calculated, a template that includes itself, a date format chrono
/// does not know (which used to panic the daemon at every start), a filter asked to build
/// gigabytes. What fails only for the sample's text (`vars.amount | int`) is not reported.
#[test]
fn check_finds_templates_that_fail_for_every_customer_and_leaves_data_dependent_ones() {
    let scenario = |id: &str| {
        let subject = if id == "long" {
            "\"{{ 'x' * 600 }}\""
        } else {
            "s"
        };
        format!("id: {id}\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: {{ template: {id}, subject: {subject} }}\n")
    };
    let names = ["div", "self", "date", "join", "data", "attr", "long"];
    let yaml: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}.yaml"), scenario(n)))
        .collect();
    let yaml: Vec<(&str, &str)> = yaml.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (_shop, lines) = diagnostics(
        &yaml,
        &[
            ("div.html", "<p>{{ 1 // 0 }}</p>"),
            ("div.txt", "x"),
            ("self.html", "<p>x</p>"),
            ("self.txt", "{% include 'self.txt' %}"),
            ("date.html", "<p>{{ order.placed_at | date('%Q') }}</p>"),
            ("date.txt", "x"),
            ("join.html", "{{ range(99999) | join('x' * 100000) }}"),
            ("join.txt", "x"),
            (
                "data.html",
                "<p>{{ order.total // (order.items | length) }}</p>",
            ),
            ("data.txt", "x"),
            // A real customer's nested attribute: undefined in both flat samples, not judged.
            ("attr.html", "<p>{{ customer.attributes.skin.type }}</p>"),
            ("attr.txt", "x"),
            ("long.html", "<p>x</p>"),
            ("long.txt", "x"),
        ],
    );
    let all = lines.join("\n");
    for expected in [
        "templates/div.html:1:1: div.html (step 'a' of scenario 'div') fails to render for the sample customer: unable to calculate 1 // 0",
        "self.txt (step 'a' of scenario 'self') fails to render for the sample customer",
        "date.html (step 'a' of scenario 'date') fails to render: date: '%Q' is not a date format",
        "join.html (step 'a' of scenario 'join') fails to render: join would build more than 1024 KiB",
    ] {
        assert!(all.contains(expected), "{expected}\n{all}");
    }
    // Dividing by the count of items fails only for an order without items: said as such.
    assert!(
        all.contains("data.html (step 'a' of scenario 'data') fails to render for an order without line items"),
        "{all}"
    );
    // A subject over 500 characters once rendered would fail every message.
    assert!(
        all.contains("scenarios/long.yaml:6:38: subject of step 'a' for the sample customer: the subject is 600 characters long"),
        "{all}"
    );
    assert_eq!(lines.len(), 6, "{all}");
}

/// A misspelt filter or test fails for every customer, whatever the data: `check`
/// refuses it where it is, naming the one meant, in a template, a subject and a condition (a
/// condition that always fails would enroll nobody, with only a warning in the log).
#[test]
fn check_refuses_filters_and_tests_that_do_not_exist() {
    let (_shop, lines) = diagnostics(
        &[
            ("typo.yaml", "id: typo\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: typo, subject: s }\n"),
            ("subject.yaml", "id: subject\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: { template: fine, subject: \"{{ customer.name | uper }}\" }\n"),
            ("cond.yaml", "id: cond\ntrigger: first_order\ntransactional: true\naudience: \"order.items | selectattr('sku', 'eq', 'X') | lenght > 0\"\nsteps:\n  - id: a\n    if: \"customer.email is strng\"\n    send: { template: fine, subject: s }\n"),
        ],
        &[
            ("typo.html", "<p>hi</p>\n<p>{{ order.total | mony }}</p>"),
            ("typo.txt", "{% if order.total is nmber %}{{ order.total }}{% endif %}"),
            ("fine.html", "<p>{{ order.total | money }}</p>"),
            ("fine.txt", "{{ order.total | money }}"),
        ],
    );
    let all = lines.join("\n");
    for (place, meant) in [
        (
            "templates/typo.html:2:1: typo.html (step 'a' of scenario 'typo') fails to render: ",
            "did you mean 'money'?",
        ),
        (
            "templates/typo.txt:1:1: typo.txt (step 'a' of scenario 'typo') fails to render: ",
            "did you mean 'number'?",
        ),
        ("scenarios/subject.yaml:6:", "did you mean 'upper'?"),
        ("scenarios/cond.yaml:4:", "did you mean 'length'?"),
        ("scenarios/cond.yaml:7:", "did you mean 'string'?"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(place) && l.contains(meant)),
            "{place} … {meant}:\n{all}"
        );
    }
    assert!(!all.contains("fine.html"), "{all}");
}

/// A template saved as Shift_JIS (or with any byte that is not UTF-8) is found by `rebuy check`
/// at its first bad byte, whether it is a step's own part or a file it includes; the render
/// of a message says which file, instead of "could not read template".
#[test]
fn a_template_that_is_not_utf8_is_found_by_check_at_its_byte_and_named_by_the_render() {
    let step = |id: &str, template: &str| {
        format!("id: {id}\ntrigger: first_order\ntransactional: true\nsteps:\n  - id: a\n    send: {{ template: {template}, subject: s }}\n")
    };
    let (own, inc) = (step("own", "sjis"), step("inc", "inc"));
    let shop = TestShop::new(
        &[("own.yaml", own.as_str()), ("inc.yaml", inc.as_str())],
        &[
            ("sjis.html", "<p>x</p>"),
            ("inc.html", "<p>hi</p>{% include '_part.txt' %}"),
            ("inc.txt", "hi"),
        ],
        None,
    );
    // こんにちは in Shift_JIS on the second line, after two characters; a bad byte in a part.
    std::fs::write(
        shop.file("templates/sjis.txt"),
        b"hello\n\xe3\x81\x82!\x82\xb1\x82\xf1\n",
    )
    .unwrap();
    std::fs::write(shop.file("templates/_part.txt"), b"\xff").unwrap();
    let report = check_all(
        &shop.config.scenarios_dir,
        &shop.config.templates_dir,
        &shop.config.shop,
    );
    let root = format!("{}/", shop.path().display());
    let lines: Vec<String> = report
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&root, ""))
        .collect();
    let all = lines.join("\n");
    assert!(
        all.contains("templates/sjis.txt:2:3: sjis.txt is not UTF-8 (byte 0x82 at line 2, column 3): save it as UTF-8"),
        "{all}"
    );
    assert!(
        all.contains("inc.html (step 'a' of scenario 'inc') fails to render: ")
            && all.contains("_part.txt is not UTF-8 (byte 0xFF at line 1, column 1)"),
        "{all}"
    );
    assert_eq!(lines.len(), 2, "{all}");

    let renderer = rebuy::render::Renderer::new(&shop.config.templates_dir);
    let err = renderer.env().get_template("sjis.txt").unwrap_err();
    let said = rebuy::render::describe(&err);
    assert!(
        said.contains("sjis.txt is not UTF-8 (byte 0x82 at line 2"),
        "{said}"
    );
}
