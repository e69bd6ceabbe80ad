//! What a version of the scenarios does to the enrollments already in the database: which wait
//! on a step this version removes, which belong to a scenario no longer there. Pure: the
//! counts come from the store, the verdicts from here (`rebuy check --against-db`).

use super::Scenario;

/// Active enrollments of one scenario waiting on one step, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub scenario_id: String,
    /// The step's id; `None` for enrollments older than step ids (placed by position).
    pub step_id: Option<String>,
    /// Steps taken so far: the position of the step waited on for those without an id.
    pub position: i64,
    pub count: i64,
}

/// One consequence of the edit, for a person to read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Effect {
    pub scenario_id: String,
    pub step_id: Option<String>,
    pub enrollments: i64,
    /// Whether mail that would otherwise go will not (a removed step or scenario).
    pub stops_mail: bool,
    pub said: String,
}

/// The effects of `scenarios` on the enrollments `waiting`, worst first.
pub fn effects(waiting: &[Waiting], scenarios: &[Scenario]) -> Vec<Effect> {
    let mut out: Vec<Effect> = waiting
        .iter()
        .filter_map(|w| effect(w, scenarios))
        .collect();
    out.sort_by(|a, b| {
        (b.stops_mail, b.enrollments, &a.scenario_id).cmp(&(
            a.stops_mail,
            a.enrollments,
            &b.scenario_id,
        ))
    });
    out
}

fn effect(w: &Waiting, scenarios: &[Scenario]) -> Option<Effect> {
    let n = w.count;
    let them = if n == 1 { "it" } else { "they" };
    let enrollments = if n == 1 { "enrollment" } else { "enrollments" };
    let effect = |stops_mail, said: String| Effect {
        scenario_id: w.scenario_id.clone(),
        step_id: w.step_id.clone(),
        enrollments: n,
        stops_mail,
        said,
    };
    let Some(s) = scenarios.iter().find(|s| s.id == w.scenario_id) else {
        return Some(effect(
            true,
            format!(
                "{n} active {enrollments} of scenario '{}', which is no longer in the scenarios folder: {them} will be cancelled at {} next step, without mail",
                w.scenario_id,
                if n == 1 { "its" } else { "their" }
            ),
        ));
    };
    match &w.step_id {
        Some(id) if s.step_index(id).is_none() => Some(effect(
            true,
            format!(
                "{n} {enrollments} of '{}' wait on step '{id}', which this version removes: {them} will end without further mail (keep the step, or accept that)",
                s.id
            ),
        )),
        Some(_) => None,
        None => {
            let at = usize::try_from(w.position).ok();
            let said = match at.and_then(|i| s.steps.get(i)) {
                Some(step) => format!(
                    "{n} {enrollments} of '{}' from before step ids wait on position {}: in this version that is step '{}'",
                    s.id,
                    w.position + 1,
                    step.id
                ),
                None => format!(
                    "{n} {enrollments} of '{}' from before step ids wait on position {}, past this version's last step: {them} will complete without further mail",
                    s.id,
                    w.position + 1
                ),
            };
            Some(effect(at.is_none_or(|i| i >= s.steps.len()), said))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(steps: &[&str]) -> Scenario {
        let mut y = String::from("id: care\ntrigger: first_order\nsteps:\n");
        for id in steps {
            y.push_str(&format!(
                "  - id: {id}\n    send: {{ template: t, subject: s }}\n"
            ));
        }
        super::super::parse_scenario("care.yaml", &y).unwrap()
    }

    fn waiting(scenario: &str, step: Option<&str>, position: i64, count: i64) -> Waiting {
        Waiting {
            scenario_id: scenario.into(),
            step_id: step.map(str::to_string),
            position,
            count,
        }
    }

    #[test]
    fn a_removed_step_or_scenario_is_said_with_its_count_and_a_kept_step_says_nothing() {
        let s = scenario(&["thanks", "refill"]);
        let found = effects(
            &[
                waiting("care", Some("thanks"), 0, 5),
                waiting("care", Some("howto"), 1, 12),
                waiting("gone", Some("x"), 0, 1),
            ],
            &[s],
        );
        let said: Vec<&str> = found.iter().map(|e| e.said.as_str()).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].starts_with(
            "12 enrollments of 'care' wait on step 'howto', which this version removes"
        ));
        assert!(said[1].starts_with("1 active enrollment of scenario 'gone'"));
        assert!(found.iter().all(|e| e.stops_mail));
    }

    #[test]
    fn enrollments_from_before_step_ids_are_placed_by_position() {
        let s = scenario(&["thanks", "refill"]);
        let found = effects(
            &[waiting("care", None, 1, 3), waiting("care", None, 2, 2)],
            &[s],
        );
        assert_eq!(found.len(), 2);
        assert!(found[0].said.contains("past this version's last step"));
        assert!(found[1]
            .said
            .contains("in this version that is step 'refill'"));
    }
}
