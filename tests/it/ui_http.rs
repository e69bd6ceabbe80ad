//! The pages' rules over plain HTTP against the real `rebuy serve` (no browser needed): which
//! role opens which page, every form refused without its session's CSRF token, sign-in
//! refusals and their limit, bad ids and empty reasons answered with a page, and passwords
//! stored only as argon2id hashes.

use crate::helpers::*;
use rebuy::store::SuppressionKind;
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "a long enough password";

/// A manual scenario that is marketing mail: it needs the customer's consent.
const NEWS: &str =
    "id: news\ntrigger: manual\nsteps:\n  - id: a\n    send: { template: t, subject: news }\n";
const APOLOGY: &str = "id: apology\ntrigger: manual\ntransactional: true\nvars:\n  - { name: case_id, required: true }\nsteps:\n  - id: a\n    send: { template: t, subject: sorry }\n";
/// Two steps three days apart: a follow-up still running after its first mail.
const CHECK_IN: &str = "id: check-in\ntrigger: manual\ntransactional: true\nsteps:\n  - id: a\n    send: { template: t, subject: sorry }\n  - id: b\n    wait: 3d\n    send: { template: t, subject: better? }\n";

/// One request; (status, headers by lower-case name, body).
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (u16, HashMap<String, Vec<String>>, String) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers
                .entry(k.trim().to_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    (status, headers, body.to_string())
}

fn cookie_of(headers: &HashMap<String, Vec<String>>, name: &str) -> Option<String> {
    headers.get("set-cookie")?.iter().find_map(|c| {
        let pair = c.split(';').next()?;
        pair.strip_prefix(&format!("{name}="))
            .filter(|v| !v.is_empty())
            .map(|v| format!("{name}={v}"))
    })
}

fn csrf_in(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// Signs in; the session cookie and its CSRF token.
async fn sign_in(addr: &str, name: &str) -> (String, String) {
    let (_, h, body) = request(addr, "GET", "/ui/login", "", &[]).await;
    let login = cookie_of(&h, "rebuy_login").unwrap();
    let (status, h, _) = request(
        addr,
        "POST",
        "/ui/login",
        &login,
        &[
            ("csrf", &csrf_in(&body)),
            ("name", name),
            ("password", PASSWORD),
            ("next", ""),
        ],
    )
    .await;
    assert_eq!(status, 303, "{name} signs in");
    let session = cookie_of(&h, "rebuy_session").unwrap();
    let (status, _, page) = request(addr, "GET", "/ui/status", &session, &[]).await;
    assert_eq!(status, 200);
    (session, csrf_in(&page))
}

fn write_config(shop: &TestShop) {
    let c = &shop.config;
    std::fs::write(
        shop.file("rebuy.yaml"),
        format!(
            "database: {}\nscenarios_dir: {}\ntemplates_dir: {}\nshop:\n  name: Shop\n  from: \"Shop <s@shop.example>\"\n  address: Tokyo\n  contact: s@shop.example\n\
             unsubscribe:\n  base_url: https://shop.example/unsubscribe\nhttp:\n  listen: 127.0.0.1:0\n\
             delivery:\n  transport: file\n  file_dir: {}\n",
            c.database,
            c.scenarios_dir.display(),
            c.templates_dir.display(),
            shop.file("outbox").display()
        ),
    )
    .unwrap();
}

async fn shop() -> (TestShop, Served) {
    let shop = TestShop::new(
        &[
            ("apology.yaml", APOLOGY),
            ("check-in.yaml", CHECK_IN),
            ("news.yaml", NEWS),
        ],
        &[("t.html", "<p>sorry</p>"), ("t.txt", "sorry")],
        None,
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[customer("aya", "aya@example.jp", "Aya", "Asia/Tokyo", "{}")],
            0,
        )
        .await
        .unwrap();
    store.close().await;
    write_config(&shop);
    for (name, role) in [("sato", "support"), ("mori", "marketer"), ("boss", "admin")] {
        let out = add_user(shop.path(), name, role, PASSWORD);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = serve_http(shop.path(), "serve");
    (shop, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_opens_its_pages_and_every_form_needs_its_token() {
    let (shop, server) = shop().await;
    let addr = server.addr.clone();

    // Not signed in: every page sends to the sign-in form and back.
    let (status, h, _) = request(&addr, "GET", "/ui/customers/aya", "", &[]).await;
    assert_eq!(status, 303);
    assert_eq!(h["location"][0], "/ui/login?next=%2Fui%2Fcustomers%2Faya");

    // The sign-in form's cookie, and what every page is sent with.
    let (_, h, _) = request(&addr, "GET", "/ui/login", "", &[]).await;
    let set = &h["set-cookie"][0];
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"),
        "{set}"
    );
    assert_eq!(h["x-frame-options"][0], "DENY");
    assert_eq!(h["cache-control"][0], "no-store");

    let support = sign_in(&addr, "sato").await;
    let marketer = sign_in(&addr, "mori").await;
    let admin = sign_in(&addr, "boss").await;
    let pages = [
        ("/ui/customers?q=aya", [true, false, true]),
        ("/ui/customers/aya", [true, false, true]),
        (
            "/ui/customers/aya/followup?scenario=apology",
            [true, false, true],
        ),
        ("/ui/scenarios", [false, true, true]),
        ("/ui/scenarios/apology", [false, true, true]),
        ("/ui/segments", [false, true, true]),
        ("/ui/backtests", [false, true, true]),
        ("/ui/status", [true, true, true]),
        ("/ui/audit", [false, false, true]),
    ];
    for (path, allowed) in pages {
        for ((who, (cookie, _)), ok) in ["support", "marketer", "admin"]
            .iter()
            .zip([&support, &marketer, &admin])
            .zip(allowed)
        {
            let (status, _, _) = request(&addr, "GET", path, cookie, &[]).await;
            assert_eq!(status, if ok { 200 } else { 403 }, "{who} GET {path}");
        }
    }

    // Every form: without the token, or with another session's, 403 and nothing done.
    let forms = [
        "/ui/customers/aya/suppress",
        "/ui/customers/aya/unsuppress",
        "/ui/customers/aya/followup/preview",
        "/ui/customers/aya/followup",
        "/ui/messages/1/cancel",
        "/ui/messages/1/retry",
        "/ui/enrollments/1/end",
        "/ui/backtests",
        "/ui/settings/lang",
        "/ui/logout",
    ];
    let (cookie, csrf) = &admin;
    for path in forms {
        let fields = [
            ("reason", "x"),
            ("scenario", "apology"),
            ("key", "ui-k"),
            ("lang", "ja"),
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
        ];
        let (status, _, body) = request(&addr, "POST", path, cookie, &fields).await;
        assert_eq!(status, 403, "POST {path} without a token");
        assert!(body.contains("The form has expired"), "{body}");
        let mut with_other = fields.to_vec();
        with_other.push(("csrf", support.1.as_str()));
        let (status, _, _) = request(&addr, "POST", path, cookie, &with_other).await;
        assert_eq!(status, 403, "POST {path} with another session's token");
    }
    let store = shop.store().await;
    assert!(store.suppressions().await.unwrap().is_empty());
    assert!(store
        .audit_log(100)
        .await
        .unwrap()
        .iter()
        .all(|a| a.action == "signed_in"));

    // A marketer's valid form to a support action: refused by role.
    let (status, _, _) = request(
        &addr,
        "POST",
        "/ui/customers/aya/suppress",
        &marketer.0,
        &[("csrf", &marketer.1), ("reason", "spam")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = request(
        &addr,
        "POST",
        "/ui/enrollments/1/end",
        &marketer.0,
        &[("csrf", &marketer.1)],
    )
    .await;
    assert_eq!(status, 403);

    // Bad input is answered with a page that says what is wrong.
    let (status, _, body) = request(
        &addr,
        "POST",
        "/ui/customers/aya/suppress",
        cookie,
        &[("csrf", csrf), ("reason", "")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("Give a reason"), "{body}");
    let (status, _, body) = request(
        &addr,
        "POST",
        "/ui/messages/abc/cancel",
        cookie,
        &[("csrf", csrf)],
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.contains("whole number"), "{body}");
    let (status, _, _) = request(&addr, "GET", "/ui/customers/nobody", cookie, &[]).await;
    assert_eq!(status, 404);
    let (status, _, body) = request(
        &addr,
        "POST",
        "/ui/customers/aya/followup",
        cookie,
        &[("csrf", csrf), ("scenario", "apology")],
    )
    .await;
    assert_eq!(status, 422, "a confirmation without its key");
    assert!(body.contains("start again from the preview"), "{body}");
    assert!(store.customer_enrollments("aya").await.unwrap().is_empty());
    // A required variable left blank: the page asks for it by name, in its own words (not the
    // command line's `--var`), shows no preview, and a confirmation starts nothing.
    let blank = [
        ("csrf", csrf.as_str()),
        ("scenario", "apology"),
        ("var.case_id", "  "),
        ("key", "ui-blank"),
    ];
    let (status, _, body) = request(
        &addr,
        "POST",
        "/ui/customers/aya/followup/preview",
        cookie,
        &blank,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Fill in &#x27;case_id&#x27;") && !body.contains("--var"),
        "{body}"
    );
    assert!(
        !body.contains("confirm-followup"),
        "no preview to confirm: {body}"
    );
    let (status, _, body) =
        request(&addr, "POST", "/ui/customers/aya/followup", cookie, &blank).await;
    assert_eq!(status, 422);
    assert!(body.contains("Fill in &#x27;case_id&#x27;"), "{body}");
    assert!(store.customer_enrollments("aya").await.unwrap().is_empty());

    // With its token, the admin's suppression works and is audited.
    let (status, h, _) = request(
        &addr,
        "POST",
        "/ui/customers/aya/suppress",
        cookie,
        &[("csrf", csrf), ("reason", "asked by phone")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(h["location"][0], "/ui/customers/aya?flash=suppress.done");
    assert_eq!(
        store.suppressions().await.unwrap()[0].email,
        "aya@example.jp"
    );
    let audit = store.audit_log(100).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "address_suppressed" && a.user_name == "boss"));
    // Again (a double click): said to be stopped already, not audited twice.
    let (status, h, _) = request(
        &addr,
        "POST",
        "/ui/customers/aya/suppress",
        cookie,
        &[("csrf", csrf), ("reason", "asked by phone")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(h["location"][0], "/ui/customers/aya?flash=suppress.already");
    let audit = store.audit_log(100).await.unwrap();
    let suppressed = audit.iter().filter(|a| a.action == "address_suppressed");
    assert_eq!(suppressed.count(), 1);

    // Removing it takes a reason; it also removes the person's unsubscribe recorded under an
    // address they had before (it follows them), but not a bounce of that old address; with
    // nothing left to remove the page says so instead of "removed".
    for (email, kind) in [
        ("aya-old@example.jp", SuppressionKind::Unsubscribe),
        ("aya-older@example.jp", SuppressionKind::Bounce),
    ] {
        store
            .suppress(email, kind, "", Some("aya"), 0)
            .await
            .unwrap();
    }
    async fn unsuppress(
        addr: &str,
        cookie: &str,
        csrf: &str,
        reason: &str,
    ) -> (u16, HashMap<String, Vec<String>>, String) {
        request(
            addr,
            "POST",
            "/ui/customers/aya/unsuppress",
            cookie,
            &[("csrf", csrf), ("reason", reason)],
        )
        .await
    }
    let unsuppress = |reason| unsuppress(&addr, cookie, csrf, reason);
    let (status, _, _) = unsuppress(" ").await;
    assert_eq!(status, 422);
    assert_eq!(store.suppressions().await.unwrap().len(), 3);
    let (status, h, _) = unsuppress("asked to hear from us again").await;
    assert_eq!(status, 303);
    assert_eq!(h["location"][0], "/ui/customers/aya?flash=suppress.undone");
    let left: Vec<String> = store
        .suppressions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.email)
        .collect();
    assert_eq!(left, ["aya-older@example.jp"]);
    let audit = store.audit_log(100).await.unwrap();
    let removal = audit
        .iter()
        .find(|a| a.action == "address_unsuppressed")
        .unwrap();
    assert!(
        removal.detail.contains("asked to hear from us again")
            && removal.detail.contains("aya-old@example.jp"),
        "{removal:?}"
    );
    let (_, h, _) = unsuppress("again").await;
    assert_eq!(h["location"][0], "/ui/customers/aya?flash=suppress.nothing");
    // Suppressed again for what follows. The customer page names the kind in words, and a
    // follow-up's preview warns that its mail will not go out.
    store
        .suppress(
            "aya@example.jp",
            SuppressionKind::Manual,
            "x",
            Some("aya"),
            0,
        )
        .await
        .unwrap();
    let (_, _, page) = request(&addr, "GET", "/ui/customers/aya", cookie, &[]).await;
    assert!(page.contains("Stopped by the shop"), "{page}");
    let (status, _, page) = request(
        &addr,
        "POST",
        "/ui/customers/aya/followup/preview",
        cookie,
        &[
            ("csrf", csrf),
            ("scenario", "apology"),
            ("var.case_id", "C-1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("followup-blocked") && page.contains("will not go out"),
        "{page}"
    );
    // Marketing mail to a customer who never agreed to it is skipped at send: said before.
    let mut refused = customer("rin", "rin@example.jp", "Rin", "Asia/Tokyo", "{}");
    refused.marketing_consent = Some(false);
    store.upsert_customers(&[refused], 0).await.unwrap();
    let (status, _, page) = request(
        &addr,
        "POST",
        "/ui/customers/rin/followup/preview",
        cookie,
        &[("csrf", csrf), ("scenario", "news")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("has not agreed to marketing mail"), "{page}");

    // Mail waits and nothing runs to send it (this server is `rebuy serve`): the page says so
    // rather than "Mail is flowing".
    let (_, _, page) = request(&addr, "GET", "/ui/status", cookie, &[]).await;
    assert!(page.contains("Mail is flowing."), "{page}");
    let ken = customer("ken", "ken@example.jp", "Ken", "Asia/Tokyo", "{}");
    store.upsert_customers(&[ken], 0).await.unwrap();
    let engine = shop.app().engine(&store).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    engine
        .trigger_manual("check-in", "ken", Default::default(), None, now)
        .await
        .unwrap();
    assert_eq!(engine.tick(now).await.unwrap().queued, 1);
    let (_, _, page) = request(&addr, "GET", "/ui/status", cookie, &[]).await;
    assert!(page.contains("no daemon is running to send it"), "{page}");

    // Support stops that follow-up from the customer's page: ended with the reason and who,
    // its queued message cancelled, audited; a second try says it is not running.
    let enrollment = store.customer_enrollments("ken").await.unwrap()[0].id;
    let (_, _, page) = request(&addr, "GET", "/ui/customers/ken", cookie, &[]).await;
    let action = format!("/ui/enrollments/{enrollment}/end");
    assert!(page.contains(&action), "{page}");
    let end = [
        ("csrf", csrf.as_str()),
        ("reason", "asked by phone"),
        ("back", "/ui/customers/ken"),
    ];
    let (status, h, _) = request(&addr, "POST", &action, cookie, &end).await;
    assert_eq!(status, 303);
    assert_eq!(
        h["location"][0],
        format!("/ui/customers/ken?flash=followup.ended&id={enrollment}")
    );
    let ended = &store.customer_enrollments("ken").await.unwrap()[0];
    assert_eq!(ended.state, "cancelled");
    assert_eq!(ended.end_reason.as_deref(), Some("asked by phone (boss)"));
    let messages = store.customer_messages("ken").await.unwrap();
    assert_eq!(messages[0].status, "cancelled");
    let audit = store.audit_log(100).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "followup_ended"
            && a.user_name == "boss"
            && a.target == "ken"
            && a.detail.starts_with("check-in (enrollment ")),
        "the customer and the scenario, as when a follow-up starts: {audit:?}"
    );
    let (status, _, body) = request(&addr, "POST", &action, cookie, &end).await;
    assert_eq!(status, 422);
    assert!(body.contains("is not running"), "{body}");
    assert!(
        body.contains("href=\"/ui/customers/ken\"")
            || body.contains("href=\"&#x2f;ui&#x2f;customers&#x2f;ken\""),
        "the refusal links back to the customer's page: {body}"
    );

    // The same follow-up confirmed again: with its own key (a double click) nothing more
    // starts; from a second preview (another key: a second tab, Back and resubmit) it is
    // refused, naming the one that runs. Different details start another.
    let confirm = |key: &'static str, case: &'static str| {
        [
            ("csrf", csrf.as_str()),
            ("scenario", "apology"),
            ("key", key),
            ("var.case_id", case),
        ]
    };
    let path = "/ui/customers/ken/followup";
    let (status, h, _) = request(&addr, "POST", path, cookie, &confirm("ui-a", "x")).await;
    assert_eq!(status, 303);
    assert!(h["location"][0].contains("flash=followup.started"), "{h:?}");
    let (_, h, _) = request(&addr, "POST", path, cookie, &confirm("ui-a", "x")).await;
    assert!(h["location"][0].contains("flash=followup.already"), "{h:?}");
    let (status, _, body) = request(&addr, "POST", path, cookie, &confirm("ui-b", "x")).await;
    assert_eq!(status, 422);
    assert!(body.contains("already running"), "{body}");
    let active = |rows: Vec<rebuy::store::EnrollmentView>| {
        rows.iter().filter(|e| e.state == "active").count()
    };
    assert_eq!(active(store.customer_enrollments("ken").await.unwrap()), 1);
    let (status, _, _) = request(&addr, "POST", path, cookie, &confirm("ui-c", "y")).await;
    assert_eq!(status, 303);
    assert_eq!(active(store.customer_enrollments("ken").await.unwrap()), 2);
    let long = "x".repeat(201);
    let too_long = [("csrf", csrf.as_str()), ("reason", long.as_str())];
    let (status, _, body) = request(&addr, "POST", &action, cookie, &too_long).await;
    assert_eq!(status, 422);
    assert!(body.contains("at most 200 characters"), "{body}");

    // The flash shows the numbers the form put in its link; a link with words of its own, or a
    // time that is not one, shows no message at all.
    let flash = |page: &str| {
        page.split("class=\"flash\" role=\"status\"")
            .nth(1)
            .map(|s| s.chars().take(200).collect::<String>())
    };
    let shown = format!("/ui/customers/ken?flash=followup.ended&id={enrollment}");
    let (_, _, page) = request(&addr, "GET", &shown, cookie, &[]).await;
    assert!(
        flash(&page).is_some_and(|f| f.contains(&format!("#{enrollment} is ended"))),
        "{page}"
    );
    let started =
        "/ui/customers/ken?flash=followup.started&id=7&due=2026-12-07T10%3A00%3A00%2B00%3A00";
    let (_, _, page) = request(&addr, "GET", started, cookie, &[]).await;
    assert!(
        flash(&page).is_some_and(|f| f.contains("2026-12-07 19:00 JST")),
        "the due time in the shop's zone: {page}"
    );
    for forged in [
        "/ui/customers/ken?flash=followup.ended&id=7%20Call%20%2B81-3-0000",
        "/ui/customers/ken?flash=followup.started&id=7&due=now%2C%20call%20us",
        "/ui/status?flash=message.retried&id=-1",
    ] {
        let (_, _, page) = request(&addr, "GET", forged, cookie, &[]).await;
        assert_eq!(flash(&page), None, "{forged}: {page}");
    }

    // The digest's mail to the team is listed on the status page with its state.
    let id = store
        .claim_team_mail("weekly", 1, "team@shop.example", "Shop: LTV targets", 1)
        .await
        .unwrap()
        .unwrap();
    store
        .finish_team_mail(id, "failed", Some("permanent: 550 no such user"), 2)
        .await
        .unwrap();
    let (_, _, page) = request(&addr, "GET", "/ui/status", cookie, &[]).await;
    let team = page.split("id=\"team-mail\"").nth(1).unwrap_or_default();
    assert!(
        team.contains("team@shop.example")
            && team.contains("Failed")
            && team.contains("550 no such user"),
        "{page}"
    );

    // Signing out ends the session: its cookie opens nothing any more.
    let (status, _, _) = request(
        &addr,
        "POST",
        "/ui/logout",
        &support.0,
        &[("csrf", &support.1)],
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, _) = request(&addr, "GET", "/ui/status", &support.0, &[]).await;
    assert_eq!(status, 303, "back to the sign-in form");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_a_message_was_not_sent_and_what_is_missing_are_said_in_japanese() {
    let (shop, server) = shop().await;
    let addr = server.addr.clone();
    let store = shop.store().await;
    let mut rin = customer("rin", "rin@example.jp", "Rin", "Asia/Tokyo", "{}");
    rin.marketing_consent = Some(false);
    store.upsert_customers(&[rin], 0).await.unwrap();
    let engine = shop.app().engine(&store).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    engine
        .trigger_manual("news", "rin", Default::default(), None, now)
        .await
        .unwrap();
    assert_eq!(engine.tick(now).await.unwrap().skipped, 1);
    let message = store.customer_messages("rin").await.unwrap()[0].clone();
    assert_eq!(
        message.last_error.as_deref(),
        Some("not queued: no marketing consent")
    );
    let path = format!("/ui/messages/{}", message.id);

    // In English the page shows the reason as the CLI and the API do.
    let (cookie, csrf) = sign_in(&addr, "sato").await;
    let (_, _, page) = request(&addr, "GET", &path, &cookie, &[]).await;
    assert!(page.contains("not queued: no marketing consent"), "{page}");

    // In Japanese, in Japanese words, on the message, the customer and the status pages.
    let (status, _, _) = request(
        &addr,
        "POST",
        "/ui/settings/lang",
        &cookie,
        &[("csrf", &csrf), ("lang", "ja")],
    )
    .await;
    assert_eq!(status, 303);
    for page_path in [path.as_str(), "/ui/customers/rin"] {
        let (status, _, page) = request(&addr, "GET", page_path, &cookie, &[]).await;
        assert_eq!(status, 200, "{page_path}");
        assert!(
            page.contains("販促メールへの同意がありません"),
            "{page_path}: {page}"
        );
        assert!(
            !page.contains("no marketing consent"),
            "{page_path}: {page}"
        );
    }

    // What is not there is said in Japanese too.
    for (missing, words) in [
        ("/ui/customers/nobody", "「nobody」の顧客はいません"),
        ("/ui/messages/abc", "メッセージ番号は整数です"),
        ("/ui/messages/99999", "メッセージ #99999 はありません"),
        ("/ui/customers/rin/followup?scenario=nope", "「nope」"),
    ] {
        let (status, _, page) = request(&addr, "GET", missing, &cookie, &[]).await;
        assert_eq!(status, 404, "{missing}");
        assert!(page.contains(words), "{missing}: {page}");
    }
    // An address under /ui that is no page (a trailing slash) is a page, not the API's JSON;
    // the address a preview leaves in the browser, opened again, goes to the customer.
    let (status, _, page) = request(&addr, "GET", "/ui/customers/rin/", &cookie, &[]).await;
    assert_eq!(status, 404);
    assert!(page.contains("このアドレスのページはありません"), "{page}");
    let (status, h, _) = request(
        &addr,
        "GET",
        "/ui/customers/rin/followup/preview",
        &cookie,
        &[],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(h["location"][0], "/ui/customers/rin");

    // Started for a customer whose mail will not go: the page says so, not a send time.
    let start = [
        ("csrf", csrf.as_str()),
        ("scenario", "news"),
        ("key", "ui-news-rin-2"),
    ];
    let (status, h, _) =
        request(&addr, "POST", "/ui/customers/rin/followup", &cookie, &start).await;
    assert_eq!(status, 303);
    assert!(
        h["location"][0].contains("flash=followup.started_no_consent"),
        "{:?}",
        h["location"]
    );
    let (_, _, page) = request(&addr, "GET", &h["location"][0], &cookie, &[]).await;
    assert!(page.contains("メールは送られません"), "{page}");

    // Removing a suppression that is not there says so.
    let undo = [("csrf", csrf.as_str()), ("reason", "電話で確認")];
    let (status, h, _) = request(
        &addr,
        "POST",
        "/ui/customers/rin/unsuppress",
        &cookie,
        &undo,
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, page) = request(&addr, "GET", &h["location"][0], &cookie, &[]).await;
    assert!(
        page.contains("解除する配信停止はありませんでした"),
        "{page}"
    );

    // A queued message cancelled: why, and who, in words; a double click's second request
    // finds it cancelled already and says so calmly.
    let ken = customer("ken", "ken@example.jp", "Ken", "Asia/Tokyo", "{}");
    store.upsert_customers(&[ken], 0).await.unwrap();
    engine
        .trigger_manual("check-in", "ken", Default::default(), None, now)
        .await
        .unwrap();
    assert_eq!(engine.tick(now).await.unwrap().queued, 1);
    let queued = store.customer_messages("ken").await.unwrap()[0].id;
    let action = format!("/ui/messages/{queued}/cancel");
    let form = [("csrf", csrf.as_str()), ("back", "/ui/customers/ken")];
    let (status, h, _) = request(&addr, "POST", &action, &cookie, &form).await;
    assert_eq!(status, 303);
    assert!(h["location"][0].contains("flash=message.cancelled"));
    let row = store.customer_messages("ken").await.unwrap()[0].clone();
    assert_eq!(row.status, "cancelled");
    assert_eq!(
        row.last_error.as_deref(),
        Some("cancelled by support (sato)")
    );
    let (status, h, _) = request(&addr, "POST", &action, &cookie, &form).await;
    assert_eq!(status, 303, "a second cancel is no error");
    assert!(
        h["location"][0].contains("flash=message.already_cancelled"),
        "{:?}",
        h["location"]
    );
    let (_, _, page) = request(&addr, "GET", &h["location"][0], &cookie, &[]).await;
    assert!(page.contains("すでに取り消されています"), "{page}");
    assert!(page.contains("サポートが取り消しました(sato)"), "{page}");
    let audit = store.audit_log(100).await.unwrap();
    let cancels = audit
        .iter()
        .filter(|a| a.action == "message_cancelled")
        .count();
    assert_eq!(cancels, 1, "one cancel, one audit entry");

    // Ken's follow-up runs on (its second step waits). Stopping his mail and letting it go
    // again says that the follow-up will send its next step, so that support can end it.
    let why = [("csrf", csrf.as_str()), ("reason", "電話で依頼")];
    let (status, _, _) = request(&addr, "POST", "/ui/customers/ken/suppress", &cookie, &why).await;
    assert_eq!(status, 303);
    let (status, h, _) =
        request(&addr, "POST", "/ui/customers/ken/unsuppress", &cookie, &why).await;
    assert_eq!(status, 303);
    assert_eq!(
        h["location"][0],
        "/ui/customers/ken?flash=suppress.undone_running&n=1"
    );
    let (_, _, page) = request(&addr, "GET", &h["location"][0], &cookie, &[]).await;
    assert!(page.contains("進行中のフォローが 1 件あり"), "{page}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketer_starts_a_back_test_watches_it_and_reads_its_result() {
    let (shop, server) = shop().await;
    let addr = server.addr.clone();
    let store = shop.store().await;
    add_orders(&store, &[order("o1", "aya", "2026-11-10T03:00:00Z", 3980)]).await;
    store.close().await;
    let (cookie, csrf) = sign_in(&addr, "mori").await;

    // A period that is not one is answered with what is wrong, and nothing starts.
    let (status, _, body) = request(
        &addr,
        "POST",
        "/ui/backtests",
        &cookie,
        &[
            ("csrf", &csrf),
            ("from", "2026-11-30"),
            ("to", "2026-11-01"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("before it starts"), "{body}");

    let (status, h, _) = request(
        &addr,
        "POST",
        "/ui/backtests",
        &cookie,
        &[
            ("csrf", &csrf),
            ("from", "2026-11-01"),
            ("to", "2026-11-30"),
            ("scenario", "apology"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(h["location"][0], "/ui/backtests/1");
    let mut page = String::new();
    for _ in 0..600 {
        let (status, _, body) = request(&addr, "GET", "/ui/backtests/1", &cookie, &[]).await;
        assert_eq!(status, 200);
        page = body;
        if !page.contains("data-state=\"running\"") {
            break;
        }
        assert!(
            page.contains("http-equiv=\"refresh\""),
            "it reloads while it runs"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("data-state=\"finished\""), "{page}");
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "it stops reloading"
    );
    // What `rebuy simulate` prints: its summary line and its tables.
    assert!(
        page.contains("simulated 2026-11-01 to 2026-11-30"),
        "{page}"
    );
    assert!(
        page.contains("What each scenario would have sent"),
        "{page}"
    );
    let (_, _, list) = request(&addr, "GET", "/ui/backtests", &cookie, &[]).await;
    assert!(list.contains("2026-11-01 – 2026-11-30"), "{list}");
    assert!(list.contains("Finished"), "{list}");
    // Beside the shop's file, or for a PostgreSQL shop beside the config, named after it.
    let own = if on_postgres() {
        let name = shop.config.database.rsplit('/').next().unwrap();
        shop.file(&format!("rebuy-{name}.backtest.db"))
    } else {
        shop.file("rebuy.backtest.db")
    };
    assert!(own.exists(), "the back-test has a database of its own");
    assert!(
        !own.with_extension("source.db").exists(),
        "a PostgreSQL shop's copy is gone with the back-test"
    );
    let store = shop.store().await;
    let audit = store.audit_log(100).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "backtest_started" && a.user_name == "mori" && a.detail == "apology"));
    store.close().await;
    let (status, _, _) = request(&addr, "GET", "/ui/backtests/99", &cookie, &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_refused_politely_limited_and_passwords_are_only_hashed() {
    let (shop, server) = shop().await;
    let addr = server.addr.clone();
    // A short password and a taken name are refused by the command.
    let out = add_user(shop.path(), "ken", "support", "short");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 10"));
    let out = add_user(shop.path(), "sato", "admin", PASSWORD);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    let store = shop.store().await;
    for u in store.users().await.unwrap() {
        assert!(u.password_hash.starts_with("$argon2id$"), "{}", u.name);
        assert!(!u.password_hash.contains(PASSWORD));
    }
    assert_eq!(store.user("sato").await.unwrap().unwrap().role, "support");

    // The sign-in form needs its own token.
    let (status, _, _) = request(
        &addr,
        "POST",
        "/ui/login",
        "",
        &[("name", "sato"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 403);
    // Wrong passwords: 401 each, then 429 from the sixth try in a minute, even with the right one.
    let (_, h, body) = request(&addr, "GET", "/ui/login", "", &[]).await;
    let login = cookie_of(&h, "rebuy_login").unwrap();
    let token = csrf_in(&body);
    for _ in 0..5 {
        let (status, _, body) = request(
            &addr,
            "POST",
            "/ui/login",
            &login,
            &[
                ("csrf", &token),
                ("name", "mori"),
                ("password", "wrong password!"),
            ],
        )
        .await;
        assert_eq!(status, 401);
        assert!(body.contains("Wrong user name or password"));
    }
    let (status, _, body) = request(
        &addr,
        "POST",
        "/ui/login",
        &login,
        &[("csrf", &token), ("name", "mori"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 429);
    assert!(body.contains("Too many sign-in attempts"));
    // Another user is not held up by it.
    sign_in(&addr, "sato").await;
    // Read on the store opened before the requests: its connections see what the server
    // committed since (they did not, for seconds, when a file descriptor of the database was
    // opened and closed beside SQLite's and dropped this process's locks on it).
    let log = store.audit_log(100).await.unwrap();
    let refused = log
        .iter()
        .filter(|a| a.action == "sign_in_refused" && a.target == "mori")
        .count();
    assert_eq!(refused, 6, "{log:#?}");
    store.close().await;
}

#[test]
fn check_reads_the_targets_file_like_a_scenario() {
    let bad = "targets:\n  - id: up\n    metric: ltv12m\n    segment: vips\n    baseline: { from: 2026-01-01, to: 2026-03-31 }\n    goal: +20%\n    deadline: 2026-12-31\n";
    let shop = TestShop::new(
        &[("apology.yaml", APOLOGY), ("targets.yaml", bad)],
        &[("t.html", "<p>sorry</p>"), ("t.txt", "sorry")],
        None,
    );
    write_config(&shop);
    let out = rebuy_in(shop.path()).arg("check").output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("targets.yaml:3:") && said.contains("unknown metric 'ltv12m'"),
        "{said}"
    );
    assert!(said.contains("did you mean 'ltv_12m'"), "{said}");
    std::fs::write(
        shop.file("scenarios/targets.yaml"),
        bad.replace("metric: ltv12m", "metric: ltv_12m"),
    )
    .unwrap();
    let out = rebuy_in(shop.path()).arg("check").output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("no segment 'vips'"), "{said}");
    std::fs::write(
        shop.file("scenarios/targets.yaml"),
        bad.replace("metric: ltv12m", "metric: ltv_12m")
            .replace("vips", "loyal"),
    )
    .unwrap();
    let out = rebuy_in(shop.path()).arg("check").output().unwrap();
    assert!(
        out.status.success(),
        "an RFM segment is a segment: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
