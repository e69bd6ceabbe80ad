//! The daemon's small HTTP endpoint (axum): the unsubscribe page behind every marketing
//! mail's link, and the RFC 8058 one-click POST that mail clients send for
//! `List-Unsubscribe-Post`. A link is honoured only if its HMAC token verifies; nothing else is
//! served.

use crate::clock::{to_millis, Clock};
use crate::delivery::Unsubscriber;
use crate::store::{Store, SuppressionKind};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

struct Ctx {
    store: Store,
    unsubscriber: Unsubscriber,
    shop: String,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Link {
    c: Option<String>,
    t: Option<String>,
}

impl Link {
    /// The link's customer and token from its query; one given twice (a link mangled by a mail
    /// client) counts as not given, so the customer sees the page for an invalid link rather
    /// than the framework's words.
    fn of(query: Vec<(String, String)>) -> Self {
        let one = |key: &str| {
            let mut values = query.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
            match (values.next(), values.next()) {
                (Some(v), None) => Some(v.clone()),
                _ => None,
            }
        };
        Link {
            c: one("c"),
            t: one("t"),
        }
    }
}

type Page = (StatusCode, Html<String>);

/// The routes: GET shows a confirmation page (mail scanners follow links, so a GET never
/// unsubscribes), POST unsubscribes (the page's button and one-click alike).
pub fn router(
    store: Store,
    unsubscriber: Unsubscriber,
    shop: &str,
    clock: Arc<dyn Clock>,
) -> Router {
    let path = unsubscriber.path();
    let ctx = Arc::new(Ctx {
        store,
        unsubscriber,
        shop: shop.to_string(),
        clock,
    });
    Router::new()
        .route(&path, get(confirm_page).post(unsubscribe))
        .with_state(ctx)
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// The customer a link names, if its token is genuine.
fn verified<'a>(ctx: &Ctx, link: &'a Link) -> Option<&'a str> {
    let (c, t) = (link.c.as_deref()?, link.t.as_deref()?);
    ctx.unsubscriber.verify(c, t).then_some(c)
}

async fn confirm_page(
    State(ctx): State<Arc<Ctx>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let link = Link::of(query);
    if verified(&ctx, &link).is_none() {
        return invalid(&ctx);
    }
    page(
        &ctx,
        StatusCode::OK,
        "<p>メールマガジンの配信を停止しますか？<br>Stop marketing e-mail from us?</p>\
         <form method=\"post\"><button type=\"submit\">配信を停止する / Unsubscribe</button></form>",
    )
}

async fn unsubscribe(
    State(ctx): State<Arc<Ctx>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Page {
    let link = Link::of(query);
    let Some(customer) = verified(&ctx, &link) else {
        return invalid(&ctx);
    };
    let email = match ctx.store.find_customer(customer).await {
        Ok(c) => c.email,
        Err(_) => {
            return page(
                &ctx,
                StatusCode::NOT_FOUND,
                "<p>このリンクのお客様の登録はもうありません。<br>\
                 This link's customer no longer exists.</p>",
            )
        }
    };
    let now = to_millis(ctx.clock.now());
    match ctx
        .store
        .suppress(
            &email,
            SuppressionKind::Unsubscribe,
            "unsubscribe link",
            Some(customer),
            now,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(customer, "unsubscribed");
            page(
                &ctx,
                StatusCode::OK,
                "<p>配信を停止しました。ご注文に関するご連絡は引き続きお送りします。<br>\
                 You are unsubscribed. We will still send messages about your orders.</p>",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record an unsubscribe");
            page(
                &ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "<p>ただいま処理できませんでした。しばらくしてからもう一度お試しください。<br>\
                 Something went wrong on our side; please try again in a minute.</p>",
            )
        }
    }
}

fn invalid(ctx: &Ctx) -> Page {
    page(
        ctx,
        StatusCode::FORBIDDEN,
        "<p>このリンクは無効です。メールに記載のリンクをそのままお使いください。<br>\
         This link is not valid; please use the link from the e-mail as it is.</p>",
    )
}

fn page(ctx: &Ctx, status: StatusCode, body: &str) -> Page {
    let shop = minijinja::HtmlEscape(&ctx.shop).to_string();
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>{shop}</title></head>\
             <body><h1>{shop}</h1>{body}</body></html>"
        )),
    )
}
