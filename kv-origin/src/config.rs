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
        if self.store.retries > 10 {
            return Err(ConfigError::Invalid(
                "store.retries must be at most 10".into(),
            ));
        }
        Ok(())
    }
}
