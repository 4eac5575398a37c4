//! The edge's service configuration.

use std::net::SocketAddr;

use kv_runtime::config::ConfigError;
use kv_runtime::quic::PeerAddr;
use kv_runtime::telemetry::LogFormat;
use kv_runtime::tls::TlsConfig;
use serde::{Deserialize, Serialize};

/// Everything `kv-edge serve` needs; the TOML file has the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// TCP address of the HTTP API.
    pub http: SocketAddr,
    /// Regional nodes' QUIC addresses, `host:port`; empty means straight to
    /// the origin. Keys are placed by rendezvous hashing over these names, so
    /// every edge of a region must list the same ones.
    pub regionals: Vec<PeerAddr>,
    /// The name regional nodes' certificates must carry.
    pub regional_name: String,
    /// The origin's QUIC address, `host:port`.
    pub origin: PeerAddr,
    /// The name the origin's certificate must carry.
    pub origin_name: String,
    /// Time limit of one upstream request, milliseconds.
    pub upstream_timeout_ms: u64,
    /// How long a failed regional node is skipped, seconds.
    pub node_down_secs: u64,
    /// Hot cache capacity, MiB; 0 turns it off.
    pub hot_cache_mib: u64,
    /// Largest value the hot cache admits, KiB.
    pub hot_max_value_kib: usize,
    /// How long a value stays in the hot cache when a read names no cache TTL, seconds.
    pub cache_ttl_secs: u64,
    /// Shortest `cache_ttl` a read may ask for, seconds.
    pub min_cache_ttl_secs: u64,
    /// Shortest `expiration_ttl` (and how far ahead an `expiration` must be), seconds.
    pub min_expiration_ttl_secs: u64,
    /// Certificates.
    pub tls: TlsConfig,
    /// Log line format.
    pub log_format: LogFormat,
    /// OpenTelemetry collector to export spans to (OTLP/HTTP; `otlp` feature).
    pub otlp_endpoint: Option<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            http: ([127, 0, 0, 1], 8787).into(),
            regionals: vec![SocketAddr::from(([127, 0, 0, 1], 7401)).into()],
            regional_name: kv_runtime::dev_certs::DEV_SERVER_NAME.into(),
            origin: SocketAddr::from(([127, 0, 0, 1], 7400)).into(),
            origin_name: kv_runtime::dev_certs::DEV_SERVER_NAME.into(),
            upstream_timeout_ms: 2_000,
            node_down_secs: 5,
            hot_cache_mib: 64,
            hot_max_value_kib: 100,
            cache_ttl_secs: 60,
            min_cache_ttl_secs: 30,
            min_expiration_ttl_secs: 60,
            tls: TlsConfig {
                dev_certs: Some("./.tierkv/certs".into()),
                ..TlsConfig::default()
            },
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl EdgeConfig {
    /// Checks rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.upstream_timeout_ms == 0 {
            return fail("upstream_timeout_ms must be at least 1");
        }
        if self.cache_ttl_secs == 0 {
            return fail("cache_ttl_secs must be at least 1");
        }
        if self.hot_max_value_kib * 1024 > kv_proto::limits::MAX_VALUE_LEN {
            return fail("hot_max_value_kib must not exceed the 25 MiB value limit");
        }
        if self.regional_name.is_empty() || self.origin_name.is_empty() {
            return fail("regional_name and origin_name must not be empty");
        }
        Ok(())
    }
}
