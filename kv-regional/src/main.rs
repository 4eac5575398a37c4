//! `kv-regional`: serves a tierkv regional node over QUIC.
//!
//! Settings come from, lowest first: built-in defaults, `--config FILE`
//! (TOML), `TIERKV_REGIONAL_*` environment variables, and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kv_regional::{RegionalConfig, RegionalServer};
use kv_runtime::cli::CommonArgs;
use kv_runtime::config::{set, set_some};
use kv_runtime::quic::PeerAddr;
use kv_runtime::telemetry;

/// A tierkv regional node: a memory and disk cache in front of the origin.
#[derive(Debug, Parser)]
#[command(name = "kv-regional", version, about)]
struct Args {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "TIERKV_REGIONAL_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address to serve QUIC on [default: 127.0.0.1:7401].
    #[arg(long, env = "TIERKV_REGIONAL_LISTEN")]
    listen: Option<SocketAddr>,
    /// TCP address to serve Prometheus metrics on, at /metrics [default: none].
    #[arg(long, env = "TIERKV_REGIONAL_METRICS")]
    metrics: Option<SocketAddr>,
    /// The origin processes' QUIC addresses, HOST:PORT, comma-separated; any
    /// of them serves any key, and a DNS name is resolved at each dial
    /// [default: 127.0.0.1:7400].
    #[arg(long, visible_alias = "origin", env = "TIERKV_REGIONAL_ORIGINS", value_delimiter = ',', num_args = 1..)]
    origins: Option<Vec<PeerAddr>>,
    /// The name the origins' certificates must carry [default: localhost].
    #[arg(long, env = "TIERKV_REGIONAL_ORIGIN_NAME")]
    origin_name: Option<String>,
    /// How long a dial to an origin may take, milliseconds; a failed dial
    /// marks the origin down. Requests wait as long as their deadline, which
    /// the edge sets [default: 1000].
    #[arg(long, env = "TIERKV_REGIONAL_CONNECT_TIMEOUT_MS")]
    connect_timeout_ms: Option<u64>,
    /// Seconds an origin whose link failed is tried only after the others [default: 5].
    #[arg(long, env = "TIERKV_REGIONAL_NODE_DOWN_SECS")]
    node_down_secs: Option<u64>,
    /// Memory cache capacity, MiB [default: 256].
    #[arg(long, env = "TIERKV_REGIONAL_MEMORY_MIB")]
    memory_mib: Option<usize>,
    /// Disk cache capacity, MiB, at least 64 [default: 1024].
    #[arg(long, env = "TIERKV_REGIONAL_DISK_MIB")]
    disk_mib: Option<usize>,
    /// Directory of the disk cache [default: ./.tierkv/regional].
    #[arg(long, env = "TIERKV_REGIONAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Seconds a value stays cached when a read names no cache TTL [default: 60].
    #[arg(long, env = "TIERKV_REGIONAL_CACHE_TTL_SECS")]
    cache_ttl_secs: Option<u64>,
    /// Seconds a miss stays cached [default: 30].
    #[arg(long, env = "TIERKV_REGIONAL_NEGATIVE_TTL_SECS")]
    negative_ttl_secs: Option<u64>,
    /// Longest cache TTL a read may ask for, seconds; a longer one gets this
    /// [default: 3600].
    #[arg(long, env = "TIERKV_REGIONAL_MAX_CACHE_TTL_SECS")]
    max_cache_ttl_secs: Option<u64>,
    /// The last part of a TTL, percent, in which a read refreshes the copy
    /// in the background, so hot keys never expire into a miss; 0 turns it
    /// off [default: 20].
    #[arg(long, env = "TIERKV_REGIONAL_REFRESH_AHEAD_PERCENT")]
    refresh_ahead_percent: Option<u8>,
    /// Seconds past its TTL a copy may still be served when the origin fails
    /// or the deadline is near; 0 turns it off [default: 60].
    #[arg(long, env = "TIERKV_REGIONAL_STALE_IF_ERROR_SECS")]
    stale_if_error_secs: Option<u64>,
    /// The deadline of a background refresh, milliseconds [default: 2000].
    #[arg(long, env = "TIERKV_REGIONAL_REFRESH_DEADLINE_MS")]
    refresh_deadline_ms: Option<u64>,
    /// Change-feed events kept for edges that reconnect; one that missed
    /// more revalidates its cache instead; at most 64 MiB of events are kept
    /// whatever the count [default: 65536].
    #[arg(long, env = "TIERKV_REGIONAL_FEED_BACKLOG")]
    feed_backlog: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

impl Args {
    fn into_config(self) -> anyhow::Result<RegionalConfig> {
        let mut config: RegionalConfig = kv_runtime::config::load_toml(self.config.as_deref())?;
        set(&mut config.listen, self.listen);
        set_some(&mut config.metrics, self.metrics);
        set(&mut config.origins, self.origins);
        set(&mut config.origin_name, self.origin_name);
        set(&mut config.connect_timeout_ms, self.connect_timeout_ms);
        set(&mut config.node_down_secs, self.node_down_secs);
        set(&mut config.memory_mib, self.memory_mib);
        set(&mut config.disk_mib, self.disk_mib);
        set(&mut config.data_dir, self.data_dir);
        set(&mut config.cache_ttl_secs, self.cache_ttl_secs);
        set(&mut config.negative_ttl_secs, self.negative_ttl_secs);
        set(&mut config.max_cache_ttl_secs, self.max_cache_ttl_secs);
        set(
            &mut config.refresh_ahead_percent,
            self.refresh_ahead_percent,
        );
        set(&mut config.stale_if_error_secs, self.stale_if_error_secs);
        set(&mut config.refresh_deadline_ms, self.refresh_deadline_ms);
        set(&mut config.feed_backlog, self.feed_backlog);
        self.common.apply(
            &mut config.tls,
            &mut config.log_format,
            &mut config.otlp_endpoint,
        );
        config.validate()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse()
        .into_config()
        .context("kv-regional: bad configuration")?;
    let _telemetry = telemetry::init(
        config.log_format,
        "kv-regional",
        config.otlp_endpoint.as_deref(),
    )
    .context("kv-regional: cannot set up telemetry")?;
    let shutdown = kv_runtime::shutdown::signal();
    let server = RegionalServer::bind(&config)
        .await
        .context("kv-regional: cannot start")?;
    tracing::info!(
        addr = %server.local_addr()?,
        metrics = ?server.metrics_addr(),
        origins = ?config.origins,
        "kv-regional ready"
    );
    server.serve(shutdown).await;
    Ok(())
}
