//! Imports: CSV and JSON Lines, upserts by the shop's ids, bad rows reported by line.

use crate::helpers::*;
use chrono::{DateTime, Utc};
use rebuy::import::{import_customers, import_events, import_orders, ImportOptions, ImportReport};
use rebuy::store::Store;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn opts() -> ImportOptions {
    ImportOptions {
        format: None,
        default_timezone: chrono_tz::Asia::Tokyo,
        progress: false,
        bulk: true,
        move_orders: false,
    }
}

/// The clock of these imports: past every order the tests import.
fn clock() -> chrono::DateTime<chrono::Utc> {
    utc("2030-01-01T00:00:00Z")
}

fn counts(r: &ImportReport) -> (u64, u64, u64, u64, usize) {
    (
        r.records,
        r.inserted,
        r.updated,
        r.unchanged,
        r.rejected.len(),
    )
}

async fn shop_with(kind: &str) -> (TestShop, rebuy::store::Store) {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let now = utc("2026-11-01T00:00:00Z");
    let c = import_customers(&store, &fixture(&format!("customers.{kind}")), &opts(), now)
        .await
        .unwrap();
    assert_eq!(counts(&c), (3, 3, 0, 0, 0), "{c:?}");
    let o = import_orders(
        &store,
        &fixture(&format!("orders.{kind}")),
        &opts(),
        clock(),
    )
    .await
    .unwrap();
    assert_eq!(counts(&o), (3, 3, 0, 0, 0), "{o:?}");
    (shop, store)
}

#[tokio::test]
async fn csv_and_json_lines_give_the_same_shop() {
    let (_a, csv) = shop_with("csv").await;
    let (_b, jsonl) = shop_with("jsonl").await;
    for id in ["O1", "O2", "O3"] {
        assert_eq!(
            csv.order(id).await.unwrap(),
            jsonl.order(id).await.unwrap(),
            "order {id}"
        );
    }
    for id in ["C1", "C2", "C3"] {
        let (a, b) = (
            csv.find_customer(id).await.unwrap(),
            jsonl.find_customer(id).await.unwrap(),
        );
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap(),
            "customer {id}"
        );
    }
}

#[tokio::test]
async fn orders_group_their_item_rows_and_customers_get_their_aggregates() {
    let (_shop, store) = shop_with("csv").await;
    let o1 = store.order("O1").await.unwrap().unwrap();
    assert_eq!(
        o1.total,
        3980 + 2 * 2980,
        "total computed from the items when the column is empty"
    );
    let items: Vec<serde_json::Value> = serde_json::from_str(&o1.items).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["category"], "cleansing");
    assert_eq!(o1.placed_at, utc("2026-10-01T01:15:00Z").timestamp_millis());
    let o2 = store.order("O2").await.unwrap().unwrap();
    assert_eq!(
        o2.placed_at,
        utc("2026-10-02T00:00:00Z").timestamp_millis(),
        "a local time is in the default zone (Tokyo)"
    );

    let capped = store.orders_after(0, 10, Some(1)).await.unwrap();
    let first: Vec<bool> = capped.iter().map(|o| o.nth == 1).collect();
    assert_eq!(
        first,
        [true, true, false],
        "a capped count still tells a first order from a later one"
    );
    let seen = store.orders_after(0, 10, None).await.unwrap();
    let nth: Vec<(&str, i64)> = seen.iter().map(|o| (o.id.as_str(), o.nth)).collect();
    assert_eq!(
        nth,
        [("O1", 1), ("O2", 1), ("O3", 2)],
        "each order's position among its customer's orders"
    );

    let c1 = store.find_customer("C1").await.unwrap();
    assert_eq!(
        (c1.orders_count, c1.total_spent, c1.currency.as_deref()),
        (2, 3980 + 5960 + 3980, Some("JPY"))
    );
    let attrs: serde_json::Value = serde_json::from_str(&c1.attributes).unwrap();
    assert_eq!(
        attrs,
        serde_json::json!({"source": "web", "skin_type": "dry"})
    );
    assert_eq!(
        store
            .find_customer("aya@example.jp")
            .await
            .unwrap()
            .timezone,
        None
    );
}

#[tokio::test]
async fn importing_the_same_files_twice_changes_nothing() {
    let (_shop, store) = shop_with("csv").await;
    let before = store.find_customer("C1").await.unwrap();
    let later = utc("2026-11-02T00:00:00Z");
    let c = import_customers(&store, &fixture("customers.csv"), &opts(), later)
        .await
        .unwrap();
    assert_eq!(counts(&c), (3, 0, 0, 3, 0));
    let o = import_orders(&store, &fixture("orders.csv"), &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&o), (3, 0, 0, 3, 0));
    assert_eq!(
        serde_json::to_value(store.find_customer("C1").await.unwrap()).unwrap(),
        serde_json::to_value(before).unwrap()
    );
    assert_eq!(store.count_orders().await.unwrap(), 3);
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_the_good_ones_still_land() {
    let (_shop, store) = shop_with("csv").await;
    let c = import_customers(
        &store,
        &fixture("bad_customers.csv"),
        &opts(),
        utc("2026-11-02T00:00:00Z"),
    )
    .await
    .unwrap();
    let lines: Vec<(u64, &str)> = c
        .rejected
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0].0, 3);
    assert!(
        lines[0]
            .1
            .contains("'not-an-address' is not a valid e-mail address"),
        "{lines:?}"
    );
    assert!(
        lines[1].0 == 4 && lines[1].1.contains("unknown time zone 'Asia/Tokio'"),
        "{lines:?}"
    );
    assert!(
        lines[2].0 == 5 && lines[2].1.contains("missing 'id'"),
        "{lines:?}"
    );
    assert!(
        lines[3].0 == 6 && lines[3].1.contains("5 fields where the header has 4"),
        "{lines:?}"
    );
    assert_eq!(
        (c.inserted, c.unchanged),
        (1, 1),
        "C8 inserted, C1 unchanged"
    );
    assert_eq!(
        store.find_customer("C8").await.unwrap().timezone.as_deref(),
        Some("Europe/London")
    );

    let o = import_orders(&store, &fixture("bad_orders.csv"), &opts(), clock())
        .await
        .unwrap();
    let lines: Vec<(u64, &str)> = o
        .rejected
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].0 == 3 && lines[0].1.contains("unknown customer 'NOBODY'"),
        "{lines:?}"
    );
    assert!(
        lines[1].0 == 4 && lines[1].1.contains("'yesterday' is not a date"),
        "{lines:?}"
    );
    assert!(
        lines[2].0 == 5 && lines[2].1.contains("integer in minor units"),
        "{lines:?}"
    );
    assert!(
        lines[3].0 == 6 && lines[3].1.contains("'quantity'"),
        "{lines:?}"
    );
    assert_eq!(o.inserted, 2, "O10 and O15 land");
    assert_eq!(store.count_orders().await.unwrap(), 5);
    assert_eq!(store.find_customer("C1").await.unwrap().orders_count, 3);
}

#[tokio::test]
async fn an_event_id_given_again_for_another_event_is_rejected_not_counted_unchanged() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("events.jsonl");
    let event = |id: &str, name: &str, customer: &str| {
        format!(
            r#"{{"id": "{id}", "customer": "{customer}", "name": "{name}", "at": "2026-11-02T10:00:00+09:00", "properties": {{"sku": "A"}}}}"#
        )
    };
    let lines = [
        event("e1", "cart_added", "C1"),
        event("e1", "cart_added", "C1"),     // sent twice: one event
        event("e1", "product_viewed", "C1"), // the same id for another event in the file
        event("e2", "cart_added", "C2"),
        r#"{"customer": "C1", "customer_id": "C2", "name": "x", "at": "2026-11-02"}"#.to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let r = import_events(&store, &file, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (5, 2, 0, 1, 2), "{r:?}");
    assert_eq!(r.rejected[0].line, 3, "{r:?}");
    assert!(
        r.rejected[0].message.starts_with("event id 'e1' is already stored for another event ('cart_added' of customer 'C1' at 2026-11-02 10:00 +09:00)"),
        "{r:?}"
    );
    assert_eq!(r.rejected[1].line, 5, "{r:?}");
    assert!(
        r.rejected[1]
            .message
            .contains("'customer' is 'C1' and 'customer_id' is 'C2'"),
        "{r:?}"
    );
    // Again in a later file: the stored event is kept as it was, the other one rejected again.
    std::fs::write(&file, format!("{}\n{}", lines[2], lines[0])).unwrap();
    let r = import_events(&store, &file, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (2, 0, 0, 1, 1), "{r:?}");
    let kept = store.customer_events("C1", 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, "cart_added");
}

/// Concurrent API requests are written together: one whose event id names another event
/// stores nothing, the others are stored in full (and a batch of many such requests costs two
/// passes, not one per conflict).
#[tokio::test]
async fn of_requests_written_together_only_the_one_with_a_conflicting_event_id_is_refused() {
    let (_shop, store) = shop_with("csv").await;
    let event = |id: &str, name: &str| rebuy::store::NewEvent {
        id: id.into(),
        customer_id: "C1".into(),
        name: name.into(),
        at: 1_700_000_000_000,
        properties: "{}".into(),
    };
    store
        .insert_events(&[event("e1", "cart_added")], 0)
        .await
        .unwrap();
    let first = [event("e2", "cart_added")];
    let taken = [event("e3", "cart_added"), event("e1", "product_viewed")];
    let third = [event("e4", "cart_added"), event("e1", "cart_added")];
    let out = store
        .insert_event_groups(&[&first, &taken, &third, &taken], 0)
        .await
        .unwrap();
    let counts: Vec<(u64, usize)> = out
        .iter()
        .map(|o| (o.inserted, o.conflicts.len()))
        .collect();
    assert_eq!(counts, [(1, 0), (0, 1), (1, 0), (0, 1)]);
    assert_eq!(out[1].conflicts[0].0, 1);
    assert_eq!(out[1].conflicts[0].1.name, "cart_added");
    let ids: Vec<String> = store
        .customer_events("C1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        ids,
        ["e1", "e2", "e4"],
        "e3 came with the conflict and is not stored"
    );
}

#[tokio::test]
async fn a_csv_header_naming_a_column_twice_is_refused_before_any_row() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("twice.csv");
    std::fs::write(
        &file,
        "id,email,name,email\nC1,a@x.example,Aya,b@x.example\n",
    )
    .unwrap();
    let e = import_customers(&store, &file, &opts(), clock())
        .await
        .unwrap_err();
    assert!(
        e.to_string().ends_with("the CSV header names 'email' twice (columns 2 and 4); keep one of them, or rename the other"),
        "{e}"
    );
    assert_eq!(
        store.find_customer("C1").await.unwrap().email,
        "hanako@example.jp"
    );
}

#[tokio::test]
async fn a_changed_row_is_updated_and_a_bad_one_does_not_harm_what_is_stored() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("update.csv");
    std::fs::write(
        &file,
        "id,email,name\nC1,hanako@new.example.jp,山田 花子\nC2,broken,Ken Smith\n",
    )
    .unwrap();
    let r = import_customers(&store, &file, &opts(), utc("2026-11-03T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((r.updated, r.rejected.len()), (1, 1));
    assert_eq!(
        store.find_customer("C1").await.unwrap().email,
        "hanako@new.example.jp"
    );
    assert_eq!(
        store.find_customer("C2").await.unwrap().email,
        "ken@example.com"
    );
}

#[tokio::test]
async fn an_order_moved_to_another_customer_updates_both_and_new_ones_land_beside_it() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("more-orders.csv");
    // O1 unchanged, O3 moves from C1 to C3 with a new total, O4 is new for C2.
    std::fs::write(
        &file,
        "order_id,customer_id,placed_at,currency,total,sku,name,category,quantity,unit_price\n\
         O1,C1,2026-10-01T10:15:00+09:00,JPY,,LO-01,しっとり化粧水,lotion,1,3980\n\
         O1,C1,2026-10-01T10:15:00+09:00,JPY,,CL-01,ミルククレンジング,cleansing,2,2980\n\
         O3,C3,2026-10-20T21:00:00+09:00,JPY,5000,LO-01,しっとり化粧水,lotion,1,5000\n\
         O4,C2,2026-10-25 12:00,USD,1200,SU-01,UV milk,sunscreen,1,1200\n",
    )
    .unwrap();
    // By default an order does not move: O3's row is rejected with its line, the rest is
    // written.
    let r = import_orders(&store, &file, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (3, 1, 0, 1, 1), "{r:?}");
    assert_eq!(r.rejected[0].line, 4);
    assert!(
        r.rejected[0]
            .message
            .contains("order 'O3' is stored for customer 'C1', not 'C3'")
            && r.rejected[0].message.contains("--move-orders"),
        "{r:?}"
    );
    assert_eq!(store.order("O3").await.unwrap().unwrap().customer_id, "C1");
    assert_eq!(store.find_customer("C1").await.unwrap().orders_count, 2);
    // Asked to (a file that corrects whose order it is), it moves.
    let moving = ImportOptions {
        move_orders: true,
        ..opts()
    };
    let r = import_orders(&store, &file, &moving, clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (3, 0, 1, 2, 0), "{r:?}");
    assert_eq!(r.moved_orders, 1);
    let c1 = store.find_customer("C1").await.unwrap();
    assert_eq!((c1.orders_count, c1.total_spent), (1, 3980 + 2 * 2980));
    let c3 = store.find_customer("C3").await.unwrap();
    assert_eq!((c3.orders_count, c3.total_spent), (1, 5000));
    let c2 = store.find_customer("C2").await.unwrap();
    assert_eq!((c2.orders_count, c2.total_spent), (2, 4500 + 1200));
    assert_eq!(store.count_orders().await.unwrap(), 4);
}

#[tokio::test]
async fn of_two_rows_with_one_order_id_in_one_write_the_later_wins() {
    let (_shop, store) = shop_with("csv").await;
    let first = order("O9", "C3", "2026-10-05T00:00:00Z", 1000);
    let later = order("O9", "C3", "2026-10-05T00:00:00Z", 2000);
    let outcome = store.upsert_orders(&[first, later]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.updated), (1, 0));
    store
        .refresh_order_aggregates(&outcome.touched)
        .await
        .unwrap();
    assert_eq!(store.order("O9").await.unwrap().unwrap().total, 2000);
    assert_eq!(store.find_customer("C3").await.unwrap().total_spent, 2000);
}

#[tokio::test]
async fn marketing_consent_is_imported_kept_when_absent_and_a_bad_value_is_located() {
    for kind in ["csv", "jsonl"] {
        let (shop, store) = shop_with(kind).await;
        let c1 = store.find_customer("C1").await.unwrap();
        assert_eq!(
            (c1.marketing_consent, c1.consent_at),
            (
                Some(1),
                Some(utc("2026-09-01T01:00:00Z").timestamp_millis())
            ),
            "{kind}"
        );
        assert_eq!(
            store.find_customer("C2").await.unwrap().marketing_consent,
            Some(0)
        );
        assert_eq!(
            store.find_customer("C3").await.unwrap().marketing_consent,
            None
        );

        // A later file without the column changes nothing; withdrawing is one cell.
        let file = shop.file("later.csv");
        std::fs::write(
            &file,
            "id,email,marketing_consent\nC1,hanako@example.jp,\nC3,aya@example.jp,no\nC2,ken@example.com,maybe\n",
        )
        .unwrap();
        let r = import_customers(&store, &file, &opts(), utc("2026-11-05T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!((r.updated, r.rejected.len()), (1, 1), "{r:?}");
        assert_eq!(r.rejected[0].line, 4);
        assert!(r.rejected[0]
            .message
            .contains("'marketing_consent' must be true or false"));
        assert_eq!(
            store.find_customer("C1").await.unwrap().marketing_consent,
            Some(1)
        );
        assert_eq!(
            store.find_customer("C3").await.unwrap().marketing_consent,
            Some(0)
        );
    }
}

#[tokio::test]
async fn amounts_beyond_the_bound_are_refused_by_line_and_never_wrap() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("big.csv");
    std::fs::write(
        &file,
        "order_id,customer_id,placed_at,currency,total,sku,quantity,unit_price\n\
         B1,C1,2026-11-02,JPY,,S1,9223372036854775807,2\n\
         B2,C1,2026-11-02,JPY,9223372036854775807,S1,1,100\n\
         B3,C1,2026-11-02,JPY,,S1,1000000,1000000000000\n\
         B5,C1,2026-11-02,JPY,,S1,1,-9223372036854775808\n\
         B4,C1,2026-11-02,JPY,,S1,2,3980\n",
    )
    .unwrap();
    let before = store.find_customer("C1").await.unwrap();
    let r = import_orders(&store, &file, &opts(), clock())
        .await
        .unwrap();
    let lines: Vec<(u64, String)> = r
        .rejected
        .iter()
        .map(|e| (e.line, e.message.clone()))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        [2, 3, 4, 5],
        "{lines:?}"
    );
    assert!(
        lines[3].1.contains("beyond"),
        "i64::MIN never wraps: {lines:?}"
    );
    assert!(
        lines[0]
            .1
            .contains("'quantity' must be a whole number from 1 to 1000000"),
        "{lines:?}"
    );
    assert!(
        lines[1]
            .1
            .contains("'total' is 9223372036854775807, beyond"),
        "{lines:?}"
    );
    assert!(
        lines[2].1.contains("the items add up to more than"),
        "{lines:?}"
    );
    let after = store.find_customer("C1").await.unwrap();
    assert_eq!(after.total_spent, before.total_spent + 7960);
    assert_eq!(after.orders_count, before.orders_count + 1);
}

#[tokio::test]
async fn orders_and_the_aggregates_they_change_commit_together() {
    crate::sqlite_only!("a SQLite trigger stands in for a failure");
    let (shop, store) = shop_with("csv").await;
    let pool = sqlx::sqlite::SqlitePool::connect(&format!("sqlite://{}", shop.config.database))
        .await
        .unwrap();
    // The aggregates' write fails (as an overflow did): the orders must not stay behind.
    sqlx::query(
        "CREATE TRIGGER no_aggregates BEFORE UPDATE OF total_spent ON customers \
         BEGIN SELECT RAISE(ABORT, 'aggregates refused'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let file = shop.file("more.csv");
    std::fs::write(
        &file,
        "order_id,customer_id,placed_at,currency,total\nN1,C1,2026-11-03,JPY,5000\n",
    )
    .unwrap();
    let before = store.find_customer("C1").await.unwrap();
    assert!(import_orders(&store, &file, &opts(), clock())
        .await
        .is_err());
    assert!(
        store.order("N1").await.unwrap().is_none(),
        "no order without its aggregates"
    );
    let unchanged = store.find_customer("C1").await.unwrap();
    assert_eq!(
        (unchanged.total_spent, unchanged.orders_count),
        (before.total_spent, before.orders_count)
    );

    sqlx::query("DROP TRIGGER no_aggregates")
        .execute(&pool)
        .await
        .unwrap();
    let r = import_orders(&store, &file, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (1, 1, 0, 0, 0));
    let after = store.find_customer("C1").await.unwrap();
    assert_eq!(after.total_spent, before.total_spent + 5000);
}

#[tokio::test]
async fn json_lines_reject_a_bad_line_as_csv_does_and_the_rest_lands() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let now = utc("2026-11-01T00:00:00Z");
    let file = shop.file("customers.jsonl");
    let mut bytes = Vec::new();
    // A byte-order mark before the first record, as some Windows tools write.
    bytes.extend_from_slice("\u{feff}{\"id\": \"c1\", \"email\": \"aya@example.jp\"}\n".as_bytes());
    bytes.extend_from_slice(
        b"{\"id\": \"c2\", \"email\": \"ken@example.jp\", \"name\": \"\xff\xfe\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"id\": 123456789012345678901234567890, \"email\": \"big@example.jp\"}\n",
    );
    bytes.extend_from_slice(b"{\"id\": 42, \"email\": \"num@example.jp\"}\n");
    bytes.extend_from_slice(b"{\"id\": \"c1\", \"email\": \"again@example.jp\"}\n");
    // A key given twice: refused, as the API refuses it, not read as its last value.
    bytes.extend_from_slice(
        b"{\"id\": \"c3\", \"email\": \"one@example.jp\", \"email\": \"two@example.jp\"}\n",
    );
    // Not JSON: said by its column in the file's line, not by the parser's "line 1".
    bytes.extend_from_slice(b"{\"id\": c9}\n");
    std::fs::write(&file, bytes).unwrap();
    let r = import_customers(&store, &file, &opts(), now).await.unwrap();
    let said: Vec<(u64, &str)> = r
        .rejected
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(said.len(), 5, "{said:?}");
    assert_eq!(
        said[4],
        (7, "not a JSON object: expected value at column 8"),
        "{said:?}"
    );
    assert!(
        said[0].0 == 2 && said[0].1.starts_with("not UTF-8 text"),
        "{said:?}"
    );
    assert!(
        said[1].0 == 3 && said[1].1.contains("write ids as strings"),
        "{said:?}"
    );
    assert!(
        said[2].0 == 5 && said[2].1.contains("appears again (first on line 1)"),
        "{said:?}"
    );
    assert!(
        said[3].0 == 6 && said[3].1.contains("a key is given twice"),
        "{said:?}"
    );
    assert!(
        store.find_customer("c3").await.is_err(),
        "nothing stored for it"
    );
    assert_eq!((r.records, r.inserted), (7, 2));
    assert_eq!(
        store.find_customer("c1").await.unwrap().email,
        "aya@example.jp"
    );
    assert_eq!(
        store.find_customer("42").await.unwrap().email,
        "num@example.jp"
    );
}

#[test]
fn an_unreadable_csv_header_is_the_files_fault_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        b"id,em\xffail\nc1,a@b.jp\n",
    )
    .unwrap();
    let o = binary()
        .args(["import", "customers", "customers.csv"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read the CSV header line"), "{err}");
}

#[test]
fn a_quote_never_closed_is_reported_at_its_line_and_nothing_is_swallowed_silently() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "id,email,name\nC1,a@example.jp,\"Aya \"\"A\"\"\nline two\"\nC2,b@example.jp,\"Ken\nC3,c@example.jp,Mio\n",
    )
    .unwrap();
    let import = |file: &str| {
        binary()
            .args(["import", "customers", file])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let o = import("customers.csv");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    // C1's quoted field spans two lines and is closed: kept. C2's never closes: refused.
    assert!(
        out.contains("1 inserted") && out.contains("1 rejected"),
        "{out}"
    );
    assert!(
        err.contains("customers.csv:4") && err.contains("never closed"),
        "{err}"
    );
    // Opened before the last column, the swallowing row is short of fields: said as the quote
    // all the same (the rows it swallowed are what is lost), not as a count of fields.
    std::fs::write(
        dir.path().join("short.csv"),
        "id,email,name\nc10,\"a10@example.jp,N\nc11,a11@example.jp,M\n",
    )
    .unwrap();
    let o = import("short.csv");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("short.csv:2") && err.contains("never closed"),
        "{err}"
    );
}

/// New orders are added to the stored aggregates rather than recomputed; random writes (new
/// orders, re-sent ones, changed and moved ones, ties in time, several groups per
/// transaction) must leave exactly what a recomputation from all orders gives.
#[tokio::test]
async fn aggregates_added_up_order_by_order_equal_a_recomputation() {
    use rand::{Rng, SeedableRng};
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let ids: Vec<String> = (0..12).map(|i| format!("C{i}")).collect();
    let customers: Vec<_> = ids
        .iter()
        .map(|id| customer(id, &format!("{id}@example.jp"), id, "Asia/Tokyo", "{}"))
        .collect();
    store.upsert_customers(&customers, 0).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261205);
    let mut sent: Vec<rebuy::store::NewOrder> = Vec::new();
    for _ in 0..60 {
        let mut groups: Vec<Vec<rebuy::store::NewOrder>> = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let mut group = Vec::new();
            for _ in 0..rng.random_range(1..6) {
                let resend = !sent.is_empty() && rng.random_bool(0.3);
                let mut o = if resend {
                    sent[rng.random_range(0..sent.len())].clone()
                } else {
                    let day = rng.random_range(1..20);
                    let mut o = order(
                        &format!(
                            "O{}",
                            sent.len() + group.len() + rng.random_range(0..1_000_000)
                        ),
                        &ids[rng.random_range(0..ids.len())],
                        &format!("2026-10-{day:02}T00:00:00Z"),
                        rng.random_range(100..9000),
                    );
                    o.currency = ["JPY", "USD", "EUR"][rng.random_range(0..3)].into();
                    o
                };
                if resend && rng.random_bool(0.5) {
                    match rng.random_range(0..3) {
                        0 => o.total += 1,
                        1 => o.customer_id = ids[rng.random_range(0..ids.len())].clone(),
                        _ => o.currency = "GBP".into(),
                    }
                }
                group.push(o);
            }
            sent.extend(group.iter().cloned());
            groups.push(group);
        }
        let refs: Vec<&[rebuy::store::NewOrder]> = groups.iter().map(Vec::as_slice).collect();
        store
            .upsert_order_groups_with(&refs, rebuy::store::Moves::Allow { now: 0 })
            .await
            .unwrap();
    }
    let aggregates = |c: rebuy::store::CustomerRow| {
        (
            c.id,
            c.orders_count,
            c.total_spent,
            c.first_order_at,
            c.last_order_at,
            c.currency,
        )
    };
    let mut added_up = Vec::new();
    for id in &ids {
        added_up.push(aggregates(store.find_customer(id).await.unwrap()));
    }
    store.refresh_order_aggregates(&ids).await.unwrap();
    let mut recomputed = Vec::new();
    for id in &ids {
        recomputed.push(aggregates(store.find_customer(id).await.unwrap()));
    }
    assert_eq!(added_up, recomputed);
    assert!(
        added_up.iter().map(|a| a.1).sum::<i64>() > 50,
        "{added_up:?}"
    );
}

/// A server's store checkpoints the write-ahead log in the background (its connections never
/// do it in a commit): orders written through it reach the database file itself shortly after,
/// without any further write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_store_checkpoints_the_log_in_the_background() {
    crate::sqlite_only!("SQLite's write-ahead log");
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await.for_server().await.unwrap();
    let db = std::path::PathBuf::from(&shop.config.database);
    let before = std::fs::metadata(&db).unwrap().len();
    let customers: Vec<_> = (0..2000)
        .map(|i| {
            let id = format!("C{i}");
            customer(&id, &format!("{id}@example.jp"), &id, "Asia/Tokyo", "{}")
        })
        .collect();
    store.upsert_customers(&customers, 0).await.unwrap();
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let mut grown = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if std::fs::metadata(&db).unwrap().len() > before + 100_000 {
            grown = true;
            break;
        }
    }
    assert!(grown, "the database file never received the logged pages");
}

/// More rows than one multi-row statement holds on either backend (500 on SQLite, 2,000 on
/// PostgreSQL), a customer's orders split across statements: every row lands once, every
/// aggregate adds up, and the same files again change nothing.
#[tokio::test]
async fn a_file_of_many_statements_lands_whole_with_its_aggregates() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let (customers, per_customer) = (2_500, 3);
    let mut c = String::from("id,email,name\n");
    for i in 0..customers {
        c.push_str(&format!("K{i:05},k{i}@example.jp,Name {i}\n"));
    }
    // Orders in rounds (every customer once, then again), so that each customer's orders sit
    // in different statements.
    let mut o = String::from("order_id,customer_id,placed_at,currency,total\n");
    for round in 0..per_customer {
        for i in 0..customers {
            let day = 1 + round;
            o.push_str(&format!(
                "R{round}-{i},K{i:05},2026-10-{day:02}T10:00:00+09:00,JPY,{}\n",
                100 + i
            ));
        }
    }
    std::fs::write(shop.file("many_customers.csv"), c).unwrap();
    std::fs::write(shop.file("many_orders.csv"), o).unwrap();
    let now = utc("2026-11-01T00:00:00Z");
    let orders = (customers * per_customer) as u64;
    for pass in 0..2 {
        let rc = import_customers(&store, &shop.file("many_customers.csv"), &opts(), now)
            .await
            .unwrap();
        let ro = import_orders(&store, &shop.file("many_orders.csv"), &opts(), clock())
            .await
            .unwrap();
        let fresh = |n: u64| {
            if pass == 0 {
                (n, n, 0, 0, 0)
            } else {
                (n, 0, 0, n, 0)
            }
        };
        assert_eq!(counts(&rc), fresh(customers as u64), "pass {pass}: {rc:?}");
        assert_eq!(counts(&ro), fresh(orders), "pass {pass}: {ro:?}");
        assert_eq!(store.count_orders().await.unwrap() as u64, orders);
        for i in [0, 1_999, 2_000, customers - 1] {
            let k = store.find_customer(&format!("K{i:05}")).await.unwrap();
            assert_eq!(k.orders_count, per_customer as i64, "K{i:05}");
            assert_eq!(k.total_spent, (100 + i as i64) * per_customer as i64);
            assert_eq!(
                k.first_order_at,
                Some(utc("2026-10-01T01:00:00Z").timestamp_millis())
            );
            assert_eq!(
                k.last_order_at,
                Some(utc("2026-10-03T01:00:00Z").timestamp_millis())
            );
        }
    }
}

/// Support looks customers up by e-mail address as they are told it, in any case: exactly
/// (`find_customer`, `rebuy customer show`) and by its beginning (the search of /ui).
#[tokio::test]
async fn customers_are_found_by_email_in_any_case() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let customers = [
        customer("C1", "Aya.Tanaka@Example.JP", "Aya", "Asia/Tokyo", "{}"),
        customer("C2", "ayumi@example.jp", "Ayumi", "Asia/Tokyo", "{}"),
        customer("C3", "ken@example.jp", "Ken", "Asia/Tokyo", "{}"),
        customer("C4", "Ünal@example.jp", "Ünal", "Asia/Tokyo", "{}"),
    ];
    store.upsert_customers(&customers, 0).await.unwrap();

    for asked in [
        "aya.tanaka@example.jp",
        "AYA.TANAKA@EXAMPLE.JP",
        "Aya.Tanaka@Example.JP",
    ] {
        assert_eq!(
            store.find_customer(asked).await.unwrap().id,
            "C1",
            "{asked}"
        );
        let hits = store.search_customers(asked, 10).await.unwrap();
        let found: Vec<(&str, &str)> = hits
            .iter()
            .map(|h| (h.id.as_str(), h.matched.as_str()))
            .collect();
        assert_eq!(found, [("C1", "email")], "{asked}");
    }
    let hits = store.search_customers("AY", 10).await.unwrap();
    let mut found: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    found.sort_unstable();
    assert_eq!(found, ["C1", "C2"], "a beginning in another case");
    assert!(store.find_customer("nobody@example.jp").await.is_err());
    // Letters beyond ASCII are compared as they are, the same on both backends.
    assert_eq!(
        store.find_customer("Ünal@EXAMPLE.jp").await.unwrap().id,
        "C4"
    );
    let hits = store.search_customers("Ünal@example.JP", 10).await.unwrap();
    assert_eq!(hits.first().map(|h| h.id.as_str()), Some("C4"));
}

#[tokio::test]
async fn a_name_is_found_with_either_space_between_family_and_given_name() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let customers = [
        customer("J1", "yumi@example.jp", "高橋 由美", "Asia/Tokyo", "{}"),
        customer("J2", "ken@example.jp", "高橋\u{3000}健", "Asia/Tokyo", "{}"),
    ];
    store.upsert_customers(&customers, 0).await.unwrap();
    for (asked, id) in [
        ("高橋\u{3000}由美", "J1"),
        ("高橋 由美", "J1"),
        ("高橋 健", "J2"),
        ("高橋\u{3000}健", "J2"),
        // Typed without a space, as support staff often do.
        ("高橋由美", "J1"),
        ("高橋健", "J2"),
        ("高橋由", "J1"),
    ] {
        let hits = store.search_customers(asked, 10).await.unwrap();
        let found: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(found, [id], "{asked}");
    }
}

/// A discount written as a negative line lowers its order's total; an order whose items add up
/// below zero (a coupon worth more than the goods) is kept as a purchase of 0, never lowering
/// the spend; a date no shop writes (0000, 9999) is refused at its line.
#[tokio::test]
async fn orders_below_zero_count_as_zero_and_impossible_dates_are_refused_by_line() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("odd.csv");
    std::fs::write(
        &file,
        "order_id,customer_id,placed_at,currency,total,sku,quantity,unit_price\n\
         D1,C1,2026-11-02,JPY,,S1,1,3980\n\
         D1,C1,2026-11-02,JPY,,COUPON,1,-500\n\
         N1,C1,2026-11-02,JPY,,S1,1,-3980\n\
         Y0,C1,0000-01-01,JPY,,S1,1,100\n\
         Y9,C1,9999-12-31,JPY,,S1,1,100\n",
    )
    .unwrap();
    let before = store.find_customer("C1").await.unwrap();
    let r = import_orders(&store, &file, &opts(), clock())
        .await
        .unwrap();
    let lines: Vec<(u64, &str)> = r
        .rejected
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .zip([5, 6])
            .all(|(l, n)| l.0 == n && l.1.contains("outside the years 1970 to 2099")),
        "{lines:?}"
    );
    let after = store.find_customer("C1").await.unwrap();
    assert_eq!(after.total_spent, before.total_spent + 3480);
    assert_eq!(
        after.orders_count,
        before.orders_count + 2,
        "N1 is a purchase"
    );
}

/// Files as Excel and shop platforms write them: lines ending in CR LF are placed on their own
/// line (not the one before), a Shift_JIS row says the file's encoding is the problem, and a
/// header without a required column is said once for the file, not once per row.
#[tokio::test]
async fn crlf_lines_shift_jis_and_a_missing_column_are_told_as_a_person_fixes_them() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let now = utc("2026-11-01T00:00:00Z");
    let crlf = shop.file("crlf.csv");
    std::fs::write(
        &crlf,
        "id,email,name\r\nT1,t1@example.jp,a\r\nT2,bad,b\r\nT3,t3@example.jp,c\r\nT4,bad4,d\r\n",
    )
    .unwrap();
    let r = import_customers(&store, &crlf, &opts(), now).await.unwrap();
    let lines: Vec<u64> = r.rejected.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5], "{:?}", r.rejected);
    assert_eq!(r.inserted, 2);

    // Excel's trailing rows of empty cells carry nothing: skipped, not rejected every night.
    let tail = shop.file("tail.csv");
    std::fs::write(
        &tail,
        "id,email,name\r\nE1,e1@example.jp,e\r\n,,\r\n,  ,\r\n",
    )
    .unwrap();
    let r = import_customers(&store, &tail, &opts(), now).await.unwrap();
    assert_eq!((r.records, r.inserted), (1, 1), "{r:?}");
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);

    // 顧客 in Shift_JIS, on the third line.
    let sjis = shop.file("sjis.csv");
    let mut bytes = b"id,email,name\nS1,s1@example.jp,a\nS2,s2@example.jp,".to_vec();
    bytes.extend_from_slice(b"\x8c\xda\x8b\x71\n");
    std::fs::write(&sjis, bytes).unwrap();
    let r = import_customers(&store, &sjis, &opts(), now).await.unwrap();
    assert_eq!(r.rejected.len(), 1, "{:?}", r.rejected);
    assert_eq!(r.rejected[0].line, 3);
    assert!(
        r.rejected[0].message.contains("field 3 is not UTF-8")
            && r.rejected[0].message.contains("CSV UTF-8"),
        "{}",
        r.rejected[0].message
    );

    let header = shop.file("header.csv");
    let rows: String = (0..2000)
        .map(|i| format!("H{i},h{i}@example.jp\n"))
        .collect();
    std::fs::write(&header, format!("customer_id,e-mail\n{rows}")).unwrap();
    let before = store.all_customers().await.unwrap().len();
    let e = import_customers(&store, &header, &opts(), now)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(
            "header.csv: the CSV header has no 'email' column (it has: customer_id, e-mail); \
             is 'e-mail' that column? rename it 'email'"
        ),
        "{e}"
    );
    assert_eq!(store.all_customers().await.unwrap().len(), before);

    // A nightly export with nothing new: no header, no rows, nothing wrong.
    let empty = shop.file("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let r = import_customers(&store, &empty, &opts(), now)
        .await
        .unwrap();
    assert_eq!((r.records, r.rejected.len()), (0, 0));
}

/// On PostgreSQL the first import of orders (none stored yet) is one bulk load: `COPY`, the
/// indexes built after, the aggregates set at the end. It must leave the shop as an import
/// beside stored orders (the row-by-row upsert) leaves it, and the shop must then take
/// imports as usual.
#[tokio::test]
async fn a_first_import_of_orders_leaves_the_shop_as_an_import_beside_other_orders_does() {
    let item = r#""items":[{"sku":"A\\B","name":"tab\there, line\nbreak \\ end","quantity":1,"unit_price":3980}]"#;
    let lines = [
        format!(r#"{{"id":"O\\1","customer_id":"C1","placed_at":"2026-10-01T10:15:00+09:00","currency":"JPY",{item}}}"#),
        r#"{"id":"O2","customer_id":"C2","placed_at":"2026-10-02 09:00","currency":"USD","total":4500}"#.to_string(),
        r#"{"id":"O5","customer_id":"C1","placed_at":"2026-10-03T10:15:00+09:00","currency":"JPY","total":1200}"#.to_string(),
        r#"{"id":"O3","customer_id":"C9","placed_at":"2026-10-04T10:00:00+09:00","currency":"JPY","total":100}"#.to_string(),
        format!(r#"{{"id":"O4","customer_id":"C1","placed_at":"2026-10-05T10:00:00+09:00","currency":"EUR",{item}}}"#),
        format!(r#"{{"id":"O4","customer_id":"C1","placed_at":"2026-10-05T10:00:00+09:00","currency":"EUR",{item}}}"#),
        // C2's latest order is in neither its first nor its last currency by name.
        r#"{"id":"O6","customer_id":"C2","placed_at":"2026-09-30 09:00","currency":"EUR","total":100}"#.to_string(),
        r#"{"id":"O7","customer_id":"C2","placed_at":"2026-10-03 09:00","currency":"JPY","total":200}"#.to_string(),
    ];
    async fn import_into(
        lines: &[String],
        other_order_first: bool,
    ) -> (TestShop, rebuy::store::Store, ImportReport) {
        let shop = TestShop::new(&[], &[], None);
        let store = shop.store().await;
        let customers = shop.file("customers.csv");
        std::fs::write(
            &customers,
            "id,email\nC1,c1@example.jp\nC2,c2@example.jp\nC3,c3@example.jp\nC4,c4@example.jp\n",
        )
        .unwrap();
        let now = utc("2026-11-01T00:00:00Z");
        import_customers(&store, &customers, &opts(), now)
            .await
            .unwrap();
        if other_order_first {
            let other = shop.file("other.csv");
            std::fs::write(
                &other,
                "order_id,customer_id,placed_at,currency,total\nX1,C4,2026-09-01,JPY,700\n",
            )
            .unwrap();
            let r = import_orders(&store, &other, &opts(), clock())
                .await
                .unwrap();
            assert_eq!(r.bulk_load, on_postgres(), "{r:?}");
        }
        let file = shop.file("orders.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let report = import_orders(&store, &file, &opts(), clock())
            .await
            .unwrap();
        (shop, store, report)
    }
    let (shop, first, loaded) = import_into(&lines, false).await;
    let (_other, beside, upserted) = import_into(&lines, true).await;

    assert_eq!(loaded.bulk_load, on_postgres(), "{loaded:?}");
    assert!(!upserted.bulk_load);
    assert_eq!(counts(&loaded), (7, 6, 0, 0, 1), "{loaded:?}");
    assert_eq!(counts(&loaded), counts(&upserted));
    assert_eq!(loaded.rejected, upserted.rejected);
    assert_eq!(loaded.rejected[0].line, 4);
    for id in ["O\\1", "O2", "O3", "O4", "O5", "O6", "O7"] {
        assert_eq!(
            first.order(id).await.unwrap(),
            beside.order(id).await.unwrap(),
            "{id}"
        );
    }
    let o1 = first.order("O\\1").await.unwrap().unwrap();
    assert!(o1.items.contains(r#""sku":"A\\B""#), "{}", o1.items);
    let o4 = first.order("O4").await.unwrap().unwrap();
    assert!(
        o4.items.contains(r"tab\there, line\nbreak \\ end"),
        "{}",
        o4.items
    );
    for id in ["C1", "C2", "C3"] {
        let (a, b) = (
            first.find_customer(id).await.unwrap(),
            beside.find_customer(id).await.unwrap(),
        );
        let aggregates = |c: &rebuy::store::CustomerRow| {
            (
                c.orders_count,
                c.total_spent,
                c.currency.clone(),
                c.first_order_at,
                c.last_order_at,
            )
        };
        assert_eq!(aggregates(&a), aggregates(&b), "{id}");
    }
    let c1 = first.find_customer("C1").await.unwrap();
    assert_eq!(
        (c1.orders_count, c1.total_spent, c1.currency.as_deref()),
        (3, 3980 + 1200 + 2 * 3980, Some("EUR"))
    );
    let c2 = first.find_customer("C2").await.unwrap();
    assert_eq!((c2.orders_count, c2.currency.as_deref()), (3, Some("JPY")));
    let dirty: Vec<String> = first
        .dirty_customers(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // The next refresh reads C1 and C2 again: marked one by one beside other orders, everyone
    // at once by PostgreSQL's bulk load (a million rows of marks cost it 1.7 s).
    if on_postgres() {
        assert!(dirty.is_empty(), "{dirty:?}");
        assert!(first.everyone_changed().await.unwrap());
    } else {
        assert_eq!(dirty, ["C1", "C2"]);
        assert!(!first.everyone_changed().await.unwrap());
    }

    // The shop takes imports as usual afterwards: the same file again changes nothing (the
    // unique index on ids is back), and a changed order is rewritten with its aggregates.
    let again = import_orders(&first, &shop.file("orders.jsonl"), &opts(), clock())
        .await
        .unwrap();
    assert!(!again.bulk_load);
    assert_eq!(counts(&again), (7, 0, 0, 6, 1), "{again:?}");
    let changed = shop.file("changed.csv");
    std::fs::write(
        &changed,
        "order_id,customer_id,placed_at,currency,total\nO2,C3,2026-10-02,USD,5000\n",
    )
    .unwrap();
    let moving = ImportOptions {
        move_orders: true,
        ..opts()
    };
    let r = import_orders(&first, &changed, &moving, clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (1, 0, 1, 0, 0), "{r:?}");
    assert_eq!(first.find_customer("C2").await.unwrap().orders_count, 2);
    assert_eq!(first.find_customer("C3").await.unwrap().total_spent, 5000);
}

/// A first import of orders after a full refresh (of a shop with customers and no orders) is
/// read by the next refresh: the incremental one recomputes the customers it marked, or, when
/// the import marked everyone at once (PostgreSQL's bulk load), declines so that a full one runs,
/// which clears the mark.
#[tokio::test]
async fn the_refresh_after_a_first_import_of_orders_reads_every_customer_it_changed() {
    use rebuy::refresh::{refresh, refresh_changed};
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    let customers = shop.file("customers.csv");
    std::fs::write(&customers, "id,email\nC1,c1@example.jp\nC2,c2@example.jp\n").unwrap();
    import_customers(&store, &customers, &opts(), clock())
        .await
        .unwrap();
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let zone = chrono_tz::Asia::Tokyo;
    refresh(&store, as_of, zone, 0, &[], &|_| {}).await.unwrap();
    let orders = shop.file("orders.csv");
    std::fs::write(
        &orders,
        "order_id,customer_id,placed_at,currency,total\nO1,C1,2026-10-01,JPY,700\nO2,C2,2026-10-02,JPY,800\nO3,C1,2026-11-02,JPY,900\n",
    )
    .unwrap();
    let r = import_orders(&store, &orders, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(r.bulk_load, on_postgres(), "{r:?}");
    match refresh_changed(&store, as_of, zone, 1, &[]).await.unwrap() {
        Some(r) => {
            assert!(
                !on_postgres(),
                "PostgreSQL's bulk load marked everyone: {r:?}"
            );
            assert_eq!(r.customers, 2);
        }
        None => {
            assert!(on_postgres(), "SQLite marked C1 and C2 one by one");
            refresh(&store, as_of, zone, 1, &[], &|_| {}).await.unwrap();
            assert!(!store.everyone_changed().await.unwrap());
        }
    }
    let ids = ["C1".to_string(), "C2".to_string()];
    let metrics = store.metrics_by_ids(&ids).await.unwrap();
    let orders_of = |id: &str| metrics.get(id).map(|m| m.orders);
    assert_eq!((orders_of("C1"), orders_of("C2")), (Some(2), Some(1)));
    // Nothing is left to do: the incremental refresh runs, and finds no one changed.
    let again = refresh_changed(&store, as_of, zone, 2, &[]).await.unwrap();
    assert_eq!(again.map(|r| r.customers), Some(0));
}

/// The bulk load itself (PostgreSQL only; SQLite has none): dropped unfinished it leaves
/// nothing and the indexes as they were; of rows with one id the last is kept.
#[tokio::test]
async fn a_bulk_load_rolls_back_whole_and_keeps_the_last_row_of_an_id() {
    let shop = TestShop::new(&[], &[], None);
    let store = shop.store().await;
    add_customers(&store, &["C1", "C2"]).await;
    let Some(mut load) = store.begin_order_load().await.unwrap() else {
        assert!(!on_postgres(), "an empty PostgreSQL shop loads in bulk");
        return;
    };
    load.add(&[order("O1", "C1", "2026-10-01T00:00:00Z", 100)])
        .await
        .unwrap();
    drop(load);
    assert_eq!(store.count_orders().await.unwrap(), 0);

    let mut load = store
        .begin_order_load()
        .await
        .unwrap()
        .expect("still empty");
    load.add(&[
        order("O1", "C1", "2026-10-01T00:00:00Z", 100),
        order("O2", "C2", "2026-10-02T00:00:00Z", 300),
    ])
    .await
    .unwrap();
    load.add(&[order("O1", "C1", "2026-10-03T00:00:00Z", 250)])
        .await
        .unwrap();
    assert_eq!(load.finish().await.unwrap().inserted, 2);
    assert_eq!(store.order("O1").await.unwrap().unwrap().total, 250);
    let c1 = store.find_customer("C1").await.unwrap();
    assert_eq!((c1.orders_count, c1.total_spent), (1, 250));
    assert!(
        store.begin_order_load().await.unwrap().is_none(),
        "orders are stored now"
    );
    // The unique index on ids is back: an upsert meets the stored order.
    let out = store
        .upsert_orders(&[order("O1", "C1", "2026-10-03T00:00:00Z", 250)])
        .await
        .unwrap();
    assert_eq!((out.inserted, out.updated), (0, 0));
}

/// A nightly file of order totals must not wipe the line items a webhook brought: an order
/// sent again without items keeps its stored ones (an empty value never erases a stored one).
#[tokio::test]
async fn an_order_sent_again_without_items_keeps_its_stored_items() {
    let (shop, store) = shop_with("csv").await;
    let before = store.order("O1").await.unwrap().unwrap();
    assert!(before.items.contains("LO-01"), "{}", before.items);
    let file = shop.file("totals.csv");
    let write = |total: i64| {
        std::fs::write(
            &file,
            format!(
                "order_id,customer_id,placed_at,currency,total\n\
                 O1,C1,2026-10-01T10:15:00+09:00,JPY,{total}\n"
            ),
        )
        .unwrap()
    };
    write(before.total);
    let r = import_orders(&store, &file, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (1, 0, 0, 1, 0), "{r:?}");
    assert_eq!(store.order("O1").await.unwrap().unwrap(), before);
    write(before.total + 100);
    let r = import_orders(&store, &file, &opts(), clock())
        .await
        .unwrap();
    assert_eq!(counts(&r), (1, 0, 1, 0, 0), "{r:?}");
    let after = store.order("O1").await.unwrap().unwrap();
    assert_eq!(
        (after.total, after.items.as_str()),
        (before.total + 100, before.items.as_str())
    );
}

/// A file exported before a customer withdrew consent must not give it back: of two consent
/// statements with their times, the newer stands. A time without an offset is the shop's.
#[tokio::test]
async fn an_older_consent_statement_never_undoes_a_newer_one() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("consent.csv");
    let now = utc("2026-12-07T00:00:00Z");
    let options = opts();
    let import = |consent: &str, at: &str| {
        std::fs::write(
            &file,
            format!("id,email,marketing_consent,consent_at\nC1,hanako@example.jp,{consent},{at}\n"),
        )
        .unwrap();
        import_customers(&store, &file, &options, now)
    };
    let state = || async {
        let c = store.find_customer("C1").await.unwrap();
        (c.marketing_consent, c.consent_at)
    };
    let dec =
        |day: u32, hour: u32| utc(&format!("2026-12-{day:02}T{hour:02}:00:00Z")).timestamp_millis();
    // Withdrawn on 5 December at 10:00 in Tokyo (01:00 UTC).
    import("no", "2026-12-05 10:00").await.unwrap();
    assert_eq!(state().await, (Some(0), Some(dec(5, 1))));
    // An older "yes" (a bare date: midnight in Tokyo) changes nothing.
    let r = import("yes", "2026-12-01").await.unwrap();
    assert_eq!((r.updated, r.unchanged), (0, 1), "{r:?}");
    assert_eq!(state().await, (Some(0), Some(dec(5, 1))));
    // A newer one stands.
    import("yes", "2026-12-06T09:00:00+09:00").await.unwrap();
    assert_eq!(state().await, (Some(1), Some(dec(6, 0))));
}

/// An order dated months ahead (a typo in the year) is refused at its line: mail planned from
/// it would go out then, and the customer's real orders in between would start nothing.
#[tokio::test]
async fn an_order_dated_in_the_future_is_refused_by_line() {
    let (shop, store) = shop_with("csv").await;
    let file = shop.file("ahead.csv");
    std::fs::write(
        &file,
        "order_id,customer_id,placed_at,currency,total\n\
         F1,C1,2027-06-01 10:00,JPY,5000\n\
         F2,C1,2026-12-07 10:00,JPY,5000\n",
    )
    .unwrap();
    let now = utc("2026-12-07T03:00:00Z");
    let r = import_orders(&store, &file, &opts(), now).await.unwrap();
    assert_eq!(counts(&r), (2, 1, 0, 0, 1), "{r:?}");
    assert_eq!(r.rejected[0].line, 2);
    assert!(r.rejected[0].message.contains("is in the future"), "{r:?}");
    assert!(store.order("F1").await.unwrap().is_none());
}

/// A shop whose `later` scenario mails a note about an order a day after it, with customers
/// V1 and V2, and V1's order VO1 placed at 2026-11-01 01:00 UTC.
async fn shop_with_a_note_about_vo1(smtp: &SmtpServer) -> (TestShop, Store) {
    let later_note = "id: later\ntrigger: order_placed\ntransactional: true\nsteps:\n  - id: note\n    wait: 1d\n    send: { template: t, subject: \"about {{ order.id }}: {{ order.total }}\" }\n";
    let shop = TestShop::new(
        &[("later.yaml", later_note)],
        &[
            ("t.html", "<p>{{ order.id }}</p>"),
            ("t.txt", "{{ order.id }}"),
        ],
        Some(smtp),
    );
    let store = shop.store().await;
    store
        .upsert_customers(
            &[
                customer("V1", "v1@example.jp", "V1", "Asia/Tokyo", "{}"),
                customer("V2", "v2@example.jp", "V2", "Asia/Tokyo", "{}"),
            ],
            0,
        )
        .await
        .unwrap();
    add_orders(&store, &[order("VO1", "V1", "2026-11-01T01:00:00Z", 1111)]).await;
    (shop, store)
}

/// VO1 moved to V2 (`--move-orders`), at `now`.
async fn move_vo1_to_v2(store: &Store, now: DateTime<Utc>) {
    let moved = store
        .upsert_orders_with(
            &[order("VO1", "V2", "2026-11-01T01:00:00Z", 2222)],
            rebuy::store::Moves::Allow {
                now: now.timestamp_millis(),
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.moved.len(), 1);
}

const VO1_MOVED: &str = "ended: its order 'VO1' now belongs to another customer";

/// A follow-up planned from an order that then moves to another customer (`--move-orders`)
/// ends without mail: its mail would show someone else's order.
#[tokio::test]
async fn a_follow_up_whose_order_moved_to_another_customer_ends_without_mail() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_a_note_about_vo1(&smtp).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    assert_eq!(store.customer_enrollments("V1").await.unwrap().len(), 1);
    move_vo1_to_v2(&store, now).await;
    let later = now + chrono::Duration::days(2);
    let tick = daemon.engine.tick(later).await.unwrap();
    assert_eq!(tick.queued, 0, "V2's order is not mailed to V1: {tick:?}");
    daemon.deliverer.run_once(later).await.unwrap();
    assert!(smtp.received().is_empty());
    let e = &store.customer_enrollments("V1").await.unwrap()[0];
    assert_eq!(e.state, "cancelled");
    assert_eq!(e.end_reason.as_deref(), Some(VO1_MOVED));
}

/// The same move after the note was queued but before it went (held for the deliverer): the
/// queued note is cancelled with the move, not sent to V1 about V2's order.
#[tokio::test]
async fn a_queued_message_about_an_order_that_moved_is_cancelled_with_the_move() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_a_note_about_vo1(&smtp).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let due = now + chrono::Duration::days(1);
    let tick = daemon.engine.tick(due).await.unwrap();
    assert_eq!(tick.queued, 1, "{tick:?}");
    move_vo1_to_v2(&store, due).await;
    daemon.deliverer.run_once(due).await.unwrap();
    assert!(smtp.received().is_empty(), "{:?}", smtp.received());
    let messages = store.customer_messages("V1").await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].status, "cancelled");
    assert_eq!(messages[0].last_error.as_deref(), Some(VO1_MOVED));
    let e = &store.customer_enrollments("V1").await.unwrap()[0];
    assert_eq!(
        (e.state.as_str(), e.end_reason.as_deref()),
        ("cancelled", Some(VO1_MOVED))
    );
    assert_eq!(e.ended_at, Some(due.timestamp_millis()));
}

/// The same move while a sender is in the SMTP conversation (`sending`): that attempt finishes;
/// when it fails for a while, the note is cancelled with the move's reason, not retried.
#[tokio::test]
async fn a_message_being_sent_when_its_order_moved_is_not_retried_after_a_transient_failure() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_a_note_about_vo1(&smtp).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let due = now + chrono::Duration::days(1);
    daemon.engine.tick(due).await.unwrap();
    let ms = due.timestamp_millis();
    let claimed = store.claim_ready("w1", ms, ms + 60_000, 10).await.unwrap();
    let id = claimed[0].id;
    let sending = store
        .start_sending("w1", ms, ms + 60_000, &[id])
        .await
        .unwrap();
    assert_eq!(sending, [id]);
    move_vo1_to_v2(&store, due).await;
    assert_eq!(
        store.customer_messages("V1").await.unwrap()[0].status,
        "sending"
    );
    let retry = rebuy::store::Recorded::retry(id, "451 try again later".into(), ms + 60_000);
    store.record_outcomes("w1", ms, &[retry]).await.unwrap();
    let message = &store.customer_messages("V1").await.unwrap()[0];
    assert_eq!(
        (message.status.as_str(), message.last_error.as_deref()),
        ("cancelled", Some(VO1_MOVED))
    );
}

/// A note that failed before its order moved is not re-sent by `rebuy outbox retry`: rendered
/// again it would show V1 the order V2 now has.
#[tokio::test]
async fn a_failed_message_about_an_order_that_moved_is_not_retried() {
    let smtp = SmtpServer::start();
    smtp.reject_recipient("v1@");
    let (shop, store) = shop_with_a_note_about_vo1(&smtp).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let due = now + chrono::Duration::days(1);
    daemon.engine.tick(due).await.unwrap();
    daemon.deliverer.run_once(due).await.unwrap();
    let failed = store.customer_messages("V1").await.unwrap()[0].clone();
    assert_eq!(failed.status, "failed");
    move_vo1_to_v2(&store, due).await;
    let r = daemon.engine.retry(&[failed.id], false, due).await.unwrap();
    assert!(r.requeued.is_empty(), "{r:?}");
    assert!(
        r.refused[0].1.contains("now belongs to another customer"),
        "{r:?}"
    );
    assert_eq!(
        store.customer_messages("V1").await.unwrap()[0].status,
        "failed"
    );
}

/// The same move while a sender holds the note (claimed, not yet started): it is cancelled too,
/// and the sender, which starts only messages still claimed, sends nothing.
#[tokio::test]
async fn a_claimed_message_about_an_order_that_moved_is_cancelled_with_the_move() {
    let smtp = SmtpServer::start();
    let (shop, store) = shop_with_a_note_about_vo1(&smtp).await;
    let daemon = shop.daemon(&store).await;
    let now = utc("2026-11-01T02:00:00Z");
    daemon.engine.tick(now).await.unwrap();
    let due = now + chrono::Duration::days(1);
    assert_eq!(daemon.engine.tick(due).await.unwrap().queued, 1);
    let ms = due.timestamp_millis();
    let claimed = store.claim_ready("w1", ms, ms + 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    move_vo1_to_v2(&store, due).await;
    let message = &store.customer_messages("V1").await.unwrap()[0];
    assert_eq!(
        (message.status.as_str(), message.last_error.as_deref()),
        ("cancelled", Some(VO1_MOVED))
    );
    // Its lease runs out, another sender comes: nothing goes.
    let later = due + chrono::Duration::minutes(5);
    daemon.deliverer.run_once(later).await.unwrap();
    assert!(smtp.received().is_empty());
    assert_eq!(
        store.customer_messages("V1").await.unwrap()[0].status,
        "cancelled"
    );
}
