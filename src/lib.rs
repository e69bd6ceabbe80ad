//! rebuy: an automation engine for repeat purchases. This file only declares modules.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod customer_view;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod diagnostic;
pub mod domain;
pub mod engine;
pub mod experiment;
pub mod http;
pub mod import;
pub mod metrics;
pub mod recommend;
pub mod refresh;
pub mod render;
pub mod reports;
pub mod scenario;
pub mod segment;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod tracking;
pub mod yaml;
