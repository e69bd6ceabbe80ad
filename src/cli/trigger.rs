//! `rebuy trigger` and `rebuy preview`: what support staff use for one customer.

use super::{exit, App};
use crate::clock::{Clock, SystemClock};
use anyhow::{Context as _, Result};

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The manual scenario to start.
    pub scenario: String,
    /// The customer: the shop's id or their e-mail address.
    #[arg(long)]
    pub customer: String,
    /// A variable for the templates (`vars.KEY`); repeat for more.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// An idempotency key: a repeated call with the same key does nothing (e.g. the ticket id).
    #[arg(long)]
    pub key: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    pub scenario: String,
    /// The step id.
    pub step: String,
    /// The customer: the shop's id or their e-mail address.
    #[arg(long)]
    pub customer: String,
    /// A variable for the templates (`vars.KEY`); repeat for more.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Which part to print.
    #[arg(long, value_enum, default_value = "all")]
    pub part: Part,
    /// Also write a page to FILE that shows the mail as a mail client does, at a desktop
    /// client's width (600 px) and a phone's (375 px), with its subject and text part.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Part {
    All,
    Subject,
    Text,
    Html,
}

/// `KEY=VALUE` pairs into a JSON object.
pub fn parse_vars(pairs: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let usage = |said: String| anyhow::Error::from(crate::diagnostic::UsageError(said));
        let Some((k, v)) = p.split_once('=') else {
            return Err(usage(format!("--var '{p}' needs the form KEY=VALUE")));
        };
        let key = k.trim().to_string();
        // Two values for one variable: which was meant is not guessed (as the API refuses it).
        if out.contains_key(&key) {
            return Err(usage(format!("--var '{key}' is given twice; give it once")));
        }
        out.insert(key, serde_json::Value::String(v.to_string()));
    }
    Ok(out)
}

pub async fn trigger(app: &App, args: &TriggerArgs) -> Result<u8> {
    let store = app.store().await?;
    let engine = match app.engine(&store).await? {
        Ok(e) => e,
        Err(diags) => return refuse(&diags),
    };
    let vars = parse_vars(&args.vars)?;
    let out = engine
        .trigger_manual(
            &args.scenario,
            &args.customer,
            vars,
            args.key.as_deref(),
            SystemClock.now(),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.created {
        println!("started '{}' for {} (enrollment {}); step '{}' is due {}; the daemon sends it on its next tick", args.scenario, args.customer, out.enrollment_id, out.first_step, out.due_at);
    } else {
        println!(
            "already started with key '{}' (enrollment {}); nothing changed",
            args.key.as_deref().unwrap_or_default(),
            out.enrollment_id
        );
    }
    store.close().await;
    Ok(exit::OK)
}

pub async fn preview(app: &App, args: &PreviewArgs) -> Result<u8> {
    let store = app.store().await?;
    let engine = match app.engine(&store).await? {
        Ok(e) => e,
        Err(diags) => return refuse(&diags),
    };
    let r = engine
        .preview(
            &args.scenario,
            &args.step,
            &args.customer,
            parse_vars(&args.vars)?,
            SystemClock.now(),
        )
        .await?;
    if let Some(file) = &args.html {
        std::fs::write(file, preview_page(&r))
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}: open it in a browser", file.display());
    }
    match args.part {
        Part::Subject => println!("{}", r.subject),
        Part::Text => println!("{}", r.text),
        Part::Html => println!("{}", r.html),
        Part::All => println!(
            "Subject: {}\n\n--- text/plain ---\n{}\n--- text/html ---\n{}",
            r.subject, r.text, r.html
        ),
    }
    store.close().await;
    Ok(exit::OK)
}

/// A page showing a rendered mail side by side at 600 and 375 px (each in a sandboxed frame,
/// as a client shows it: no scripts), with the subject and the text part.
fn preview_page(r: &crate::render::Rendered) -> String {
    let esc = |s: &str| html_escape::encode_double_quoted_attribute(s).into_owned();
    let frame = |width: u32, label: &str| {
        format!(
            "<figure><figcaption>{label} ({width} px)</figcaption>\
             <iframe sandbox width=\"{width}\" height=\"900\" srcdoc=\"{}\"></iframe></figure>",
            esc(&r.html)
        )
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{subject}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}\
         .frames{{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}}\
         iframe{{border:1px solid #ccc;background:#fff}}pre{{white-space:pre-wrap;max-width:640px}}</style>\
         </head><body><h1>{subject}</h1><div class=\"frames\">{desktop}{phone}</div>\
         <h2>Text part</h2><pre>{text}</pre></body></html>",
        subject = html_escape::encode_text(&r.subject),
        desktop = frame(600, "Desktop mail client"),
        phone = frame(375, "Phone"),
        text = html_escape::encode_text(&r.text),
    )
}

pub(super) fn refuse(diags: &[crate::diagnostic::Diagnostic]) -> Result<u8> {
    for d in diags {
        eprintln!("{d}");
    }
    eprintln!(
        "{} problem(s) in the scenarios or templates; fix them first (see `rebuy check`)",
        diags.len()
    );
    Ok(exit::INVALID)
}
