//! The operations pages: whether mail is flowing, the queue by state, the oldest waiting
//! message and the last send, the failed and unknown messages with a retry; and the audit
//! log for admins.

use super::i18n;
use super::{see_other, Said, Ui, UiError};
use crate::users::Role;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Failed and unknown messages listed, of each.
const TROUBLE_SHOWN: i64 = 50;

/// `GET /ui/status`: every role may look.
pub async fn status(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let u = ui.clone();
    ui.guard(
        &headers,
        &[Role::Support, Role::Marketer],
        "/ui/status",
        |v| async move {
            let store = &u.api.store;
            let flow = store.flow_status().await?;
            let now = crate::clock::to_millis(u.api.clock.now());
            let flowing = flow.stalled.is_none()
                && flow.paused_until.is_none_or(|p| p <= now)
                && flow.retrying == 0
                && flow.failed_since_sent == 0;
            // Mail waits and no worker is there to send it (every one known to have stopped).
            let workers = crate::delivery::workers(store).await?;
            let unattended = flow.queued > 0 && workers.iter().all(|w| w.alive == Some(false));
            let queue: BTreeMap<String, i64> = store.outbox_counts().await?.into_iter().collect();
            let mut trouble = Vec::new();
            for state in ["unknown", "failed"] {
                for m in store
                    .outbox_list(Some(state), None, None, TROUBLE_SHOWN)
                    .await?
                {
                    trouble.push(crate::customer_view::message_view(&m, v.zone));
                }
            }
            let team = store.team_mail(10).await?;
            let title = i18n::text(v.lang, "status.title");
            u.page(
                Some(&v),
                v.lang,
                "status.html",
                "status",
                &title,
                minijinja::context! {
                    flowing => flowing, unattended => unattended, last_send => flow.last_sent_at,
                    retrying => flow.retrying, retry_error => flow.retry_error,
                    failed => flow.failed_since_sent, failed_error => flow.failed_error,
                    oldest => flow.oldest_queued_at, queue => queue, trouble => trouble,
                    names => u.scenario_names(), may_act => v.role.may(&[Role::Support]),
                    flash => super::flash_of(&q, v.lang, v.zone), team => team,
                },
            )
        },
    )
    .await
}

/// `POST /ui/messages/{id}/retry`: a failed or unknown message rendered again and queued.
pub async fn retry(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, &[Role::Support], &form, |v| async move {
        let id = super::support::message_id(&id)?;
        let out = u
            .api
            .engine()
            .retry(&[id], false, u.api.clock.now())
            .await
            .map_err(UiError::from_engine)?;
        if let Some((_, why)) = out.refused.first() {
            return Err(Said::new("message.not_retried")
                .with("id", id)
                .with("why", why)
                .into());
        }
        if out.requeued.is_empty() {
            return Err(Said::new("message.not_failed").with("id", id).into());
        }
        u.api.wake.notify_one();
        u.audit(&v.name, "message_retried", &id.to_string(), "")
            .await;
        let n = id.to_string();
        Ok(see_other(
            "/ui/status",
            Some(("message.retried", &[("id", n.as_str())])),
        ))
    })
    .await
}

/// `GET /ui/audit`: admins only.
pub async fn audit(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let u = ui.clone();
    ui.guard(&headers, &[], "/ui/audit", |v| async move {
        let rows = u.api.store.audit_log(500).await?;
        let title = i18n::text(v.lang, "audit.title");
        u.page(
            Some(&v),
            v.lang,
            "audit.html",
            "audit",
            &title,
            minijinja::context! { rows => rows },
        )
    })
    .await
}
