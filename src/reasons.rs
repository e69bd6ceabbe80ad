//! Why a message was held back, skipped, cancelled or left in doubt: each reason's text as it
//! is stored with the message (English, as the CLI, the API and the logs show it), made in
//! one place, and read back from a stored text for the pages' Japanese words.

use std::fmt;

/// A reason rebuy itself gives (an SMTP server's own reply is stored as it came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The address or the person is suppressed (`kind`: bounce, unsubscribe, manual); found
    /// when the step ran (`queued: false` is found at sending).
    Suppressed { queued: bool, kind: String },
    /// Marketing mail to a customer who has not agreed to it.
    NoConsent { queued: bool },
    /// The step ran `late` after its due time, over its limit `limit`.
    LateStep { late: String, limit: String },
    /// The queued message reached its sender `late` past its lateness limit.
    PastLimit { late: String },
    /// The customer is in the experiment's `arm` (holdout or control): nothing is sent.
    HeldOut { arm: String },
    /// Over the frequency cap; the step skips rather than waits.
    CapSkipped { max: u32, days: i64 },
    /// Over the frequency cap; sent when a slot frees.
    CapWaiting { max: u32, days: i64 },
    /// Inside the quiet hours of the customer's zone, until `until` (with its offset).
    QuietHours { zone: String, until: String },
    /// Another message to the same address bounced earlier in the same sending round.
    BouncedThisRound,
    /// The server refused the address for good moments ago, in this connection.
    RefusedMomentsAgo,
    /// The server asked to slow down; tried again after the pause.
    SlowDown,
    /// Sending was paused (the server asked to slow down) before this message's turn.
    Paused,
    /// Someone ended the enrollment, saying `why`.
    EnrollmentEnded { why: String },
    /// The customer reached the scenario's goal (ordered) before the message went out.
    GoalReached,
    /// The sender died while handing the message over: it may have been delivered.
    SenderStopped,
    /// The sender's lease ran out before it recorded the outcome.
    SenderStoppedBeforeRecording,
    /// An enrollment's next step was removed from its scenario (the enrollment's end reason).
    StepRemoved { step: String },
    /// A queued message cancelled by hand: `by` says how (the API and its token, the command
    /// line; the pages use `CancelledBySupport`).
    CancelledBy { by: String },
    /// A queued message cancelled from the pages by support staff `name`.
    CancelledBySupport { name: String },
    /// A follow-up ended from the pages without a reason given (the enrollment's end reason).
    EndedBySupport { name: String },
    /// An enrollment ended because its step `step` could not be mailed (suppressed, no
    /// consent): its later steps would follow a mail the customer never received.
    StepWithheld { step: String },
    /// An enrollment ended because its order moved to another customer.
    OrderMoved { order: String },
}

/// Why a message cancelled by its enrollment's goal was not sent.
pub const GOAL_REACHED: &str =
    "cancelled: the customer ordered (the scenario's goal) before this was sent";
/// How the error of a message given up after its attempts begins ("gave up after 5 attempts:
/// …"); `rebuy status` counts those.
pub const GAVE_UP: &str = "gave up after";
/// Why a message its sender was handing over when it stopped is `unknown`.
pub const SENDER_STOPPED: &str =
    "the sender stopped while it was sending this message; it may or may not have been delivered";
/// Why a message whose sender's lease ran out before it recorded the outcome is `unknown`.
pub const SENDER_STOPPED_BEFORE_RECORDING: &str =
    "the sender stopped before recording the outcome; the message may or may not have been delivered";

/// A reason's stored English text with `{name}` placeholders, and its Japanese words.
#[derive(Debug)]
pub struct Pattern {
    pub key: &'static str,
    pub english: &'static str,
    pub japanese: &'static str,
}

/// Every reason's pattern. In reading a stored text the first that matches wins, so a
/// pattern that another would also match comes first.
pub const PATTERNS: &[Pattern] = &[
    Pattern {
        key: "suppressed_queued",
        english: "not queued: the address is suppressed ({kind})",
        japanese: "作成時に止めました: {kind}",
    },
    Pattern {
        key: "no_consent_queued",
        english: "not queued: no marketing consent",
        japanese: "作成時に止めました: 販促メールへの同意がありません",
    },
    Pattern {
        key: "suppressed",
        english: "not sent: the address is suppressed ({kind})",
        japanese: "送信しませんでした: {kind}",
    },
    Pattern {
        key: "no_consent",
        english: "not sent: no marketing consent",
        japanese: "送信しませんでした: 販促メールへの同意がありません",
    },
    Pattern {
        key: "late_step",
        english: "not sent: {late} late, over the step's limit of {limit} (expires)",
        japanese: "送信しませんでした: 予定より {late} 遅れ、このステップの期限 {limit} を過ぎました(expires)",
    },
    Pattern {
        key: "past_limit",
        english: "not sent: {late} past its lateness limit (expires)",
        japanese: "送信しませんでした: 遅延の期限を {late} 過ぎました(expires)",
    },
    Pattern {
        key: "held_out",
        english: "not sent: {arm} arm of the experiment",
        japanese: "送信しませんでした: 効果測定の{arm}です",
    },
    Pattern {
        key: "bounced_this_round",
        english: "not sent: the address was refused permanently (bounced) earlier in this round",
        japanese: "送信しませんでした: このアドレスは同じ送信回で不達になりました",
    },
    Pattern {
        key: "refused_moments_ago",
        english: "not sent: the server refused this address for good moments ago",
        japanese: "送信しませんでした: 直前にメールサーバーがこのアドレスを恒久的に拒否しました",
    },
    Pattern {
        key: "cap_skipped",
        english: "skipped by the frequency cap: {max} marketing messages per {days} days",
        japanese: "送信頻度の上限(販促メールは {days} 日に {max} 通まで)のためスキップしました",
    },
    Pattern {
        key: "cap_waiting",
        english: "waiting for the frequency cap: {max} marketing messages per {days} days",
        japanese: "送信頻度の上限(販促メールは {days} 日に {max} 通まで)により待機中です",
    },
    Pattern {
        key: "quiet_hours",
        english: "quiet hours in the customer's zone ({zone}) until {until}",
        japanese: "お客様の地域({zone})の送信停止時間帯のため {until} まで待機中です",
    },
    Pattern {
        key: "slow_down",
        english: "deferred: the server asked to slow down",
        japanese: "延期: メールサーバーから送信を遅くするよう求められました",
    },
    Pattern {
        key: "paused",
        english: "deferred: sending is paused: the server asked to slow down",
        japanese: "延期: メールサーバーから送信を遅くするよう求められたため、送信を一時停止しています",
    },
    Pattern {
        key: "enrollment_ended",
        english: "cancelled: enrollment ended ({why})",
        japanese: "取り消し: フォローを終了しました({why})",
    },
    Pattern {
        key: "goal_reached",
        english: GOAL_REACHED,
        japanese: "取り消し: 送信前にお客様が注文しました(シナリオの目標を達成)",
    },
    Pattern {
        key: "sender_stopped",
        english: SENDER_STOPPED,
        japanese: "送信の途中で送信処理が止まりました。届いたかどうかは分かりません",
    },
    Pattern {
        key: "sender_stopped_before_recording",
        english: SENDER_STOPPED_BEFORE_RECORDING,
        japanese: "送信処理が結果を記録する前に止まりました。届いたかどうかは分かりません",
    },
    Pattern {
        key: "cancelled_by",
        english: "cancelled by hand: {by}",
        japanese: "手動で取り消されました: {by}",
    },
    Pattern {
        key: "cancelled_by_support",
        english: "cancelled by support ({name})",
        japanese: "サポートが取り消しました({name})",
    },
    Pattern {
        key: "ended_by_support",
        english: "ended by support ({name})",
        japanese: "サポートが終了しました({name})",
    },
    Pattern {
        key: "step_removed",
        english: "its next step '{step}' was removed from the scenario",
        japanese: "次のステップ「{step}」がシナリオから削除されました",
    },
    Pattern {
        key: "step_withheld",
        english: "ended: step '{step}' could not be mailed (suppressed or no consent), so the later steps would follow a mail the customer never received",
        japanese: "終了しました: ステップ「{step}」を送れなかったため(配信停止または同意なし)、その続きのメールは送りません",
    },
    Pattern {
        key: "order_moved",
        english: "ended: its order '{order}' now belongs to another customer",
        japanese: "終了しました: 注文「{order}」が別のお客様の注文になりました",
    },
];

impl Reason {
    /// The key of its pattern, and the values of its placeholders.
    fn parts(&self) -> (&'static str, Vec<(&'static str, String)>) {
        match self {
            Reason::Suppressed { queued, kind } => (
                if *queued {
                    "suppressed_queued"
                } else {
                    "suppressed"
                },
                vec![("kind", kind.clone())],
            ),
            Reason::NoConsent { queued } => (
                if *queued {
                    "no_consent_queued"
                } else {
                    "no_consent"
                },
                vec![],
            ),
            Reason::LateStep { late, limit } => (
                "late_step",
                vec![("late", late.clone()), ("limit", limit.clone())],
            ),
            Reason::PastLimit { late } => ("past_limit", vec![("late", late.clone())]),
            Reason::HeldOut { arm } => ("held_out", vec![("arm", arm.clone())]),
            Reason::CapSkipped { max, days } => ("cap_skipped", cap_values(*max, *days)),
            Reason::CapWaiting { max, days } => ("cap_waiting", cap_values(*max, *days)),
            Reason::QuietHours { zone, until } => (
                "quiet_hours",
                vec![("zone", zone.clone()), ("until", until.clone())],
            ),
            Reason::BouncedThisRound => ("bounced_this_round", vec![]),
            Reason::RefusedMomentsAgo => ("refused_moments_ago", vec![]),
            Reason::SlowDown => ("slow_down", vec![]),
            Reason::Paused => ("paused", vec![]),
            Reason::EnrollmentEnded { why } => ("enrollment_ended", vec![("why", why.clone())]),
            Reason::GoalReached => ("goal_reached", vec![]),
            Reason::SenderStopped => ("sender_stopped", vec![]),
            Reason::SenderStoppedBeforeRecording => ("sender_stopped_before_recording", vec![]),
            Reason::StepRemoved { step } => ("step_removed", vec![("step", step.clone())]),
            Reason::CancelledBy { by } => ("cancelled_by", vec![("by", by.clone())]),
            Reason::CancelledBySupport { name } => {
                ("cancelled_by_support", vec![("name", name.clone())])
            }
            Reason::EndedBySupport { name } => ("ended_by_support", vec![("name", name.clone())]),
            Reason::StepWithheld { step } => ("step_withheld", vec![("step", step.clone())]),
            Reason::OrderMoved { order } => ("order_moved", vec![("order", order.clone())]),
        }
    }
}

fn cap_values(max: u32, days: i64) -> Vec<(&'static str, String)> {
    vec![("max", max.to_string()), ("days", days.to_string())]
}

fn pattern(key: &str) -> &'static Pattern {
    PATTERNS
        .iter()
        .find(|p| p.key == key)
        .expect("every reason has its pattern (tested)")
}

/// `template` with each `{name}` replaced by its value.
pub fn fill<V: AsRef<str>>(template: &str, values: &[(&str, V)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value.as_ref());
    }
    out
}

/// The reasons a message waits with, without an attempt having failed (quiet hours, the
/// frequency cap, a server's request to slow down): the fixed start of each one's text.
pub fn deferral_prefixes() -> Vec<&'static str> {
    ["quiet_hours", "cap_waiting", "slow_down", "paused"]
        .iter()
        .map(|key| {
            let english = pattern(key).english;
            english.split('{').next().unwrap_or(english)
        })
        .collect()
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, values) = self.parts();
        f.write_str(&fill(pattern(key).english, &values))
    }
}

/// A stored text read back: its pattern and the values of its placeholders. `None` for a
/// text rebuy did not make from a pattern (an SMTP reply, a render error, a staff note).
pub fn read(text: &str) -> Option<(&'static Pattern, Vec<(String, String)>)> {
    PATTERNS
        .iter()
        .find_map(|p| matches(p.english, text).map(|values| (p, values)))
}

/// The placeholders' values if `text` is `template` filled: each literal piece in its place,
/// each value non-empty and on one line. The last value runs to the template's last piece
/// (a staff note in `({why})` may hold parentheses itself).
fn matches(template: &str, text: &str) -> Option<Vec<(String, String)>> {
    let mut pieces: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}')? + open;
        pieces.push(&rest[..open]);
        names.push(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    pieces.push(rest);
    let last = pieces.pop().unwrap_or_default();
    let mut text = text.strip_suffix(last)?;
    let mut values = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        text = text.strip_prefix(piece)?;
        let end = match pieces.get(i + 1) {
            Some(next) => text.find(next)?,
            None => text.len(),
        };
        let value = &text[..end];
        if value.is_empty() || value.contains('\n') {
            return None;
        }
        values.push((names[i].to_string(), value.to_string()));
        text = &text[end..];
    }
    text.is_empty().then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_reason() -> Vec<Reason> {
        vec![
            Reason::Suppressed {
                queued: true,
                kind: "unsubscribe".into(),
            },
            Reason::Suppressed {
                queued: false,
                kind: "bounce".into(),
            },
            Reason::NoConsent { queued: true },
            Reason::NoConsent { queued: false },
            Reason::LateStep {
                late: "2d 3h".into(),
                limit: "1d".into(),
            },
            Reason::PastLimit { late: "5m".into() },
            Reason::HeldOut {
                arm: "holdout".into(),
            },
            Reason::CapSkipped { max: 2, days: 7 },
            Reason::CapWaiting { max: 3, days: 14 },
            Reason::QuietHours {
                zone: "Asia/Tokyo".into(),
                until: "2026-12-08 08:00 +09:00".into(),
            },
            Reason::BouncedThisRound,
            Reason::RefusedMomentsAgo,
            Reason::SlowDown,
            Reason::Paused,
            Reason::EnrollmentEnded {
                why: "parcel lost (ticket 42)".into(),
            },
            Reason::GoalReached,
            Reason::SenderStopped,
            Reason::SenderStoppedBeforeRecording,
            Reason::StepRemoved {
                step: "reminder".into(),
            },
            Reason::CancelledBy {
                by: "rebuy outbox cancel".into(),
            },
            Reason::CancelledBySupport { name: "mei".into() },
            Reason::EndedBySupport { name: "mei".into() },
            Reason::StepWithheld {
                step: "thanks".into(),
            },
            Reason::OrderMoved {
                order: "O-1001".into(),
            },
        ]
    }

    #[test]
    fn every_reason_reads_back_as_itself() {
        for r in every_reason() {
            let text = r.to_string();
            let (p, values) = read(&text).unwrap_or_else(|| panic!("not read back: {text}"));
            let (key, want) = r.parts();
            assert_eq!(p.key, key, "{text}");
            let want: Vec<(String, String)> =
                want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            assert_eq!(values, want, "{text}");
        }
    }

    #[test]
    fn every_pattern_is_used_and_has_the_same_placeholders_in_both_languages() {
        let used: Vec<&str> = every_reason().iter().map(|r| r.parts().0).collect();
        for p in PATTERNS {
            assert!(used.contains(&p.key), "no reason makes {}", p.key);
            let names = |s: &str| -> Vec<String> {
                let mut v: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|x| x.split('}').next().map(String::from))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(names(p.english), names(p.japanese), "{}", p.key);
        }
    }

    #[test]
    fn the_texts_stay_as_the_cli_and_api_have_always_shown_them() {
        assert_eq!(
            Reason::NoConsent { queued: true }.to_string(),
            "not queued: no marketing consent"
        );
        assert_eq!(
            Reason::CapSkipped { max: 2, days: 7 }.to_string(),
            "skipped by the frequency cap: 2 marketing messages per 7 days"
        );
    }

    #[test]
    fn other_texts_are_not_read_as_a_reason() {
        for text in [
            "550 5.1.1 user unknown",
            "not sent: ",
            "not sent:  arm of the experiment",
            "cancelled: enrollment ended ()",
            "not queued: no marketing consent and more",
            "",
        ] {
            assert!(read(text).is_none(), "{text}");
        }
    }

    #[test]
    fn a_deferral_s_text_starts_with_its_prefix_and_a_failure_s_does_not() {
        let prefixes = deferral_prefixes();
        assert_eq!(prefixes.len(), 4);
        let deferrals = [
            Reason::QuietHours {
                zone: "Asia/Tokyo".into(),
                until: "2026-12-08 08:00 +09:00".into(),
            },
            Reason::CapWaiting { max: 2, days: 7 },
            Reason::SlowDown,
            Reason::Paused,
        ];
        for r in deferrals {
            let text = r.to_string();
            assert!(prefixes.iter().any(|p| text.starts_with(p)), "{text}");
        }
        for failure in ["cannot connect to 127.0.0.1:25", "451 4.3.0 try later"] {
            assert!(
                !prefixes.iter().any(|p| failure.starts_with(p)),
                "{failure}"
            );
        }
    }

    #[test]
    fn a_staff_note_with_parentheses_is_kept_whole() {
        let r = Reason::EnrollmentEnded {
            why: "asked by phone (twice)".into(),
        };
        let (_, values) = read(&r.to_string()).unwrap();
        assert_eq!(values[0].1, "asked by phone (twice)");
    }
}
