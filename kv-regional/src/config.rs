//! The regional node's service configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use kv_runtime::config::ConfigError;
use kv_runtime::quic::PeerAddr;
use kv_runtime::telemetry::LogFormat;
use kv_runtime::tls::TlsConfig;
use serde::{Deserialize, Serialize};

/// Everything `kv-regional` needs; the TOML file has the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionalConfig {
    /// UDP address to serve QUIC on.
    pub listen: SocketAddr,
    /// TCP address to serve Prometheus metrics on (`/metrics`); none when unset.
    pub metrics: Option<SocketAddr>,
    /// The origin processes' QUIC addresses, `host:port` (a DNS name is
    /// resolved at each dial); any of them serves any key. In TOML, a list or
    /// one comma-separated string (`origin` also works).
    #[serde(
        alias = "origin",
        deserialize_with = "kv_runtime::quic::peer::deserialize_list"
    )]
    pub origins: Vec<PeerAddr>,
    /// The name the origins' certificates must carry.
    pub origin_name: String,
    /// How long a dial to an origin may take, milliseconds. A dial that fails
    /// (or does not finish in time) marks the origin down. Requests wait as
    /// long as their own deadline allows.
    pub connect_timeout_ms: u64,
    /// How long an origin whose link failed is tried only after the others, seconds.
    pub node_down_secs: u64,
    /// Memory tier capacity, MiB.
    pub memory_mib: usize,
    /// Disk tier capacity, MiB (at least 64).
    pub disk_mib: usize,
    /// Where the disk tier lives.
    pub data_dir: PathBuf,
    /// How long a value stays cached when a read names no cache TTL, seconds.
    pub cache_ttl_secs: u64,
    /// How long a miss stays cached, seconds.
    pub negative_ttl_secs: u64,
    /// Longest cache TTL a read may ask for, seconds (longer gets this).
    pub max_cache_ttl_secs: u64,
    /// The last part of a TTL, percent, in which a read refreshes the copy
    /// in the background (0 turns it off).
    pub refresh_ahead_percent: u8,
    /// How long past its TTL a copy may be served when the origin fails or
    /// the deadline is near, seconds (0 turns it off).
    pub stale_if_error_secs: u64,
    /// The deadline of a background refresh, milliseconds.
    pub refresh_deadline_ms: u64,
    /// Change-feed events kept for edges that reconnect; one that missed
    /// more must revalidate its cache.
    pub feed_backlog: usize,
    /// Certificates.
    pub tls: TlsConfig,
    /// Log line format.
    pub log_format: LogFormat,
    /// OpenTelemetry collector to export spans to (OTLP/HTTP; `otlp` feature).
    pub otlp_endpoint: Option<String>,
}

impl Default for RegionalConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 7401).into(),
            metrics: None,
            origins: vec![SocketAddr::from(([127, 0, 0, 1], 7400)).into()],
            origin_name: kv_runtime::dev_certs::DEV_SERVER_NAME.into(),
            connect_timeout_ms: 1_000,
            node_down_secs: 5,
            memory_mib: 256,
            disk_mib: 1024,
            data_dir: "./.tierkv/regional".into(),
            cache_ttl_secs: 60,
            negative_ttl_secs: 30,
            max_cache_ttl_secs: 3600,
            refresh_ahead_percent: 20,
            stale_if_error_secs: 60,
            refresh_deadline_ms: 2000,
            feed_backlog: kv_runtime::feed::DEFAULT_BACKLOG,
            tls: TlsConfig {
                dev_certs: Some("./.tierkv/certs".into()),
                ..TlsConfig::default()
            },
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

impl RegionalConfig {
    /// The freshness rules of the cache.
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

    /// Checks rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.memory_mib == 0 {
            return fail("memory_mib must be at least 1");
        }
        if self.disk_mib < 64 {
            return fail("disk_mib must be at least 64 (the disk tier rotates 16 MiB blocks)");
        }
        if self.cache_ttl_secs == 0 {
            return fail("cache_ttl_secs must be at least 1");
        }
        if self.connect_timeout_ms == 0 {
            return fail("connect_timeout_ms must be at least 1");
        }
        if self.max_cache_ttl_secs < self.cache_ttl_secs {
            return fail("max_cache_ttl_secs must be at least cache_ttl_secs");
        }
        if self.refresh_ahead_percent >= 100 {
            return fail("refresh_ahead_percent must be below 100");
        }
        if self.refresh_deadline_ms == 0 {
            return fail("refresh_deadline_ms must be at least 1");
        }
        if self.feed_backlog == 0 {
            return fail("feed_backlog must be at least 1");
        }
        if self.origins.is_empty() {
            return fail("origins must name at least one origin");
        }
        if self.origin_name.is_empty() {
            return fail("origin_name must not be empty");
        }
        Ok(())
    }
}
