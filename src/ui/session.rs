//! Signing in and out: the session cookie (HttpOnly, SameSite=Strict, Secure behind HTTPS),
//! the CSRF token every form carries, sign-in attempts limited per user name, and who is
//! looking at a page (`Viewer`: name, role, language, time zone).

use super::i18n::{self, Lang};
use super::{see_other, PageResult, Ui, UiError};
use crate::clock::to_millis;
use crate::http::{hash_token, new_token};
use crate::users::{decoy_hash, verify_password, Role};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;

const SESSION_COOKIE: &str = "rebuy_session";
/// The sign-in form's own CSRF cookie (double submit: no session exists yet).
const LOGIN_COOKIE: &str = "rebuy_login";
/// How long a session lasts after signing in.
const SESSION_HOURS: i64 = 12;
/// Sign-in attempts per user name per minute.
const ATTEMPTS_PER_MINUTE: u32 = 5;

pub type LoginLimiter = DefaultKeyedRateLimiter<String>;

pub fn limiter() -> LoginLimiter {
    RateLimiter::keyed(Quota::per_minute(
        NonZeroU32::new(ATTEMPTS_PER_MINUTE).expect("not zero"),
    ))
}

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
    pub lang: Lang,
    pub zone: chrono_tz::Tz,
    pub csrf: String,
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether the request came over HTTPS (a reverse proxy says so), so cookies get `Secure`.
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let c = Cookie::build((name, value))
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(behind_https(headers))
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Constant-time comparison of a presented token with the expected one.
fn same(presented: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The language of a request without a session: the browser's.
pub fn browser_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

impl Ui {
    /// The signed-in viewer of this request, if any.
    pub(super) async fn viewer(&self, headers: &HeaderMap) -> Result<Option<Viewer>, UiError> {
        let Some(token) = cookie_value(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let now = to_millis(self.api.clock.now());
        let Some(s) = self.api.store.session(&hash_token(token), now).await? else {
            return Ok(None);
        };
        let Some(role) = Role::parse(&s.user.role) else {
            return Ok(None);
        };
        Ok(Some(Viewer {
            lang: s
                .user
                .lang
                .as_deref()
                .and_then(Lang::parse)
                .unwrap_or_else(|| browser_lang(headers)),
            zone: s
                .user
                .timezone
                .as_deref()
                .and_then(|z| z.parse().ok())
                .unwrap_or(self.api.zone),
            name: s.user.name,
            role,
            csrf: s.csrf,
        }))
    }

    /// Runs `page` for a signed-in viewer whose role is one of `roles` (admin always is);
    /// someone not signed in is sent to sign in and back, anyone else gets 403.
    pub(super) async fn guard<F, Fut>(
        self: &Arc<Self>,
        headers: &HeaderMap,
        roles: &[Role],
        back_to: &str,
        page: F,
    ) -> Response
    where
        F: FnOnce(Viewer) -> Fut,
        Fut: Future<Output = PageResult>,
    {
        self.guarded(headers, roles, back_to, "/ui", page).await
    }

    /// `guard`, with the page an error page links back to.
    async fn guarded<F, Fut>(
        self: &Arc<Self>,
        headers: &HeaderMap,
        roles: &[Role],
        back_to: &str,
        error_back: &str,
        page: F,
    ) -> Response
    where
        F: FnOnce(Viewer) -> Fut,
        Fut: Future<Output = PageResult>,
    {
        let lang = browser_lang(headers);
        let v = match self.viewer(headers).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                let next = super::encode(back_to);
                return axum::response::Redirect::to(&format!("/ui/login?next={next}"))
                    .into_response();
            }
            Err(e) => return self.fail(None, lang, e),
        };
        if !v.role.may(roles) {
            tracing::info!(user = %v.name, role = v.role.as_str(), page = back_to, "refused: not for this role");
            return self.fail(Some(&v), v.lang, UiError::Forbidden);
        }
        match page(v.clone()).await {
            Ok(r) => r,
            Err(e) => self.fail_back(Some(&v), v.lang, e, error_back),
        }
    }

    /// `guard` for a form: also refuses (403) a form without this session's CSRF token. A
    /// refusal's page links back to the form's `back` (a page under `/ui`), else to `/ui`.
    pub(super) async fn guard_form<F, Fut>(
        self: &Arc<Self>,
        headers: &HeaderMap,
        roles: &[Role],
        form: &HashMap<String, String>,
        page: F,
    ) -> Response
    where
        F: FnOnce(Viewer) -> Fut,
        Fut: Future<Output = PageResult>,
    {
        let presented = form.get("csrf").cloned().unwrap_or_default();
        let back = form
            .get("back")
            .map(String::as_str)
            .filter(|b| super::is_ours(b))
            .unwrap_or("/ui");
        self.guarded(headers, roles, "/ui", back, |v| async move {
            if !same(&presented, &v.csrf) {
                tracing::warn!(user = %v.name, "a form without its CSRF token was refused");
                return Err(UiError::Csrf);
            }
            page(v).await
        })
        .await
    }
}

/// `GET /ui/login`: the form, with a fresh CSRF cookie.
pub async fn login_page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = browser_lang(&headers);
    let next = q.get("next").cloned().unwrap_or_default();
    login_form(&ui, &headers, lang, &next, "", None, StatusCode::OK)
}

fn login_form(
    ui: &Ui,
    headers: &HeaderMap,
    lang: Lang,
    next: &str,
    name: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (csrf, _) = new_token();
    let flash =
        (error.is_none() && next == "signed_out").then(|| i18n::text(lang, "login.signed_out"));
    let data = minijinja::context! {
        login_csrf => csrf.clone(), next => next, name => name, error => error, flash => flash,
    };
    let title = i18n::text(lang, "login.title");
    let mut r = match ui.page(None, lang, "login.html", "", &title, data) {
        Ok(r) => r,
        Err(e) => return ui.fail(None, lang, e),
    };
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &csrf, 3600),
    );
    r
}

/// `POST /ui/login`: checks the password (argon2, off the async threads), at most
/// `ATTEMPTS_PER_MINUTE` tries per user name a minute; signs in and goes to `next`.
pub async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let lang = browser_lang(&headers);
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (name, password, next) = (get("name").trim().to_string(), get("password"), get("next"));
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or("");
    if !same(&get("csrf"), expected) {
        return ui.fail(None, lang, UiError::Csrf);
    }
    if ui.logins.check_key(&name.to_lowercase()).is_err() {
        ui.audit(&name, "sign_in_refused", &name, "too many attempts")
            .await;
        let error = Some(i18n::text(lang, "login.too_many"));
        return login_form(
            &ui,
            &headers,
            lang,
            &next,
            &name,
            error,
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let user = match ui.api.store.user(&name).await {
        Ok(u) => u,
        Err(e) => return ui.fail(None, lang, e.into()),
    };
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        ui.audit(&name, "sign_in_refused", &name, "wrong name or password")
            .await;
        let error = Some(i18n::text(lang, "login.wrong"));
        return login_form(
            &ui,
            &headers,
            lang,
            &next,
            &name,
            error,
            StatusCode::UNAUTHORIZED,
        );
    };
    let (token, token_hash) = new_token();
    let (csrf, _) = new_token();
    let now = to_millis(ui.api.clock.now());
    let expires = now + SESSION_HOURS * 3_600_000;
    if let Err(e) = ui
        .api
        .store
        .create_session(&token_hash, &user.name, &csrf, now, expires)
        .await
    {
        return ui.fail(None, lang, e.into());
    }
    ui.audit(&user.name, "signed_in", &user.name, "").await;
    // `see_other` keeps the redirect under /ui.
    let mut r = see_other(&next, None);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &token, SESSION_HOURS * 3600),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_COOKIE, "", 0),
    );
    r
}

/// `POST /ui/logout`: ends the session.
pub async fn logout(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let token = cookie_value(&headers, SESSION_COOKIE).map(hash_token);
    let store = ui.api.store.clone();
    let mut r = ui
        .guard_form(
            &headers,
            &[Role::Support, Role::Marketer],
            &form,
            |_| async move {
                if let Some(t) = token {
                    store.end_session(&t).await?;
                }
                Ok(see_other("/ui/login?next=signed_out", None))
            },
        )
        .await;
    if r.status().is_redirection() {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&headers, SESSION_COOKIE, "", 0),
        );
    }
    r
}

/// `POST /ui/settings/lang`: the viewer's language from now on.
pub async fn set_lang(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let store = ui.api.store.clone();
    let lang = form.get("lang").and_then(|l| Lang::parse(l));
    let back = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.find("/ui").map(|i| r[i..].to_string()))
        .unwrap_or_else(|| "/ui".into());
    ui.guard_form(
        &headers,
        &[Role::Support, Role::Marketer],
        &form,
        |v| async move {
            let lang = lang.ok_or_else(|| UiError::from(super::Said::new("lang.unknown")))?;
            store.set_user_lang(&v.name, Some(lang.code())).await?;
            Ok(see_other(&back, None))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rebuy_session=abc.def; b=2"),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("abc.def"));
        assert_eq!(cookie_value(&h, LOGIN_COOKIE), None);
    }

    #[test]
    fn a_session_cookie_is_http_only_strict_and_secure_behind_https() {
        let mut h = HeaderMap::new();
        let plain = set_cookie(&h, SESSION_COOKIE, "t", 60);
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(&h, SESSION_COOKIE, "t", 60)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }

    #[test]
    fn tokens_compare_whole_and_never_empty() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
        assert!(!same("", ""));
    }

    #[test]
    fn sign_in_attempts_are_limited_per_name() {
        let l = limiter();
        for _ in 0..ATTEMPTS_PER_MINUTE {
            assert!(l.check_key(&"aya".to_string()).is_ok());
        }
        assert!(l.check_key(&"aya".to_string()).is_err());
        assert!(l.check_key(&"ken".to_string()).is_ok());
    }
}
