//! The origin's service configuration.

use std::net::SocketAddr;

use kv_runtime::config::ConfigError;
use kv_runtime::telemetry::LogFormat;
use kv_runtime::tls::TlsConfig;
use serde::{Deserialize, Serialize};

use crate::store::StoreConfig;

/// Everything `kv-origin` needs; the TOML file has the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// UDP address to serve QUIC on.
    pub listen: SocketAddr,
    /// TCP address to serve Prometheus metrics on (`/metrics`); none when unset.
    pub metrics: Option<SocketAddr>,
    /// The object store.
    pub store: StoreConfig,
    /// How long a write's id is kept with its key, in seconds, so that a
    /// retry is recognised (the newest 64 writes of a key at most).
    pub write_id_window_secs: u64,
    /// How long tombstones and expired values are kept before the sweep
    /// removes them, in seconds.
    pub sweep_retention_secs: u64,
    /// Seconds between two sweep passes; 0 turns the sweep off.
    pub sweep_interval_secs: u64,
    /// Most objects the sweep examines per second.
    pub sweep_max_per_sec: u32,
    /// Change-feed events kept for subscribers that reconnect; one that
    /// missed more must revalidate its cache.
    pub feed_backlog: usize,
    /// Largest value a change-feed event carries inline, bytes (0: none),
    /// so caches can replace their copy instead of dropping it.
    pub feed_inline_max_bytes: usize,
    /// Certificates.
    pub tls: TlsConfig,
    /// Log line format.
    pub log_format: LogFormat,
    /// OpenTelemetry collector to export spans to (OTLP/HTTP; `otlp` feature).
    pub otlp_endpoint: Option<String>,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 7400).into(),
            metrics: None,
            store: StoreConfig::default(),
            write_id_window_secs: 3600,
            sweep_retention_secs: 86_400,
            sweep_interval_secs: 3_600,
            sweep_max_per_sec: 100,
            feed_backlog: kv_runtime::feed::DEFAULT_BACKLOG,
            feed_inline_max_bytes: 4096,
            tls: TlsConfig {
                dev_certs: Some("./.tierkv/certs".into()),
                ..TlsConfig::default()
            },
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl OriginConfig {
    /// The sweep's options, or `None` when it is off.
    pub fn sweep_options(&self) -> Option<crate::sweep::SweepOptions> {
        let secs = std::time::Duration::from_secs;
        (self.sweep_interval_secs > 0).then(|| crate::sweep::SweepOptions {
            retention: secs(self.sweep_retention_secs),
            interval: secs(self.sweep_interval_secs),
            max_per_sec: self.sweep_max_per_sec,
            call_timeout: std::time::Duration::from_millis(self.store.timeout_ms.saturating_mul(2)),
        })
    }

    /// The origin's options, from this config.
    pub fn origin_options(&self) -> crate::origin::OriginOptions {
        crate::origin::OriginOptions {
            write_id_window: std::time::Duration::from_secs(self.write_id_window_secs),
            wall_clock: None,
            feed_backlog: self.feed_backlog,
            feed_inline_max_bytes: self.feed_inline_max_bytes,
        }
    }

    /// Checks rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.store.url.trim().is_empty() {
            return Err(ConfigError::Invalid("store.url must not be empty".into()));
        }
        if self.store.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "store.timeout_ms must be at least 1".into(),
            ));
        }
        if self.write_id_window_secs == 0 {
            return Err(ConfigError::Invalid(
                "write_id_window_secs must be at least 1".into(),
            ));
        }
        if self.sweep_max_per_sec == 0 {
            return Err(ConfigError::Invalid(
                "sweep_max_per_sec must be at least 1".into(),
            ));
        }
        if self.sweep_retention_secs < self.write_id_window_secs {
            return Err(ConfigError::Invalid(
                "sweep_retention_secs must be at least write_id_window_secs: a retry must not \
                 outlive the tombstone that remembers it"
                    .into(),
            ));
        }
        if self.feed_backlog == 0 {
            return Err(ConfigError::Invalid(
                "feed_backlog must be at least 1".into(),
            ));
        }
        if self.feed_inline_max_bytes > kv_proto::limits::MAX_INLINE_VALUE {
            return Err(ConfigError::Invalid(format!(
                "feed_inline_max_bytes must be at most {}",
                kv_proto::limits::MAX_INLINE_VALUE
            )));
        }
        if self.store.retries > 10 {
            return Err(ConfigError::Invalid(
                "store.retries must be at most 10".into(),
            ));
        }
        Ok(())
    }
}
