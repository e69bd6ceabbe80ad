//! Bearer tokens: `rebuy token create` makes one and stores only its SHA-256; every `/v1`
//! request presents it, and its scope decides what it may do.

use super::problem::Problem;
use crate::store::{Store, TokenRow};
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What a token may do. `admin` may do everything; `support` may also read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Post customers, orders and events (a shop platform, an import job).
    Ingest,
    /// Look up customers, start and stop follow-ups, cancel messages (support tools).
    Support,
    /// Read status, scenarios and reports (dashboards).
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Support => "support",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Scope::Ingest, Scope::Support, Scope::Read, Scope::Admin]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// Whether a token of this scope may do what `need` allows.
    pub fn allows(self, need: Scope) -> bool {
        self == need || self == Scope::Admin || (self == Scope::Support && need == Scope::Read)
    }
}

/// A new random token (`rbk_` and 43 characters) and the hash stored for it.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "rbk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The caller's token if it is live and its scope allows `need`: 401 without a valid token,
/// 403 with one of the wrong scope.
pub async fn authorize(
    store: &Store,
    headers: &HeaderMap,
    need: Scope,
) -> Result<TokenRow, Problem> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme's name is case-insensitive (RFC 9110, 11.1): `bearer` is `Bearer`.
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = presented else {
        return Err(unauthorized(
            "send the header `Authorization: Bearer <token>`; `rebuy token create` makes a token",
        ));
    };
    let Some(row) = store.token_by_hash(&hash_token(token)).await? else {
        return Err(unauthorized(
            "the token is unknown or revoked; `rebuy token list` shows the live ones",
        ));
    };
    let have = Scope::parse(&row.scope).unwrap_or(Scope::Read);
    if !have.allows(need) {
        return Err(
            Problem::new(StatusCode::FORBIDDEN, "forbidden").detail(format!(
                "token '{}' has scope {}; this needs {} (or admin)",
                row.name,
                have.as_str(),
                need.as_str()
            )),
        );
    }
    Ok(row)
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized").detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_only_as_documented() {
        use Scope::*;
        assert!(Admin.allows(Ingest) && Admin.allows(Support) && Admin.allows(Read));
        assert!(Support.allows(Read) && Support.allows(Support));
        assert!(!Support.allows(Ingest) && !Support.allows(Admin));
        assert!(!Read.allows(Support) && !Ingest.allows(Read) && !Ingest.allows(Support));
        for s in [Ingest, Support, Read, Admin] {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn a_token_is_random_and_only_its_hash_is_kept() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("rbk_") && a.len() == 47, "{a}");
        assert_eq!(ha, hash_token(&a));
        assert_ne!(ha, hb);
        assert!(!ha.contains(&a[4..]));
    }
}
