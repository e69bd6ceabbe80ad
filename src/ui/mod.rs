//! The pages under `/ui` for support staff, marketers and admins: server-rendered HTML
//! (minijinja templates shipped in the binary, a vendored htmx for the search box), signed in
//! with a session cookie, each page and action open to the roles it names, every form guarded
//! by a CSRF token, every action written to the audit log. Served by `rebuy run` and
//! `rebuy serve` on the same address as the API, over the same store and engine.

mod backtests;
mod cache;
mod charts;
pub mod digest;
mod i18n;
mod marketing;
mod ops;
mod segments;
mod session;
mod support;
mod targets;
mod templates;

pub use backtests::Launcher;
pub use i18n::Lang;

use crate::http::Api;
use crate::users::Role;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use serde::Serialize;
use session::{LoginLimiter, Viewer};
use std::sync::Arc;

/// Every action the audit log records (each has its words in both languages).
pub const AUDIT_ACTIONS: &[&str] = &[
    "signed_in",
    "sign_in_refused",
    "followup_started",
    "followup_ended",
    "message_cancelled",
    "message_retried",
    "address_suppressed",
    "address_unsuppressed",
    "backtest_started",
];

/// What the pages share.
pub struct Ui {
    api: Arc<Api>,
    env: Environment<'static>,
    logins: LoginLimiter,
    /// The shop's currency, for amounts without their own.
    currency: String,
    /// The scenario report the marketing pages draw, computed at most every few minutes.
    snapshots: cache::Cached<marketing::Snapshot>,
    /// The RFM grid and the cohorts the segments page draws.
    segment_figures: cache::Cached<segments::Figures>,
    /// The LTV targets' measured values (the targets are the engine's: reloaded on SIGHUP).
    target_figures: cache::Cached<targets::Figures>,
    /// The back-tests started from the pages.
    backtests: Arc<backtests::Backtests>,
}

/// What a page handler can fail with; each becomes a page in the viewer's language.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Nothing there, worded in the viewer's language.
    #[error("not found: {}", .0.english())]
    NotFound(Said),
    #[error("not for this role")]
    Forbidden,
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("{0}")]
    Invalid(String),
    /// A refusal the pages word themselves, in the viewer's language.
    #[error("{}", .0.english())]
    Said(Said),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A refusal worded in the viewer's language: a key of the i18n tables and its `{name}` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub key: &'static str,
    pub values: Vec<(&'static str, String)>,
}

impl Said {
    pub fn new(key: &'static str) -> Self {
        Said {
            key,
            values: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl ToString) -> Self {
        self.values.push((name, value.to_string()));
        self
    }

    pub fn text(&self, lang: Lang) -> String {
        let values: Vec<(&str, &str)> = self.values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        i18n::fill(lang, self.key, &values)
    }

    fn english(&self) -> String {
        self.text(Lang::En)
    }
}

impl From<Said> for UiError {
    fn from(s: Said) -> Self {
        UiError::Said(s)
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NoCustomer { given, shared } => {
                let key = if shared {
                    "missing.shared_email"
                } else {
                    "missing.customer"
                };
                UiError::NotFound(Said::new(key).with("id", given))
            }
            crate::store::StoreError::NotFound(what) => {
                UiError::NotFound(Said::new("missing.other").with("what", what))
            }
            other => UiError::Internal(other.into()),
        }
    }
}

impl UiError {
    /// An engine error: the user's mistake (a bad variable, no such step) or a failure.
    fn from_engine(e: anyhow::Error) -> Self {
        if let Some(input) = e.downcast_ref::<crate::engine::InputError>() {
            return UiError::Invalid(input.to_string());
        }
        match e.downcast::<crate::store::StoreError>() {
            Ok(s) => s.into(),
            Err(e) => UiError::Internal(e),
        }
    }
}

pub type PageResult = Result<Response, UiError>;

/// The `/ui` routes over `api`.
pub fn router(api: Arc<Api>, currency: &str, launcher: Option<Launcher>) -> anyhow::Result<Router> {
    let ui = Arc::new(Ui {
        api,
        env: templates::environment()?,
        logins: session::limiter(),
        currency: currency.to_string(),
        snapshots: Default::default(),
        segment_figures: Default::default(),
        target_figures: Default::default(),
        backtests: Arc::new(backtests::Backtests::new(launcher)),
    });
    // The first marketing page should not wait seconds for the report of a large shop.
    ui.refresh_snapshot_in_background();
    Ok(Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/settings/lang", post(session::set_lang))
        .route("/ui/static/{file}", get(asset))
        .route("/ui/customers", get(support::search))
        .route("/ui/customers/{id}", get(support::customer))
        .route(
            "/ui/customers/{id}/followup",
            get(support::followup_form).post(support::followup_start),
        )
        .route(
            "/ui/customers/{id}/followup/preview",
            get(support::back_to_customer).post(support::followup_preview),
        )
        .route("/ui/customers/{id}/suppress", post(support::suppress))
        .route("/ui/customers/{id}/unsuppress", post(support::unsuppress))
        .route("/ui/enrollments/{id}/end", post(support::end_followup))
        .route("/ui/messages/{id}", get(support::message))
        .route("/ui/messages/{id}/cancel", post(support::cancel))
        .route("/ui/messages/{id}/retry", post(ops::retry))
        .route("/ui/scenarios", get(marketing::scenarios))
        .route("/ui/scenarios/{id}", get(marketing::scenario))
        .route("/ui/scenarios/{id}/preview", get(marketing::preview))
        .route("/ui/segments", get(segments::page))
        .route("/ui/targets", get(targets::page))
        .route("/ui/backtests", get(backtests::page).post(backtests::start))
        .route("/ui/backtests/{id}", get(backtests::run))
        .route("/ui/status", get(ops::status))
        .route("/ui/audit", get(ops::audit))
        // Any other address under /ui (a typo, a trailing slash): a page, not the API's JSON.
        .route("/ui/{*rest}", axum::routing::any(missing_page))
        .with_state(ui))
}

/// A page for an address under `/ui` that is none of ours, in the viewer's language (the
/// address itself is not repeated: a link cannot put words of its own on a page).
async fn missing_page(
    axum::extract::State(ui): axum::extract::State<Arc<Ui>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let roles = [Role::Support, Role::Marketer];
    ui.guard(&headers, &roles, "/ui", |_| async move {
        Err(UiError::NotFound(Said::new("missing.page")))
    })
    .await
}

/// `/ui`: each role's first page.
async fn home(
    axum::extract::State(ui): axum::extract::State<Arc<Ui>>,
    headers: axum::http::HeaderMap,
) -> Response {
    match ui.viewer(&headers).await {
        Ok(Some(v)) => Redirect::to(match v.role {
            Role::Support => "/ui/customers",
            Role::Marketer => "/ui/scenarios",
            Role::Admin => "/ui/status",
        })
        .into_response(),
        Ok(None) => Redirect::to("/ui/login").into_response(),
        Err(e) => ui.fail(None, Lang::En, e),
    }
}

/// The vendored script and the style sheet, cached for a day.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "style.css" => (
            include_bytes!("static/style.css"),
            "text/css; charset=utf-8",
        ),
        "htmx.min.js" => (
            include_bytes!("static/htmx.min.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

impl Ui {
    /// Renders `template` with `data` and what every page has (the viewer, their language,
    /// zone and CSRF token, the roles' menus).
    fn page<S: Serialize>(
        &self,
        viewer: Option<&Viewer>,
        lang: Lang,
        template: &str,
        section: &str,
        title: &str,
        data: S,
    ) -> PageResult {
        let tmpl = self
            .env
            .get_template(template)
            .map_err(|e| anyhow::anyhow!("template {template}: {e}"))?;
        let role = viewer.map(|v| v.role);
        let ctx = minijinja::context! {
            lang => lang.code(),
            zone => viewer.map_or(self.api.zone.name(), |v| v.zone.name()),
            currency => self.currency,
            user => viewer.map(|v| v.name.clone()),
            csrf => viewer.map(|v| v.csrf.clone()),
            may_support => role.is_some_and(|r| r.may(&[Role::Support])),
            may_market => role.is_some_and(|r| r.may(&[Role::Marketer])),
            is_admin => role == Some(Role::Admin),
            section => section,
            title => title,
            ..minijinja::Value::from_serialize(&data)
        };
        let html = tmpl
            .render(ctx)
            .map_err(|e| anyhow::anyhow!("template {template}: {e:#}"))?;
        Ok(html_response(StatusCode::OK, html))
    }

    /// The page for an error, in the viewer's language; internal errors are logged.
    fn fail(&self, viewer: Option<&Viewer>, lang: Lang, e: UiError) -> Response {
        self.fail_back(viewer, lang, e, "/ui")
    }

    /// `fail`, the page linking back to `back`.
    fn fail_back(&self, viewer: Option<&Viewer>, lang: Lang, e: UiError, back: &str) -> Response {
        let t = |k: &str| i18n::text(lang, k);
        let (status, heading, message) = match &e {
            UiError::NotFound(said) => {
                (StatusCode::NOT_FOUND, t("error.not_found"), said.text(lang))
            }
            UiError::Forbidden => (
                StatusCode::FORBIDDEN,
                t("error.forbidden"),
                t("error.forbidden_text"),
            ),
            UiError::Csrf => (StatusCode::FORBIDDEN, t("error.csrf"), t("error.csrf_text")),
            UiError::Invalid(why) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                t("error.invalid"),
                why.clone(),
            ),
            UiError::Said(said) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                t("error.invalid"),
                said.text(lang),
            ),
            UiError::Internal(err) => {
                tracing::error!(error = %crate::diagnostic::explained(err), "a page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t("error.internal"),
                    t("error.internal_text"),
                )
            }
        };
        let data = minijinja::context! { heading => heading, message => message, back => back };
        match self.page(viewer, lang, "error.html", "", &heading, data) {
            Ok(mut r) => {
                *r.status_mut() = status;
                r
            }
            Err(_) => (status, message).into_response(),
        }
    }

    /// The loaded scenarios' names by id, for pages that show the scenario of a message or a
    /// chart.
    fn scenario_names(&self) -> std::collections::HashMap<String, String> {
        self.api
            .engine()
            .scenarios()
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect()
    }

    /// Writes one line to the audit log; a failure to write it is logged, not shown.
    async fn audit(&self, who: &str, action: &str, target: &str, detail: &str) {
        let at = crate::clock::to_millis(self.api.clock.now());
        if let Err(e) = self.api.store.audit(at, who, action, target, detail).await {
            tracing::error!(error = %e, action, target, "could not write the audit log");
        }
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // No page is shown inside another site's frame, and none is cached by a shared proxy.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// The messages a page shows once after a form (`?flash=KEY&id=…&due=…`); only these keys,
/// so that a link cannot put words of its own on a page.
const FLASHES: &[&str] = &[
    "followup.started",
    "followup.started_suppressed",
    "followup.started_no_consent",
    "followup.already",
    "followup.ended",
    "message.cancelled",
    "message.already_cancelled",
    "message.retried",
    "suppress.done",
    "suppress.already",
    "suppress.undone",
    "suppress.undone_running",
    "suppress.nothing",
    "login.signed_out",
];

/// Whether `to` is a page of ours to send the viewer back to (never another site's).
fn is_ours(to: &str) -> bool {
    (to == "/ui" || to.starts_with("/ui/") || to.starts_with("/ui?")) && !to.starts_with("/ui//")
}

/// After a form: back to `to` (a path under /ui only), with `flash` (a key of `FLASHES`
/// and its values) shown once.
fn see_other(to: &str, flash: Option<(&str, &[(&str, &str)])>) -> Response {
    let to = if is_ours(to) { to } else { "/ui" };
    let mut target = to.to_string();
    if let Some((key, values)) = flash {
        let sep = if to.contains('?') { '&' } else { '?' };
        target.push(sep);
        target.push_str("flash=");
        target.push_str(key);
        for (k, v) in values {
            target.push('&');
            target.push_str(k);
            target.push('=');
            target.push_str(&encode(v));
        }
    }
    Redirect::to(&target).into_response()
}

/// The flash message a page's query asks for, in `lang`. Its values are checked, not shown as
/// given: `id` must be a number and `due` an RFC 3339 instant (shown in `zone`); a link with
/// anything else shows no message, so that it cannot put words of its own on a page.
fn flash_of(
    query: &std::collections::HashMap<String, String>,
    lang: Lang,
    zone: chrono_tz::Tz,
) -> Option<String> {
    let key = query.get("flash")?;
    if !FLASHES.contains(&key.as_str()) {
        return None;
    }
    let id = match query.get("id") {
        Some(id) => id.parse::<u64>().ok()?.to_string(),
        None => String::new(),
    };
    let n = match query.get("n") {
        Some(n) => n.parse::<u64>().ok()?.to_string(),
        None => String::new(),
    };
    let due = match query.get("due") {
        Some(due) => {
            let at = chrono::DateTime::parse_from_rfc3339(due).ok()?;
            templates::local_minute(at.to_utc(), zone)
        }
        None => String::new(),
    };
    Some(i18n::fill(
        lang,
        key,
        &[("id", &id), ("n", &n), ("due", &due)],
    ))
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
