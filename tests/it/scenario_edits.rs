//! Editing a running scenario: enrollments wait on a step by its id, so inserting, removing or
//! reordering steps never moves a customer mid-way onto another step.

use crate::helpers::*;
use chrono::Duration;

fn version(steps: &[(&str, &str)]) -> String {
    let mut y = String::from("id: care\ntrigger: first_order\nsteps:\n");
    for (id, wait) in steps {
        y.push_str(&format!(
            "  - id: {id}\n    wait: {wait}\n    send: {{ template: t, subject: \"{id}\" }}\n"
        ));
    }
    y
}

fn shop_with(steps: &[(&str, &str)]) -> TestShop {
    TestShop::new(
        &[("care.yaml", &version(steps))],
        &[
            ("t.html", "<p>{{ customer.name }}</p>"),
            ("t.txt", "{{ customer.name }}"),
        ],
        None,
    )
}

fn rewrite(shop: &TestShop, steps: &[(&str, &str)]) {
    std::fs::write(shop.file("scenarios/care.yaml"), version(steps)).unwrap();
}

async fn subjects(store: &rebuy::store::Store) -> Vec<String> {
    let mut rows = store.outbox_rows().await.unwrap();
    rows.sort_by_key(|r| (r.customer_id.clone(), r.id));
    rows.into_iter()
        .map(|r| format!("{}:{}:{}", r.customer_id, r.step_id, r.status))
        .collect()
}

#[tokio::test]
async fn a_step_inserted_before_the_one_a_customer_waits_on_does_not_move_them() {
    let shop = shop_with(&[("thanks", "1d"), ("howto", "10d")]);
    let store = shop.store().await;
    add_customers(&store, &["A"]).await;
    add_orders(&store, &[order("O1", "A", "2026-11-01T00:00:00Z", 1000)]).await;
    let t0 = utc("2026-11-02T01:00:00Z");
    shop.daemon(&store).await.run_once(t0).await.unwrap();
    assert_eq!(subjects(&store).await, ["A:thanks:sent"]);

    // A step is inserted before "howto" while A waits on it; B enrolls under the new version.
    rewrite(&shop, &[("thanks", "1d"), ("tips", "3d"), ("howto", "7d")]);
    add_customers(&store, &["B"]).await;
    add_orders(&store, &[order("O2", "B", "2026-11-02T00:00:00Z", 1000)]).await;
    let mut daemon = shop.daemon(&store).await;
    let mut now = t0;
    for _ in 0..15 {
        now += Duration::days(1);
        daemon.run_once(now).await.unwrap();
    }
    // A gets "howto" (the step it waited on, when it was due), not "tips"; B gets all three.
    assert_eq!(
        subjects(&store).await,
        [
            "A:thanks:sent",
            "A:howto:sent",
            "B:thanks:sent",
            "B:tips:sent",
            "B:howto:sent"
        ]
    );
}

#[tokio::test]
async fn a_customer_waiting_on_a_removed_step_is_ended_with_the_reason_and_gets_nothing_else() {
    let shop = shop_with(&[("thanks", "1d"), ("howto", "10d"), ("refill", "20d")]);
    let store = shop.store().await;
    add_customers(&store, &["A"]).await;
    add_orders(&store, &[order("O1", "A", "2026-11-01T00:00:00Z", 1000)]).await;
    let t0 = utc("2026-11-02T01:00:00Z");
    shop.daemon(&store).await.run_once(t0).await.unwrap();

    rewrite(&shop, &[("thanks", "1d"), ("refill", "30d")]);
    let mut daemon = shop.daemon(&store).await;
    let mut now = t0;
    for _ in 0..40 {
        now += Duration::days(1);
        daemon.run_once(now).await.unwrap();
    }
    assert_eq!(subjects(&store).await, ["A:thanks:sent"]);
    let e = &store.customer_enrollments("A").await.unwrap()[0];
    assert_eq!(e.state, "cancelled");
    assert!(
        e.end_reason
            .as_deref()
            .unwrap()
            .contains("'howto' was removed"),
        "{:?}",
        e.end_reason
    );
}
