//! A loaded configuration and what it builds: the store, the engine and the deliverer, for
//! the commands, the daemon and the demo alike (outside `cli`, so that nothing reaches back
//! into the command line).

use crate::config::{read_secret, Config, Resolved, TransportKind};
use crate::delivery::{Deliverer, Mailer, Pacing, RetryPolicy, Unsubscriber};
use crate::diagnostic::Diagnostic;
use crate::engine::{Engine, EngineSettings};
use crate::scenario::{check_all, CheckReport};
use crate::store::Store;
use anyhow::{Context, Result};
use std::path::Path;

pub struct App {
    pub config: Config,
    /// The file the configuration came from (`--config`), when one was named.
    pub config_path: Option<std::path::PathBuf>,
    pub resolved: Resolved,
    /// What the engines of this process learnt for `recommend()` and `next_purchase_due`:
    /// one copy, shared by the daemon's engine, the HTTP server's and those a reload builds.
    pub recommendations: crate::render::Recommendations,
}

impl App {
    /// Loads the configuration: an explicit path must exist; ./rebuy.yaml is optional.
    pub fn load(path: Option<&Path>) -> Result<Self, Vec<Diagnostic>> {
        let config = match path {
            Some(p) => Config::load(p, true)?,
            None => Config::load(Path::new("rebuy.yaml"), false)?,
        };
        let resolved = config.resolve()?;
        Ok(Self {
            config,
            config_path: path.map(Path::to_path_buf),
            resolved,
            recommendations: Default::default(),
        })
    }

    pub fn from_config(config: Config) -> Result<Self, Vec<Diagnostic>> {
        let resolved = config.resolve()?;
        Ok(Self {
            config,
            config_path: None,
            resolved,
            recommendations: Default::default(),
        })
    }

    /// The database, which must exist: only `import`, `run` and `init` create one.
    pub async fn store(&self) -> Result<Store> {
        Store::open_existing(&self.config.database)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database '{}'",
                    crate::store::redacted(&self.config.database)
                )
            })
    }

    /// The database, created if it does not exist yet (`import`, `run`, `init`).
    pub async fn store_or_create(&self) -> Result<Store> {
        Store::open(&self.config.database).await.with_context(|| {
            format!(
                "cannot open the database '{}'",
                crate::store::redacted(&self.config.database)
            )
        })
    }

    /// A file of rebuy's own beside the shop's database, ending in `.{extension}` (see
    /// `store::file_beside`); for a PostgreSQL shop, beside the config file (the working
    /// directory without one).
    pub fn local_file(&self, extension: &str) -> std::path::PathBuf {
        let folder = self
            .config_path
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        crate::store::file_beside(&self.config.database, folder, extension)
    }

    pub fn check(&self) -> CheckReport {
        check_all(
            &self.config.scenarios_dir,
            &self.config.templates_dir,
            &self.config.shop,
        )
    }

    /// The unsubscribe signer. Its secret comes from the environment or a file; without
    /// either, a random one is generated once and kept in the database.
    pub async fn unsubscriber(&self, store: &Store) -> Result<Unsubscriber> {
        let secret = self.link_secret(store).await?;
        Ok(Unsubscriber::new(
            &self.config.unsubscribe.base_url,
            secret.as_bytes(),
        ))
    }

    /// What the digest jobs need besides the targets (the engine's): the shop's name,
    /// currency and zone.
    pub fn digest_settings(&self) -> crate::digest::DigestSettings {
        crate::digest::DigestSettings {
            currency: self.currency(),
            shop: self.config.shop.get("name").cloned().unwrap_or_default(),
            zone: self.resolved.default_timezone,
        }
    }

    /// The shop's currency for amounts shown to people (`shop.currency`, default JPY).
    pub fn currency(&self) -> String {
        self.config
            .shop
            .get("currency")
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "JPY".into())
    }

    /// The click tracker when `tracking.base_url` is set. It signs with the unsubscribe
    /// secret (under a prefix of its own), so one secret protects every link in a mail.
    pub async fn tracker(&self, store: &Store) -> Result<Option<crate::tracking::Tracker>> {
        let Some(base) = &self.config.tracking.base_url else {
            return Ok(None);
        };
        let secret = self.link_secret(store).await?;
        Ok(Some(crate::tracking::Tracker::new(
            base,
            self.config.tracking.open_pixel,
            secret.as_bytes(),
        )))
    }

    /// The secret that signs the links in mail (unsubscribe, tracking).
    async fn link_secret(&self, store: &Store) -> Result<String> {
        let u = &self.config.unsubscribe;
        let secret = match read_secret(&u.secret_env, u.secret_file.as_deref())? {
            Some(s) => {
                crate::config::check_secret(&s).map_err(|e| {
                    anyhow::anyhow!("{e} (from ${} or unsubscribe.secret_file)", u.secret_env)
                })?;
                s
            }
            None => {
                let fresh = format!(
                    "{:032x}{:032x}",
                    rand::random::<u128>(),
                    rand::random::<u128>()
                );
                store
                    .setting_or_insert("unsubscribe_secret", &fresh)
                    .await?
            }
        };
        Ok(secret)
    }

    /// The engine with a valid scenario set, or the list of problems.
    pub async fn engine(&self, store: &Store) -> Result<Result<Engine, Vec<Diagnostic>>> {
        self.engine_only(store, None).await
    }

    /// The engine with only the scenario `only` (all when None); an unknown id is an error.
    pub async fn engine_only(
        &self,
        store: &Store,
        only: Option<&str>,
    ) -> Result<Result<Engine, Vec<Diagnostic>>> {
        let mut report = self.check();
        if !report.diagnostics.is_empty() {
            return Ok(Err(report.diagnostics));
        }
        if let Some(id) = only {
            report.scenarios.retain(|s| s.id == id);
            if report.scenarios.is_empty() {
                anyhow::bail!(
                    "no scenario has the id '{id}' (see `rebuy check` for the loaded ones)"
                );
            }
        }
        let settings = EngineSettings {
            shop: self.config.shop.clone(),
            default_timezone: self.resolved.default_timezone,
            trigger_lookback: self.resolved.trigger_lookback,
            unsubscribe: self.unsubscriber(store).await?,
            control_group: self.resolved.control_group,
            step_expiry: self.resolved.step_expiry,
            tracking: self.tracker(store).await?,
        };
        report.renderer.share_recommendations(&self.recommendations);
        Ok(Ok(Engine::new(
            store.clone(),
            report.scenarios,
            report.renderer,
            settings,
        )
        .with_segments(report.segments)
        .with_targets(report.targets)))
    }

    pub fn deliverer(&self, store: &Store) -> Result<Deliverer> {
        let d = &self.config.delivery;
        let mailer = match d.transport {
            TransportKind::File => Mailer::file(d.file_dir.clone()),
            TransportKind::Smtp => {
                let password = read_secret(&d.smtp.password_env, d.smtp.password_file.as_deref())?;
                Mailer::smtp(&d.smtp, password)?
            }
        };
        let from = self
            .config
            .shop
            .get("from")
            .map(String::as_str)
            .unwrap_or_default();
        let from = from
            .parse()
            .with_context(|| format!("shop.from '{from}' is not a mailbox"))?;
        let policy = RetryPolicy {
            max_attempts: d.max_attempts,
            base: self.resolved.retry_base,
            max: self.resolved.retry_max,
        };
        let deliverer = Deliverer::new(
            store.clone(),
            mailer,
            from,
            policy,
            d.batch_size,
            chrono::Duration::seconds(d.lease_secs.max(1) as i64),
            Pacing {
                rate_per_second: d.rate_per_second,
                throttle_pause: chrono::Duration::seconds(d.throttle_pause_secs as i64),
            },
        )
        .with_limits(self.resolved.limits.clone(), self.resolved.default_timezone)
        .with_stall_limit(std::time::Duration::from_secs(self.config.stall_secs()))
        .with_owner_files()?;
        Ok(match &d.dkim {
            Some(k) => deliverer.with_dkim(dkim_config(k)?),
            None => deliverer,
        })
    }
}

/// The DKIM signer from config; the key is read from its file.
fn dkim_config(k: &crate::config::DkimSettings) -> Result<lettre::message::dkim::DkimConfig> {
    use lettre::message::dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey};
    use lettre::message::header::HeaderName;
    let text = std::fs::read_to_string(&k.key_file).with_context(|| {
        format!(
            "cannot read the DKIM key file {} (delivery.dkim.key_file)",
            k.key_file.display()
        )
    })?;
    let algorithm = match k.algorithm {
        crate::config::DkimAlgorithm::Rsa => DkimSigningAlgorithm::Rsa,
        crate::config::DkimAlgorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
    };
    let key = DkimSigningKey::new(text.trim(), algorithm).map_err(|e| {
        anyhow::anyhow!(
            "the DKIM key in {} is not a valid {:?} key ({e}): rsa wants a PKCS#1 PEM (BEGIN RSA PRIVATE KEY), ed25519 the base64 of its 32-byte seed",
            k.key_file.display(),
            k.algorithm
        )
    })?;
    let headers = ["From", "To", "Subject", "Date", "Message-ID"]
        .into_iter()
        .map(HeaderName::new_from_ascii_str)
        .collect();
    Ok(DkimConfig::new(
        k.selector.clone(),
        k.domain.clone(),
        key,
        headers,
        lettre::message::dkim::DkimCanonicalization {
            header: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
            body: lettre::message::dkim::DkimCanonicalizationType::Relaxed,
        },
    ))
}
