//! Experiments: who is held out of a scenario or in the shop-wide control group, which variant
//! of a step a customer gets, and the statistics that say whether a scenario raised the repeat
//! rate. Pure logic; the store records the assignments and the report reads them.

pub mod assign;
pub mod html;
pub mod report;
pub mod stats;
pub mod winner;

pub use assign::{arm, in_control_group, variant, Arm};
pub use report::{build as build_report, ScenarioResult, StepFunnel};
pub use stats::{needed_sample, wilson, TwoProportions, Uplift};
pub use winner::pick_winner;
