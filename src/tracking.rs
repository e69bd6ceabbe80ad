//! Click and open tracking, the pure part: signed redirect and pixel links, rewriting the
//! links of a rendered HTML mail (lol_html), and telling a person's click from a prefetching
//! bot. The routes are in `http::tracking`, the rows in `store::tracking`.

use chrono::Duration;
use hmac::{Hmac, Mac};
use lol_html::{element, rewrite_str, RewriteStrSettings};
use sha2::Sha256;

/// What a tracked request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Open,
    Click,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Click => "click",
        }
    }
}

/// Signs and verifies tracking links. The HMAC covers the kind, the message and (for a click)
/// the target, so an altered target or a link moved to another message is refused.
#[derive(Clone)]
pub struct Tracker {
    /// Where the daemon's HTTP server is reached from outside, without a trailing slash.
    base_url: String,
    open_pixel: bool,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("base_url", &self.base_url)
            .field("open_pixel", &self.open_pixel)
            .finish_non_exhaustive()
    }
}

/// A message's id as it appears in its links: the Message-ID without its angle brackets.
pub fn link_id(message_id: &str) -> &str {
    message_id.trim_start_matches('<').trim_end_matches('>')
}

impl Tracker {
    pub fn new(base_url: &str, open_pixel: bool, secret: &[u8]) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            open_pixel,
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    /// The path under which the server answers tracking links (`/t` below base_url's path).
    pub fn path(&self) -> String {
        format!("{}/t", crate::domain::url_path(&self.base_url))
    }

    fn mac_of(&self, kind: Kind, message: &str, target: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        // A prefix of its own keeps these signatures apart from the unsubscribe tokens made
        // with the same secret.
        for part in ["rebuy-track", kind.as_str(), message, target] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// The signature: HMAC-SHA256, first 128 bits, hex.
    pub fn sign(&self, kind: Kind, message: &str, target: &str) -> String {
        hex::encode(&self.mac_of(kind, message, target).finalize().into_bytes()[..16])
    }

    /// Checks a signature in constant time.
    pub fn verify(&self, kind: Kind, message: &str, target: &str, sig: &str) -> bool {
        let Ok(given) = hex::decode(sig) else {
            return false;
        };
        given.len() == 16
            && self
                .mac_of(kind, message, target)
                .verify_truncated_left(&given)
                .is_ok()
    }

    /// The redirect that records a click on `target` in `message` (a link id).
    pub fn click_url(&self, message: &str, target: &str) -> String {
        format!(
            "{}/t/c/{}/{}?u={}",
            self.base_url,
            crate::domain::percent_encode(message),
            self.sign(Kind::Click, message, target),
            crate::domain::percent_encode(target)
        )
    }

    /// The 1×1 image that records an open of `message`.
    pub fn open_url(&self, message: &str) -> String {
        format!(
            "{}/t/o/{}/{}.gif",
            self.base_url,
            crate::domain::percent_encode(message),
            self.sign(Kind::Open, message, "")
        )
    }

    /// The HTML with every absolute http(s) link in an `<a href>` replaced by its signed
    /// redirect (but the unsubscribe link, which must work without us), and the open pixel
    /// at the end of the body when it is on. The text part is never touched: it stays
    /// readable. HTML that cannot be parsed is returned unchanged (links still work, only
    /// untracked).
    pub fn rewrite(&self, html: &str, message_id: &str, unsubscribe_url: &str) -> String {
        let message = link_id(message_id);
        let mut pixel_placed = !self.open_pixel;
        let pixel = format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">",
            self.open_url(message)
        );
        let settings = RewriteStrSettings::new()
            .append_element_content_handler(element!("a[href]", |el| {
                let Some(raw) = el.get_attribute("href") else {
                    return Ok(());
                };
                let target = html_escape::decode_html_entities(raw.trim()).into_owned();
                if trackable(&target) && target != unsubscribe_url {
                    el.set_attribute("href", &self.click_url(message, &target))?;
                }
                Ok(())
            }))
            .append_element_content_handler(element!("body", |el| {
                if !pixel_placed {
                    el.append(&pixel, lol_html::html_content::ContentType::Html);
                    pixel_placed = true;
                }
                Ok(())
            }));
        match rewrite_str(html, settings) {
            Ok(mut out) => {
                if !pixel_placed {
                    out.push_str(&pixel);
                }
                out
            }
            Err(err) => {
                tracing::warn!(error = %err, "the HTML could not be parsed; its links are left untracked");
                html.to_string()
            }
        }
    }
}

/// Whether a link is one we redirect: absolute http or https (not mailto:, tel:, anchors or
/// relative links, which a mail client could not follow through us anyway).
fn trackable(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Clicks and opens this soon after the message was handed to the mail server are machines
/// (link scanners at the receiving server), not the customer.
pub const BOT_WINDOW: Duration = Duration::seconds(1);

/// Why a request is a bot's and not counted, or None for a person. `head`: a HEAD request
/// (link checkers); `since_sent`: how long after the message was sent (None if unknown).
pub fn bot_reason(head: bool, since_sent: Option<Duration>) -> Option<&'static str> {
    if head {
        return Some("HEAD request (a link checker)");
    }
    match since_sent {
        Some(d) if d < BOT_WINDOW => Some("within a second of delivery (a prefetching scanner)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(pixel: bool) -> Tracker {
        Tracker::new("https://mail.shop.example/", pixel, b"secret-secret-secret")
    }

    #[test]
    fn links_are_rewritten_but_unsubscribe_mailto_and_anchors_are_not() {
        let t = tracker(false);
        let html = "<p><a href=\"https://shop.example/p?a=1&amp;b=2\">shop</a> \
                    <a href=\"mailto:help@shop.example\">mail</a> <a href=\"#top\">top</a> \
                    <a href=\"https://shop.example/u?c=1\">unsubscribe</a></p>";
        let out = t.rewrite(html, "<1.0.ab@shop.example>", "https://shop.example/u?c=1");
        let target = "https://shop.example/p?a=1&b=2";
        let expected = t.click_url("1.0.ab@shop.example", target);
        assert!(out.contains(&expected), "{out}");
        assert!(expected.starts_with("https://mail.shop.example/t/c/1.0.ab%40shop.example/"));
        assert!(out.contains("href=\"mailto:help@shop.example\""));
        assert!(out.contains("href=\"#top\""));
        assert!(out.contains("href=\"https://shop.example/u?c=1\""));
        assert!(!out.contains("/t/o/"), "no pixel unless asked: {out}");
    }

    #[test]
    fn the_pixel_goes_at_the_end_of_the_body_or_of_a_fragment() {
        let t = tracker(true);
        let out = t.rewrite("<html><body><p>hi</p></body></html>", "<m@x>", "");
        let pixel_at = out.find("/t/o/m%40x/").expect("pixel");
        assert!(pixel_at > out.find("<p>hi</p>").unwrap());
        assert!(pixel_at < out.find("</body>").unwrap());
        assert_eq!(out.matches("<img").count(), 1);
        let frag = t.rewrite("<p>hi</p>", "<m@x>", "");
        assert!(frag.starts_with("<p>hi</p><img"), "{frag}");
    }

    #[test]
    fn signatures_cover_kind_message_and_target() {
        let t = tracker(false);
        let sig = t.sign(Kind::Click, "m1", "https://a.example/");
        assert!(t.verify(Kind::Click, "m1", "https://a.example/", &sig));
        assert!(!t.verify(Kind::Click, "m1", "https://evil.example/", &sig));
        assert!(!t.verify(Kind::Click, "m2", "https://a.example/", &sig));
        assert!(!t.verify(Kind::Open, "m1", "https://a.example/", &sig));
        assert!(!t.verify(Kind::Click, "m1", "https://a.example/", "zz"));
        let other = Tracker::new("https://mail.shop.example", false, b"another-secret-xx");
        assert!(!other.verify(Kind::Click, "m1", "https://a.example/", &sig));
    }

    #[test]
    fn the_served_path_follows_the_base_url() {
        assert_eq!(tracker(false).path(), "/t");
        assert_eq!(
            Tracker::new("https://shop.example/mail/", false, b"s").path(),
            "/mail/t"
        );
    }

    #[test]
    fn heads_and_instant_clicks_are_bots() {
        assert!(bot_reason(true, Some(Duration::hours(1))).is_some());
        assert!(bot_reason(false, Some(Duration::milliseconds(300))).is_some());
        assert_eq!(bot_reason(false, Some(Duration::seconds(5))), None);
        assert_eq!(bot_reason(false, None), None);
    }
}
