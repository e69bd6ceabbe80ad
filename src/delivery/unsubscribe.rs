//! Per-customer unsubscribe links, signed with an HMAC-SHA256 secret so that they cannot be
//! guessed or forged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct Unsubscriber {
    base_url: String,
    /// The HMAC keyed with the secret, cloned for each token (keying hashes the key twice).
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Unsubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsubscriber")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Unsubscriber {
    pub fn new(base_url: &str, secret: &[u8]) -> Self {
        Self {
            base_url: base_url.to_string(),
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    /// The token for a customer: HMAC-SHA256 of the id, hex, first 32 characters (128 bits).
    pub fn token(&self, customer_id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(customer_id.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Checks a token in constant time.
    pub fn verify(&self, customer_id: &str, token: &str) -> bool {
        let Ok(given) = hex::decode(token) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(customer_id.as_bytes());
        given.len() == 16 && mac.verify_truncated_left(&given).is_ok()
    }

    pub fn url(&self, customer_id: &str) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}c={}&t={}",
            self.base_url,
            crate::domain::percent_encode(customer_id),
            self.token(customer_id)
        )
    }
}

impl Unsubscriber {
    /// The path of `base_url`, where the daemon serves the page (`/` if it has none).
    pub fn path(&self) -> String {
        match crate::domain::url_path(&self.base_url) {
            "" => "/".into(),
            path => path.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_path_is_the_base_urls() {
        let path = |u: &str| Unsubscriber::new(u, b"s").path();
        assert_eq!(
            path("https://shop.example/mail/unsubscribe?x=1"),
            "/mail/unsubscribe"
        );
        assert_eq!(path("https://shop.example"), "/");
        assert_eq!(path("http://127.0.0.1:8025/u"), "/u");
    }

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let u = Unsubscriber::new("https://shop.example/u", b"secret");
        let t = u.token("c-1");
        // The first 128 bits of HMAC-SHA256("secret", "c-1") (Python's hmac module): links
        // already sent keep working.
        assert_eq!(t, "a100a5424bb71d25e03a16053b72b17e");
        assert!(u.verify("c-1", &t));
        assert!(!u.verify("c-2", &t));
        assert!(!u.verify("c-1", "00000000000000000000000000000000"));
        assert!(!Unsubscriber::new("https://shop.example/u", b"other").verify("c-1", &t));
        assert_eq!(
            u.url("c 1/é"),
            format!(
                "https://shop.example/u?c=c%201%2F%C3%A9&t={}",
                u.token("c 1/é")
            )
        );
    }
}
