//! Rendering a failed or unknown message again for `rebuy outbox retry`, with today's
//! scenario, template and data: a message is re-sent only with content rendered now.

use super::{Engine, InputError};
use crate::clock::to_millis;
use crate::render::Rendered;
use crate::scenario::variant_key;
use crate::store::{Content, CustomerRow, RetryTarget};
use anyhow::Result;
use chrono::{DateTime, Utc};

/// What `Engine::retry` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetryOutcome {
    /// Re-rendered and back in the queue.
    pub requeued: Vec<i64>,
    /// Left as they were, because they could not be rendered again: id and reason.
    pub refused: Vec<(i64, String)>,
}

impl Engine {
    /// Puts failed or unknown messages (`ids`, or every failed one with `all_failed`) back in
    /// the queue, each rendered again first; one that cannot be rendered keeps its state and
    /// gets the reason as its last error. Ids that are not failed or unknown are left out.
    pub async fn retry(
        &self,
        ids: &[i64],
        all_failed: bool,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome> {
        let mut out = RetryOutcome::default();
        let at = to_millis(now);
        self.learn_recommendations(now).await;
        for t in self.store.retry_targets(ids, all_failed).await? {
            match self.rerender(&t, now).await {
                Ok((r, c)) => {
                    let html = self.tracked(r.html, &t.message_id, &t.unsubscribe_url);
                    let recommended = super::recommended_json(&r.recommended);
                    let content = Content {
                        recommended: recommended.as_deref(),
                        subject: &r.subject,
                        html: &html,
                        text: &r.text,
                        to_email: &c.email,
                        to_name: &c.name,
                    };
                    if self.store.requeue_rendered(t.id, &content, at).await? {
                        out.requeued.push(t.id);
                    }
                }
                Err(err) => {
                    let why = format!("not re-queued: cannot render it again: {err:#}");
                    self.store.note_retry_refused(t.id, &why, at).await?;
                    out.refused.push((t.id, why));
                }
            }
        }
        Ok(out)
    }

    /// Renders a failed or unknown message again, with today's scenario, template and data
    /// (the customer's current address included),
    /// for `rebuy outbox retry`: a message is re-sent only with content rendered now, so one
    /// that never rendered cannot go out empty.
    pub async fn rerender(
        &self,
        t: &RetryTarget,
        now: DateTime<Utc>,
    ) -> Result<(Rendered, CustomerRow)> {
        let s = self.scenario(&t.scenario_id)?;
        let step = s
            .steps
            .iter()
            .find(|st| st.id == t.step_id)
            .ok_or_else(|| {
                InputError(format!(
                    "scenario '{}' no longer has the step '{}'",
                    s.id, t.step_id
                ))
            })?;
        let (key, send) = match &t.variant {
            Some(v) => {
                let variant = step.variants.iter().find(|x| &x.id == v).ok_or_else(|| {
                    InputError(format!(
                        "step '{}' of '{}' no longer has the variant '{v}'",
                        step.id, s.id
                    ))
                })?;
                (variant_key(&step.id, v), &variant.send)
            }
            None => (step.id.clone(), &step.send),
        };
        let c = self
            .store
            .find_customer_with_metrics(&t.customer_id)
            .await?;
        let mut orders = self
            .store
            .orders_by_ids(&t.order_id.iter().cloned().collect::<Vec<_>>())
            .await?;
        let order = t.order_id.as_ref().and_then(|id| orders.remove(id));
        // Moved to another customer since (`--move-orders`): its mail would show them someone
        // else's order.
        if let Some(o) = order.as_ref().filter(|o| o.customer_id != t.customer_id) {
            let why = crate::reasons::Reason::OrderMoved {
                order: o.id.clone(),
            };
            return Err(InputError(why.to_string()).into());
        }
        let vars: serde_json::Value = serde_json::from_str(&t.vars).unwrap_or_default();
        let ctx = self.context(s, Some(&step.id), &c, order.as_ref(), vars, None, now);
        let rendered = self
            .renderer
            .render_step(&s.id, &key, &send.template, &ctx)?;
        Ok((rendered, c))
    }
}
