//! `rebuy db copy`: a SQLite shop with every kind of record is copied into an empty database
//! (PostgreSQL on the PostgreSQL pass, a new SQLite file otherwise), compared table by table
//! and row by row, refused when the target is not empty, and usable afterwards.

use crate::helpers::*;
use rebuy::store::Store;

const FIRST: &str = r#"
id: first-purchase
trigger: first_order
steps:
  - { id: thanks, send: { template: t, subject: "ありがとう" } }
  - { id: later, wait: 25d, send: { template: t, subject: "later" } }
"#;

fn run(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = rebuy_in(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rebuy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn a_sqlite_shop_is_copied_whole_row_by_row_and_the_copy_works() {
    let shop = TestShop::new(
        &[("first.yaml", FIRST)],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        None,
    );
    let dir = shop.path();
    let target = if on_postgres() {
        fresh_postgres_database()
    } else {
        dir.join("copy.db").display().to_string()
    };
    std::fs::write(
        dir.join("rebuy.yaml"),
        "database: shop.db\nscenarios_dir: scenarios\ntemplates_dir: templates\n\
         shop: { name: はだまる, from: \"はだまる <hello@hadamaru.example>\", address: 東京都, contact: support@hadamaru.example }\n\
         unsubscribe: { base_url: https://hadamaru.example/u }\n\
         delivery: { transport: file, file_dir: outbox }\n\
         marketing: { cap: null, quiet_hours: null }\n",
    )
    .unwrap();
    let at = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    std::fs::write(
        dir.join("customers.csv"),
        "id,email,name,marketing_consent,plan\nC1,c1@example.jp,顧客1,yes,gold\nC2,c2@example.jp,\"Ann \"\"O'Neil\"\"\",no,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("orders.csv"),
        format!("order_id,customer_id,placed_at,currency,total\nO1,C1,{at},JPY,3980\nO2,C2,{at},USD,1250\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("events.jsonl"),
        format!("{{\"customer\": \"C1\", \"name\": \"cart_added\", \"at\": \"{at}\", \"properties\": {{\"skus\": [\"A\"], \"value\": 3980}}}}\n"),
    )
    .unwrap();
    run(
        dir,
        &["import", "customers", "customers.csv", "--no-progress"],
    );
    run(dir, &["import", "orders", "orders.csv", "--no-progress"]);
    run(dir, &["import", "events", "events.jsonl", "--no-progress"]);
    run(dir, &["run", "--once"]);
    run(dir, &["refresh", "--no-progress"]);
    run(
        dir,
        &[
            "suppress",
            "add",
            "gone@example.jp",
            "--reason",
            "asked by phone",
        ],
    );
    run(dir, &["token", "create", "--scope", "read", "--name", "bi"]);
    assert!(add_user(dir, "aki", "support", "a long enough password")
        .status
        .success());

    let out = run(dir, &["db", "copy", "--to", &target, "--format", "json"]);
    let copied: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let tables: Vec<&str> = copied
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    for t in [
        "customers",
        "orders",
        "events",
        "enrollments",
        "outbox",
        "suppressions",
        "settings",
        "api_tokens",
        "users",
    ] {
        assert!(tables.contains(&t), "{t} copied: {tables:?}");
    }
    for t in &copied {
        assert_eq!(t["source_rows"], t["target_rows"], "{t}");
        assert_eq!(t["source_checksum"], t["target_checksum"], "{t}");
    }

    // Row by row, every table.
    let source = Store::open(&dir.join("shop.db").display().to_string())
        .await
        .unwrap();
    let copy = Store::open(&target).await.unwrap();
    let mut rows = 0;
    for t in &tables {
        let (a, b) = (
            source.rows_of(t).await.unwrap(),
            copy.rows_of(t).await.unwrap(),
        );
        assert_eq!(a, b, "table {t}");
        rows += a.len();
    }
    for (t, at_least) in [
        ("customers", 2),
        ("orders", 2),
        ("events", 1),
        ("outbox", 1),
        ("customer_metrics", 2),
    ] {
        assert!(copy.rows_of(t).await.unwrap().len() >= at_least, "{t}");
    }
    assert!(rows > 10);

    // A second copy into the same database is refused, and changes nothing.
    let again = rebuy_in(dir)
        .args(["db", "copy", "--to", &target])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds data"));
    assert_eq!(copy.rows_of("customers").await.unwrap().len(), 2);
    source.close().await;

    // The copy is a shop: a new customer's first order is mailed from it (new rows get new ids).
    let before = copy.outbox_rows().await.unwrap().len();
    copy.close().await;
    std::fs::write(
        dir.join("rebuy.yaml"),
        std::fs::read_to_string(dir.join("rebuy.yaml"))
            .unwrap()
            .replace("database: shop.db", &format!("database: \"{target}\"")),
    )
    .unwrap();
    std::fs::write(
        dir.join("more.csv"),
        format!("order_id,customer_id,placed_at,currency,total,email\nO3,C3,{at},JPY,990,c3@example.jp\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("c3.csv"),
        "id,email,name,marketing_consent\nC3,c3@example.jp,C3,yes\n",
    )
    .unwrap();
    run(dir, &["import", "customers", "c3.csv", "--no-progress"]);
    run(dir, &["import", "orders", "more.csv", "--no-progress"]);
    run(dir, &["run", "--once"]);
    let copy = Store::open(&target).await.unwrap();
    let outbox = copy.outbox_rows().await.unwrap();
    assert_eq!(outbox.len(), before + 1);
    let ids: std::collections::BTreeSet<i64> = outbox.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), outbox.len());
    copy.close().await;
}

/// An order whose customer is not stored (SQLite checks foreign keys only on connections that
/// ask, so a source file can hold one; PostgreSQL has no such key on orders) is refused by name
/// and count, the target keeps nothing, and the copy goes through once the row is mended.
#[tokio::test]
async fn a_source_order_without_its_customer_is_refused_and_nothing_is_copied() {
    let shop = TestShop::new(&[], &[], None);
    let dir = shop.path();
    let target = if on_postgres() {
        fresh_postgres_database()
    } else {
        dir.join("copy.db").display().to_string()
    };
    std::fs::write(dir.join("rebuy.yaml"), "database: shop.db\n").unwrap();
    std::fs::write(dir.join("c.csv"), "id,email\nC1,c1@example.jp\n").unwrap();
    std::fs::write(
        dir.join("o.csv"),
        "order_id,customer_id,placed_at,currency,total\nO1,C1,2026-11-01T10:00:00+09:00,JPY,3980\n",
    )
    .unwrap();
    run(dir, &["import", "customers", "c.csv", "--no-progress"]);
    run(dir, &["import", "orders", "o.csv", "--no-progress"]);
    // Written the way a hand edit with the sqlite3 shell would: foreign keys off.
    let file = rusqlite::Connection::open(dir.join("shop.db")).unwrap();
    file.execute_batch(
        "PRAGMA foreign_keys = OFF; INSERT INTO orders (id, customer_id, placed_at, total, currency) \
         VALUES ('O2', 'NOBODY', 0, 100, 'JPY'), ('O3', 'NOBODY', 0, 100, 'JPY');",
    )
    .unwrap();

    let refused = rebuy_in(dir)
        .args(["db", "copy", "--to", &target])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("2 rows of orders") && stderr.contains("belong to no customer"),
        "{stderr}"
    );
    let copy = Store::open(&target).await.unwrap();
    assert!(copy.rows_of("orders").await.unwrap().is_empty());
    assert!(copy.rows_of("customers").await.unwrap().is_empty());
    copy.close().await;

    file.execute("DELETE FROM orders WHERE customer_id = 'NOBODY'", [])
        .unwrap();
    drop(file);
    run(dir, &["db", "copy", "--to", &target]);
    let copy = Store::open(&target).await.unwrap();
    assert_eq!(copy.rows_of("orders").await.unwrap().len(), 1);
    copy.close().await;
}
