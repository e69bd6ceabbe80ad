//! The pages' words in English and Japanese: one flat table per language (`i18n/en.json`,
//! `i18n/ja.json`, shipped in the binary), the language a request gets, and `{name}`
//! placeholders filled in.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header that the pages have, by its
    /// weight (`ja-JP,ja;q=0.9,en;q=0.8` is Japanese); English when none.
    pub fn from_accept(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Lang::En;
        };
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in header.split(',').enumerate() {
            let mut bits = part.split(';');
            let tag = bits.next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let Some(lang) = Lang::parse(primary) else {
                continue;
            };
            // Higher weight wins; at equal weight, the earlier one.
            if q > 0.0 && best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                best = Some((q, i, lang));
            }
        }
        best.map_or(Lang::En, |(_, _, l)| l)
    }
}

type Table = HashMap<String, String>;

fn tables() -> &'static (Table, Table) {
    static TABLES: OnceLock<(Table, Table)> = OnceLock::new();
    TABLES.get_or_init(|| {
        let parse = |text: &str| serde_json::from_str::<Table>(text).unwrap_or_default();
        (
            parse(include_str!("i18n/en.json")),
            parse(include_str!("i18n/ja.json")),
        )
    })
}

fn table(lang: Lang) -> &'static Table {
    let (en, ja) = tables();
    match lang {
        Lang::En => en,
        Lang::Ja => ja,
    }
}

/// The text of `key` in `lang` (English where a key is missing, the key itself where it is
/// missing in English too: a test keeps both tables whole).
pub fn text(lang: Lang, key: &str) -> String {
    table(lang)
        .get(key)
        .or_else(|| table(Lang::En).get(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

/// Whether `lang`'s table (or English, its fallback) has `key`.
pub fn has(lang: Lang, key: &str) -> bool {
    table(lang).contains_key(key) || table(Lang::En).contains_key(key)
}

/// `text` with each `{name}` replaced by its value.
pub fn fill(lang: Lang, key: &str, values: &[(&str, &str)]) -> String {
    crate::reasons::fill(&text(lang, key), values)
}

/// A reason stored with a message or an enrollment, in `lang`: rebuy's own reasons
/// (`crate::reasons`) in the language's words, with a suppression's kind and an experiment's
/// group in words too; anything else (an SMTP server's reply, a staff note) as it was stored.
pub fn reason(lang: Lang, stored: &str) -> String {
    let Some((pattern, values)) = crate::reasons::read(stored) else {
        return stored.to_string();
    };
    match lang {
        Lang::En => stored.to_string(),
        Lang::Ja => {
            let values: Vec<(&str, String)> = values
                .iter()
                .map(|(name, value)| (name.as_str(), value_words(lang, name, value)))
                .collect();
            crate::reasons::fill(pattern.japanese, &values)
        }
    }
}

/// A reason's value in words where the tables have them (`suppression.bounce`,
/// `group.holdout`), else as it is.
fn value_words(lang: Lang, name: &str, value: &str) -> String {
    let key = match name {
        "kind" => format!("suppression.{value}"),
        "arm" => format!("group.{value}"),
        // A follow-up's end reason inside a cancelled message's reason.
        "why" => return reason(lang, value),
        _ => return value.to_string(),
    };
    table(lang)
        .get(&key)
        .cloned()
        .unwrap_or_else(|| value.to_string())
}

#[cfg(test)]
/// Every key of a language's table (for the tests that keep them whole).
pub fn keys(lang: Lang) -> Vec<&'static str> {
    let mut k: Vec<&str> = table(lang).keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_tables_parse_and_have_the_same_keys() {
        let (en, ja) = (keys(Lang::En), keys(Lang::Ja));
        assert!(
            en.len() > 100,
            "the English table did not parse: {} keys",
            en.len()
        );
        let missing_ja: Vec<_> = en.iter().filter(|k| !ja.contains(k)).collect();
        let missing_en: Vec<_> = ja.iter().filter(|k| !en.contains(k)).collect();
        assert!(missing_ja.is_empty(), "missing in ja.json: {missing_ja:?}");
        assert!(missing_en.is_empty(), "missing in en.json: {missing_en:?}");
        for k in &ja {
            assert!(
                !text(Lang::Ja, k).trim().is_empty(),
                "empty Japanese text for {k}"
            );
        }
    }

    #[test]
    fn every_rfm_segment_and_group_has_its_words() {
        let names = crate::metrics::SEGMENTS.map(|s| format!("rfm.{s}"));
        let groups = ["treatment", "holdout", "control"].map(|g| format!("group.{g}"));
        for lang in [Lang::En, Lang::Ja] {
            for key in names.iter().chain(&groups) {
                assert!(keys(lang).contains(&key.as_str()), "{lang:?}: {key}");
            }
        }
        assert_eq!(text(Lang::Ja, "rfm.at risk"), "離反リスク");
    }

    #[test]
    fn every_key_the_templates_name_exists() {
        let templates = super::super::templates::ALL;
        let mut missing = Vec::new();
        for (name, body) in templates {
            for part in body.split("t('").skip(1) {
                let key = part.split('\'').next().unwrap_or("");
                // `t('state.' ~ m.status)`: a prefix, checked by the tests of its values.
                if key.ends_with('.') || key.ends_with('_') {
                    continue;
                }
                if !keys(Lang::En).contains(&key) {
                    missing.push(format!("{name}: {key}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys used but not in en.json: {missing:?}"
        );
    }

    #[test]
    fn every_state_and_audit_action_has_words() {
        let states = [
            "queued",
            "claimed",
            "sending",
            "sent",
            "failed",
            "skipped",
            "unknown",
            "suppressed",
            "cancelled",
            "held_out",
            "expired",
            "active",
            "completed",
            "goal",
        ];
        for s in states {
            assert!(
                keys(Lang::En).contains(&format!("state.{s}").as_str()),
                "state.{s}"
            );
        }
        for a in super::super::AUDIT_ACTIONS {
            assert!(
                keys(Lang::En).contains(&format!("audit.{a}").as_str()),
                "audit.{a}"
            );
        }
        for m in ["id", "email", "order", "name"] {
            assert!(keys(Lang::En).contains(&format!("search.by_{m}").as_str()));
        }
    }

    #[test]
    fn rebuy_s_own_reasons_are_shown_in_japanese_and_others_as_stored() {
        let held = crate::reasons::Reason::HeldOut {
            arm: "holdout".into(),
        }
        .to_string();
        assert_eq!(reason(Lang::En, &held), held);
        assert_eq!(
            reason(Lang::Ja, &held),
            "送信しませんでした: 効果測定のホールドアウト群です"
        );
        let suppressed = crate::reasons::Reason::Suppressed {
            queued: false,
            kind: "unsubscribe".into(),
        };
        let ja = reason(Lang::Ja, &suppressed.to_string());
        assert!(ja.contains("配信停止(販促メールは送りません)"), "{ja}");
        assert!(!ja.contains("unsubscribe"), "{ja}");
        let ended = crate::reasons::Reason::EnrollmentEnded {
            why: crate::reasons::Reason::EndedBySupport { name: "mei".into() }.to_string(),
        };
        let ja = reason(Lang::Ja, &ended.to_string());
        assert!(!ja.contains("ended by"), "{ja}");
        assert!(ja.contains("サポートが終了しました(mei)"), "{ja}");
        let smtp = "550 5.1.1 <a@example.com>: user unknown";
        assert_eq!(reason(Lang::Ja, smtp), smtp);
        for p in crate::reasons::PATTERNS {
            assert!(
                !p.japanese.contains("not sent"),
                "{}: {}",
                p.key,
                p.japanese
            );
        }
    }

    #[test]
    fn the_browser_language_is_chosen_by_weight() {
        assert_eq!(Lang::from_accept(Some("ja-JP,ja;q=0.9,en;q=0.8")), Lang::Ja);
        assert_eq!(Lang::from_accept(Some("en-US,en;q=0.9,ja;q=0.8")), Lang::En);
        assert_eq!(Lang::from_accept(Some("fr-FR,ja;q=0.5,en;q=0.7")), Lang::En);
        assert_eq!(Lang::from_accept(Some("de, ja;q=0.3")), Lang::Ja);
        assert_eq!(Lang::from_accept(Some("ja;q=0")), Lang::En);
        assert_eq!(Lang::from_accept(None), Lang::En);
        assert_eq!(Lang::from_accept(Some(";;;,,q=x")), Lang::En);
    }

    #[test]
    fn placeholders_are_filled() {
        let s = fill(Lang::Ja, "message.cancelled", &[("id", "42")]);
        assert_eq!(s, "メール #42 を取り消しました。");
    }
}
