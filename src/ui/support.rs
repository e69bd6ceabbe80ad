//! The support pages: the search box, the customer page (everything about one customer and
//! every message with why it was sent), starting a follow-up (fill in, preview, confirm:
//! started once however often it is sent), cancelling a queued message, and suppressing an
//! address with a reason.

use super::i18n;
use super::{flash_of, see_other, PageResult, Said, Ui, UiError};
use crate::clock::to_millis;
use crate::http::new_token;
use crate::reasons::Reason;
use crate::store::SuppressionKind;
use crate::users::Role;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

const SUPPORT: &[Role] = &[Role::Support];
/// Hits the search shows.
const HITS: i64 = 50;

type Fields = HashMap<String, String>;

/// `GET /ui/customers?q=…`
pub async fn search(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(q): Query<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard(&headers, SUPPORT, "/ui/customers", |v| async move {
        let query = q.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
        // One more than shown: whether there are more is known, not guessed from a full page.
        let mut hits = if query.is_empty() {
            Vec::new()
        } else {
            u.api.store.search_customers(&query, HITS + 1).await?
        };
        let more = hits.len() > HITS as usize;
        hits.truncate(HITS as usize);
        let title = i18n::text(v.lang, "search.title");
        u.page(
            Some(&v),
            v.lang,
            "search.html",
            "customers",
            &title,
            minijinja::context! { q => query, hits => hits, more => more },
        )
    })
    .await
}

/// `GET /ui/customers/{id}`
pub async fn customer(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    let u = ui.clone();
    let back = format!("/ui/customers/{}", super::encode(&id));
    ui.guard(&headers, SUPPORT, &back, |v| async move {
        let engine = u.api.engine();
        let view =
            crate::customer_view::customer_view(&u.api.store, engine.scenarios(), u.api.zone, &id)
                .await
                .map_err(UiError::from_engine)?;
        let manual: Vec<Value> = engine
            .scenarios()
            .iter()
            .filter(|s| s.enabled && s.trigger == crate::scenario::Trigger::Manual)
            .map(|s| serde_json::json!({ "id": s.id, "name": s.name }))
            .collect();
        let title = view["name"].as_str().unwrap_or(&id).to_string();
        // What the mail would recommend, from the model the daemon learnt today for its mail
        // (None: no model today; learning one per page would take seconds at a million).
        let today = u.api.clock.now().with_timezone(&u.api.zone).date_naive();
        let recommended = engine
            .renderer()
            .recommendations()
            .current()
            .filter(|l| l.through() == today)
            .map(|l| {
                let who = view["id"].as_str().unwrap_or(&id);
                let mut shown = l.list(who, crate::recommend::model::Kind::CrossSell, 5, None);
                for p in &mut shown {
                    p.why = why_in(v.lang, p);
                }
                shown
            });
        u.page(
            Some(&v),
            v.lang,
            "customer.html",
            "customers",
            &title,
            minijinja::context! {
                c => view, manual => manual, names => u.scenario_names(), recommended => recommended,
                may_act => v.role.may(SUPPORT), flash => flash_of(&q, v.lang, v.zone),
            },
        )
    })
    .await
}

/// Why a product is recommended, in the page's language (the list's `why` is English).
fn why_in(lang: i18n::Lang, p: &crate::recommend_view::Shown) -> String {
    if let Some(a) = p.again {
        let share = format!("{:.0}", a.share * 100.0);
        let days = format!("{:.0}", a.days);
        return i18n::fill(lang, "why.due_again", &[("share", &share), ("days", &days)]);
    }
    let reason = serde_json::to_value(p.reason).unwrap_or_default();
    match (reason.as_str(), p.because.as_deref()) {
        (Some(code), Some(because)) if code != "popular" => {
            i18n::fill(lang, &format!("why.{code}"), &[("because", because)])
        }
        _ => i18n::text(lang, "why.popular"),
    }
}

/// A manual scenario's variables with the values given so far.
fn vars_of(s: &crate::scenario::Scenario, given: &Fields) -> Vec<Value> {
    s.vars
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "required": d.required,
                "example": d.example,
                "value": given.get(&format!("var.{}", d.name)).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// The variables a form gave (`var.NAME` fields), empty optional ones left out.
fn given_vars(s: &crate::scenario::Scenario, form: &Fields) -> Map<String, Value> {
    form.iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("var.")?, v)))
        .filter(|(k, v)| !v.is_empty() || s.vars.iter().any(|d| d.name == *k && d.required))
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect()
}

/// The required variables a form left empty or blank, as the page says it; the engine would
/// refuse them too, but in English and with the command line's `--var`.
fn unfilled(s: &crate::scenario::Scenario, form: &Fields) -> Option<Said> {
    let names: Vec<&str> = s
        .vars
        .iter()
        .filter(|d| d.required)
        .filter(|d| {
            form.get(&format!("var.{}", d.name))
                .is_none_or(|v| v.trim().is_empty())
        })
        .map(|d| d.name.as_str())
        .collect();
    (!names.is_empty()).then(|| Said::new("followup.required").with("name", names.join(", ")))
}

fn manual_scenario(ui: &Ui, id: &str) -> Result<crate::scenario::Scenario, UiError> {
    ui.api
        .engine()
        .scenarios()
        .iter()
        .find(|s| s.id == id && s.trigger == crate::scenario::Trigger::Manual)
        .cloned()
        .ok_or_else(|| UiError::NotFound(Said::new("missing.manual_scenario").with("id", id)))
}

/// The follow-up page: the variables' form, or (with `preview`) the rendered mail and the
/// confirm button, which carries a key made here so that however often it is sent, one
/// follow-up starts.
#[allow(clippy::too_many_arguments)]
async fn followup_page(
    ui: &Ui,
    v: &super::Viewer,
    customer: &str,
    scenario: &str,
    form: &Fields,
    preview: bool,
) -> PageResult {
    let s = manual_scenario(ui, scenario)?;
    let c = ui.api.store.find_customer(customer).await?;
    let mut data = serde_json::json!({
        "scenario": { "id": s.id, "name": s.name },
        "customer": { "id": c.id, "name": c.name, "email": c.email },
        "vars": vars_of(&s, form),
    });
    if let Some(said) = unfilled(&s, form).filter(|_| preview) {
        data["error"] = Value::String(said.text(v.lang));
    } else if preview {
        let vars = given_vars(&s, form);
        let first = s.steps.first().map(|st| st.id.clone()).unwrap_or_default();
        match ui
            .api
            .engine()
            .preview(&s.id, &first, &c.id, vars, ui.api.clock.now())
            .await
        {
            Ok(r) => {
                data["preview"] = serde_json::json!({ "subject": r.subject, "html": r.html });
                data["key"] = Value::String(format!("ui-{}", new_token().0));
                match blocked(ui, &c, s.transactional).await? {
                    Some(Reason::Suppressed { kind, .. }) => {
                        let kind = i18n::text(v.lang, &format!("suppression.{kind}"));
                        let said = Said::new("followup.blocked").with("kind", kind);
                        data["blocked"] = Value::String(said.text(v.lang));
                    }
                    Some(_) => {
                        // Skipped at send: marketing mail needs the customer's consent.
                        let said = Said::new("followup.no_consent");
                        data["blocked"] = Value::String(said.text(v.lang));
                    }
                    None => {}
                }
            }
            Err(e) => match UiError::from_engine(e) {
                UiError::Invalid(why) => data["error"] = Value::String(why),
                other => return Err(other),
            },
        }
    }
    let title = i18n::text(v.lang, "followup.title");
    ui.page(Some(v), v.lang, "followup.html", "customers", &title, data)
}

/// Why this customer's mail from a scenario (transactional or not) would not go, as the send
/// will find it (`delivery::withheld`): a suppression on their address or their own wish
/// recorded for them, else, for marketing mail, no consent.
async fn blocked(
    ui: &Ui,
    c: &crate::store::CustomerRow,
    transactional: bool,
) -> Result<Option<Reason>, UiError> {
    let found = ui
        .api
        .store
        .suppressions_for(std::slice::from_ref(&c.email), std::slice::from_ref(&c.id))
        .await?;
    let kind = crate::delivery::suppression_for(
        found.by_email.values().next().copied(),
        &[found.by_customer.get(&c.id).copied()],
        transactional,
    );
    let withheld = crate::delivery::withheld(kind, transactional, c.consents(), true);
    Ok(withheld.map(|(_, why)| why))
}

/// `GET /ui/customers/{id}/followup?scenario=…`
pub async fn followup_form(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    let u = ui.clone();
    let back = format!("/ui/customers/{}", super::encode(&id));
    ui.guard(&headers, SUPPORT, &back, |v| async move {
        let scenario = q.get("scenario").cloned().unwrap_or_default();
        followup_page(&u, &v, &id, &scenario, &q, false).await
    })
    .await
}

/// `GET /ui/customers/{id}/followup/preview` (the address a preview leaves in the browser,
/// reloaded or opened again): the customer's page, from where the follow-up starts again.
pub async fn back_to_customer(Path(id): Path<String>) -> Response {
    see_other(&format!("/ui/customers/{}", super::encode(&id)), None)
}

/// `POST /ui/customers/{id}/followup/preview`
pub async fn followup_preview(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, SUPPORT, &form.clone(), |v| async move {
        let scenario = form.get("scenario").cloned().unwrap_or_default();
        followup_page(&u, &v, &id, &scenario, &form, true).await
    })
    .await
}

/// `POST /ui/customers/{id}/followup`: starts it with the form's key (a double click, a
/// reload or a second tab with the same preview start nothing more), then back to the
/// customer page.
pub async fn followup_start(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, SUPPORT, &form.clone(), |v| async move {
        let scenario = form.get("scenario").cloned().unwrap_or_default();
        let key = form
            .get("key")
            .filter(|k| k.starts_with("ui-") && k.len() < 100)
            .cloned()
            .ok_or_else(|| UiError::from(Said::new("followup.no_key")))?;
        let s = manual_scenario(&u, &scenario)?;
        if let Some(said) = unfilled(&s, &form) {
            return Err(said.into());
        }
        let vars = given_vars(&s, &form);
        let c = u.api.store.find_customer(&id).await?;
        let engine = u.api.engine();
        // The same follow-up started from another preview (a second tab, Back and resubmit)
        // would send the same mail twice: refused, with the one that runs.
        let running = engine
            .running_followup(&s.id, &id, &vars, &key)
            .await
            .map_err(UiError::from_engine)?;
        if let Some((running, since)) = running {
            let since = crate::clock::from_millis(since).with_timezone(&u.api.zone);
            return Err(Said::new("followup.running")
                .with("id", running)
                .with("since", since.format("%Y-%m-%d %H:%M"))
                .into());
        }
        let out = engine
            .trigger_manual(&s.id, &id, vars, Some(&key), u.api.clock.now())
            .await
            .map_err(UiError::from_engine)?;
        let eid = out.enrollment_id.to_string();
        if out.created {
            u.api.wake.notify_one();
            u.audit(
                &v.name,
                "followup_started",
                &id,
                &format!("{} (enrollment {eid})", s.id),
            )
            .await;
        }
        // Whether its mail will go is asked only of a follow-up this request started.
        let key = if !out.created {
            "followup.already"
        } else {
            match blocked(&u, &c, s.transactional).await? {
                Some(Reason::Suppressed { .. }) => "followup.started_suppressed",
                Some(_) => "followup.started_no_consent",
                None => "followup.started",
            }
        };
        let back = format!("/ui/customers/{}", super::encode(&id));
        Ok(see_other(
            &back,
            Some((key, &[("id", eid.as_str()), ("due", out.due_at.as_str())])),
        ))
    })
    .await
}

/// `POST /ui/customers/{id}/suppress` with a reason.
pub async fn suppress(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, SUPPORT, &form.clone(), |v| async move {
        let reason = form.get("reason").map(|r| r.trim()).unwrap_or("");
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Said::new("suppress.bad_reason").into());
        }
        let c = u.api.store.find_customer(&id).await?;
        let now = to_millis(u.api.clock.now());
        let detail = format!("{}: {reason}", v.name);
        let changed = u
            .api
            .store
            .suppress(&c.email, SuppressionKind::Manual, &detail, Some(&c.id), now)
            .await?;
        let back = format!("/ui/customers/{}", super::encode(&c.id));
        // Already stopped (a double click, a second tab): said, and audited once.
        if !changed {
            return Ok(see_other(&back, Some(("suppress.already", &[]))));
        }
        u.audit(&v.name, "address_suppressed", &c.email, reason)
            .await;
        Ok(see_other(&back, Some(("suppress.done", &[]))))
    })
    .await
}

/// `POST /ui/customers/{id}/unsuppress`
pub async fn unsuppress(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, SUPPORT, &form.clone(), |v| async move {
        // Undoing what may be the customer's own unsubscribe takes a reason, for the audit log.
        let reason = form.get("reason").map(|r| r.trim()).unwrap_or("");
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Said::new("suppress.bad_reason").into());
        }
        let c = u.api.store.find_customer(&id).await?;
        let removed = u.api.store.unsuppress_person(&c.email, &c.id).await?;
        let back = format!("/ui/customers/{}", super::encode(&c.id));
        if removed.is_empty() {
            return Ok(see_other(&back, Some(("suppress.nothing", &[]))));
        }
        let detail = format!("{reason} ({})", removed.join(", "));
        u.audit(&v.name, "address_unsuppressed", &c.email, &detail)
            .await;
        // Follow-ups still running will send their next steps now: said, so that support can
        // end them (one whose step fell due while mail was stopped has ended there).
        let enrollments = u.api.store.customer_enrollments(&c.id).await?;
        let running = enrollments.iter().filter(|e| e.state == "active").count();
        if running > 0 {
            let n = running.to_string();
            let flash = ("suppress.undone_running", &[("n", n.as_str())][..]);
            return Ok(see_other(&back, Some(flash)));
        }
        Ok(see_other(&back, Some(("suppress.undone", &[]))))
    })
    .await
}

/// `GET /ui/messages/{id}`: one message as it was rendered.
pub async fn message(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = ui.clone();
    let back = format!("/ui/messages/{}", super::encode(&id));
    ui.guard(&headers, SUPPORT, &back, |v| async move {
        let n = message_id(&id)?;
        let row = u
            .api
            .store
            .outbox_row(n)
            .await?
            .ok_or_else(|| UiError::NotFound(Said::new("missing.message").with("id", n)))?;
        let view = crate::customer_view::message_view(&row, v.zone);
        let title = format!("{} #{n}", i18n::text(v.lang, "message.title"));
        u.page(
            Some(&v),
            v.lang,
            "message.html",
            "customers",
            &title,
            minijinja::context! {
                m => view, html => row.html, text => row.body_text,
                customer => row.customer_id, names => u.scenario_names(),
            },
        )
    })
    .await
}

/// `POST /ui/messages/{id}/cancel`: cancels a queued message; back to `back`.
pub async fn cancel(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, SUPPORT, &form.clone(), |v| async move {
        let id = message_id(&id)?;
        let now = to_millis(u.api.clock.now());
        let row = u
            .api
            .store
            .outbox_row(id)
            .await?
            .ok_or_else(|| UiError::NotFound(Said::new("missing.message").with("id", id)))?;
        let by = crate::reasons::Reason::CancelledBySupport {
            name: v.name.clone(),
        };
        let cancelled = u.api.store.cancel(Some(id), None, &by, now).await?;
        let back = form
            .get("back")
            .cloned()
            .unwrap_or_else(|| format!("/ui/customers/{}", super::encode(&row.customer_id)));
        let n = id.to_string();
        if cancelled.is_empty() {
            // Read again: a double click's second request finds it cancelled by the first.
            let now_status = u.api.store.outbox_row(id).await?.map(|r| r.status);
            let status = now_status.unwrap_or(row.status);
            if status == "cancelled" {
                let flash = ("message.already_cancelled", &[("id", n.as_str())][..]);
                return Ok(see_other(&back, Some(flash)));
            }
            return Err(Said::new("message.not_queued")
                .with("id", id)
                .with("state", i18n::text(v.lang, &format!("state.{status}")))
                .into());
        }
        u.audit(&v.name, "message_cancelled", &id.to_string(), &row.subject)
            .await;
        Ok(see_other(
            &back,
            Some(("message.cancelled", &[("id", n.as_str())])),
        ))
    })
    .await
}

/// `POST /ui/enrollments/{id}/end`: support stops a follow-up (as `rebuy enrollment end`): no
/// further step, its queued messages cancelled; the reason is the form's, else "ended by
/// support", with the user's name either way.
pub async fn end_followup(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, SUPPORT, &form.clone(), |v| async move {
        let id: i64 = id
            .parse()
            .map_err(|_| UiError::NotFound(Said::new("missing.followup_id").with("id", &id)))?;
        let said = form.get("reason").map(|r| r.trim()).unwrap_or_default();
        if said.chars().count() > 200 || said.contains('\0') {
            return Err(Said::new("enrollment.bad_reason").into());
        }
        let reason = if said.is_empty() {
            crate::reasons::Reason::EndedBySupport {
                name: v.name.clone(),
            }
            .to_string()
        } else {
            format!("{said} ({})", v.name)
        };
        let now = to_millis(u.api.clock.now());
        let ended = u
            .api
            .store
            .end_enrollments(&crate::store::EndWhich::Ids(&[id]), &reason, now)
            .await?;
        let Some(e) = ended.first() else {
            return Err(Said::new("enrollment.not_running").with("id", id).into());
        };
        // Like `followup_started`: the customer, then the scenario and enrollment.
        let detail = format!("{} (enrollment {id}): {reason}", e.scenario_id);
        u.audit(&v.name, "followup_ended", &e.customer_id, &detail)
            .await;
        let back = form
            .get("back")
            .cloned()
            .unwrap_or_else(|| "/ui/customers".into());
        let n = id.to_string();
        Ok(see_other(
            &back,
            Some(("followup.ended", &[("id", n.as_str())])),
        ))
    })
    .await
}

/// A message id from a path: a whole number, else no such message.
pub(super) fn message_id(id: &str) -> Result<i64, UiError> {
    id.parse()
        .map_err(|_| UiError::NotFound(Said::new("missing.message_id").with("id", id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::model::Reason;
    use crate::recommend_view::{Again, Shown};

    fn shown(reason: Reason, because: Option<&str>, again: Option<Again>) -> Shown {
        Shown {
            sku: "LO-02".into(),
            name: String::new(),
            score: 1.0,
            reason,
            because: because.map(str::to_string),
            why: "in English".into(),
            again,
            product: None,
        }
    }

    #[test]
    fn why_a_product_is_recommended_is_said_in_the_pages_language() {
        let ja = i18n::Lang::Ja;
        let together = shown(Reason::BoughtTogether, Some("LO-01"), None);
        assert_eq!(why_in(ja, &together), "LO-01 と一緒に買われています");
        assert_eq!(
            why_in(i18n::Lang::En, &together),
            "bought together with LO-01"
        );
        let popular = shown(Reason::Popular, None, None);
        assert_eq!(why_in(ja, &popular), "最近よく買われています");
        let due = Again {
            share: 0.424,
            days: 29.6,
        };
        let again = shown(Reason::DueAgain, Some("LO-02"), Some(due));
        assert_eq!(
            why_in(ja, &again),
            "そろそろ再購入の時期です: 購入者の42%がおよそ30日ごとに買い直しています"
        );
        for reason in [Reason::BoughtNext, Reason::UpgradeOf, Reason::MovedUpFrom] {
            let said = why_in(ja, &shown(reason, Some("LO-01"), None));
            assert!(said.contains("LO-01") && !said.contains("why."), "{said}");
        }
    }
}
