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
    /// The origin processes' QUIC addresses, `host:port`; any of them serves
    /// any key. In TOML, a list or one comma-separated string (`origin` also works).
    #[serde(
        alias = "origin",
        deserialize_with = "kv_runtime::quic::peer::deserialize_list"
    )]
    pub origins: Vec<PeerAddr>,
    /// The name the origins' certificates must carry.
    pub origin_name: String,
    /// A read's deadline, from its arrival: every tier answers within it, milliseconds.
    pub read_deadline_ms: u64,
    /// A write's deadline, from when its body has arrived, milliseconds;
    /// `write_deadline_per_mib_ms` is added for each MiB of the value.
    pub write_deadline_ms: u64,
    /// What each MiB of a written value adds to its deadline, milliseconds.
    pub write_deadline_per_mib_ms: u64,
    /// How long a dial to an upstream node may take, milliseconds. A dial
    /// that fails (or does not finish in time) marks the node down.
    pub connect_timeout_ms: u64,
    /// How long a node whose link failed is tried only after the others, seconds.
    pub node_down_secs: u64,
    /// Hot cache capacity, MiB; 0 turns it off.
    pub hot_cache_mib: u64,
    /// Largest value the hot cache admits, KiB.
    pub hot_max_value_kib: usize,
    /// How long a value stays in the hot cache when a read names no cache TTL, seconds.
    pub cache_ttl_secs: u64,
    /// How long a miss (a key never written, or deleted) stays in the hot
    /// cache, seconds; the change feed ends it early when the key is written.
    pub negative_ttl_secs: u64,
    /// Longest `cache_ttl` a read may ask for, seconds; longer is refused with a 400.
    pub max_cache_ttl_secs: u64,
    /// The last part of a TTL, percent, in which a read refreshes its hot
    /// copy in the background (0 turns it off).
    pub refresh_ahead_percent: u8,
    /// How long past its TTL a copy may be served, marked stale, when the
    /// upstream fails or the deadline is near, seconds (0 turns it off).
    pub stale_if_error_secs: u64,
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
            origins: vec![SocketAddr::from(([127, 0, 0, 1], 7400)).into()],
            origin_name: kv_runtime::dev_certs::DEV_SERVER_NAME.into(),
            read_deadline_ms: 2_000,
            write_deadline_ms: 2_000,
            write_deadline_per_mib_ms: 500,
            connect_timeout_ms: 1_000,
            node_down_secs: 5,
            hot_cache_mib: 64,
            hot_max_value_kib: 100,
            cache_ttl_secs: 60,
            negative_ttl_secs: 30,
            max_cache_ttl_secs: 3600,
            refresh_ahead_percent: 20,
            stale_if_error_secs: 60,
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
    /// The freshness rules of the hot cache.
    pub fn freshness(&self) -> kv_runtime::freshness::Freshness {
        kv_runtime::freshness::Freshness::from_secs(
            (
                self.cache_ttl_secs,
                self.negative_ttl_secs,
                self.max_cache_ttl_secs,
            ),
            self.refresh_ahead_percent,
            self.stale_if_error_secs,
        )
    }

    /// The deadlines the HTTP API gives requests.
    pub fn deadlines(&self) -> crate::http::Deadlines {
        let ms = std::time::Duration::from_millis;
        crate::http::Deadlines {
            read: ms(self.read_deadline_ms),
            write: ms(self.write_deadline_ms),
            write_per_mib: ms(self.write_deadline_per_mib_ms),
        }
    }

    /// Checks rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.read_deadline_ms == 0 || self.write_deadline_ms == 0 {
            return fail("read_deadline_ms and write_deadline_ms must be at least 1");
        }
        if self.connect_timeout_ms == 0 {
            return fail("connect_timeout_ms must be at least 1");
        }
        if self.origins.is_empty() {
            return fail("origins must name at least one origin");
        }
        if self.cache_ttl_secs == 0 {
            return fail("cache_ttl_secs must be at least 1");
        }
        if self.max_cache_ttl_secs < self.cache_ttl_secs.max(self.min_cache_ttl_secs) {
            return fail(
                "max_cache_ttl_secs must be at least cache_ttl_secs and min_cache_ttl_secs",
            );
        }
        if self.refresh_ahead_percent >= 100 {
            return fail("refresh_ahead_percent must be below 100");
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
