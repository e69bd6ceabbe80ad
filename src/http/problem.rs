//! Refusals as `application/problem+json` (RFC 9457): a title, the status, and for invalid
//! input every field that is wrong as a JSON pointer into the request body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One wrong field: where it is in the body (`/orders/3/placed_at`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub at: String,
    pub message: String,
}

/// A refusal (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub title: String,
    #[serde(serialize_with = "as_u16")]
    #[schema(value_type = u16)]
    pub status: StatusCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

fn as_u16<S: serde::Serializer>(s: &StatusCode, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_u16(s.as_u16())
}

impl Problem {
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: title.into(),
            status,
            detail: None,
            errors: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 422 with the wrong fields.
    pub fn invalid(title: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, title)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found").detail(what)
    }

    /// A failure on rebuy's side: logged in full, answered without internals.
    pub fn internal(e: &anyhow::Error) -> Self {
        tracing::error!(error = %crate::diagnostic::explained(e), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            .detail("rebuy could not complete the request; nothing was changed unless the reply said so. The log has the reason.")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // RFC 9110: a 401 says how to authenticate.
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rebuy\""),
            );
        }
        r
    }
}

/// Store and engine errors: an unknown customer or scenario is the caller's (404, 422), the
/// rest is rebuy's (500).
impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        let store = e.downcast_ref::<crate::store::StoreError>();
        if let Some(what) = store.and_then(crate::store::StoreError::not_found) {
            return Problem::not_found(what);
        }
        if let Some(crate::engine::InputError(what)) = e.downcast_ref() {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid request")
                .detail(what.clone());
        }
        Problem::internal(&e)
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        anyhow::Error::from(e).into()
    }
}
