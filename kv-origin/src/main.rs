//! `kv-origin`: serves the tierkv origin over QUIC.
//!
//! Settings come from, lowest first: built-in defaults, `--config FILE`
//! (TOML), `TIERKV_ORIGIN_*` environment variables, and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kv_origin::{OriginConfig, OriginServer};
use kv_runtime::cli::CommonArgs;
use kv_runtime::config::{set, set_some};
use kv_runtime::telemetry;

/// The tierkv origin: the source of truth, over object storage.
#[derive(Debug, Parser)]
#[command(name = "kv-origin", version, about)]
struct Args {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "TIERKV_ORIGIN_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address to serve QUIC on [default: 127.0.0.1:7400].
    #[arg(long, env = "TIERKV_ORIGIN_LISTEN")]
    listen: Option<SocketAddr>,
    /// TCP address to serve Prometheus metrics on, at /metrics [default: none].
    #[arg(long, env = "TIERKV_ORIGIN_METRICS")]
    metrics: Option<SocketAddr>,
    /// Object store URL: file:///path, memory:///, s3://bucket[/prefix]
    /// (gs:// and az:// with the gcp and azure features) [default: file://./.tierkv/origin].
    #[arg(long, env = "TIERKV_ORIGIN_STORE")]
    store: Option<String>,
    /// S3 endpoint, for S3-compatible servers (AWS_ENDPOINT also works).
    #[arg(long, env = "TIERKV_ORIGIN_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region (AWS_REGION also works).
    #[arg(long, env = "TIERKV_ORIGIN_S3_REGION")]
    s3_region: Option<String>,
    /// S3 access key id (AWS_ACCESS_KEY_ID also works).
    #[arg(long, env = "TIERKV_ORIGIN_S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// S3 secret access key (AWS_SECRET_ACCESS_KEY also works).
    #[arg(
        long,
        env = "TIERKV_ORIGIN_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    s3_secret_access_key: Option<String>,
    /// Allow a plain-HTTP S3 endpoint (a local S3-compatible server).
    #[arg(long, env = "TIERKV_ORIGIN_S3_ALLOW_HTTP")]
    s3_allow_http: Option<bool>,
    /// Time limit of one object-store call, in milliseconds [default: 10000].
    #[arg(long, env = "TIERKV_ORIGIN_STORE_TIMEOUT_MS")]
    store_timeout_ms: Option<u64>,
    /// Retries of a failed object-store call, within the request's deadline [default: 3].
    #[arg(long, env = "TIERKV_ORIGIN_STORE_RETRIES")]
    store_retries: Option<u32>,
    /// How long a write's id is kept with its key, so that a retry of the
    /// write is answered with its first version instead of being applied
    /// again, in seconds (the newest 64 writes of a key at most) [default: 3600].
    #[arg(long, env = "TIERKV_ORIGIN_WRITE_ID_WINDOW_SECS")]
    write_id_window_secs: Option<u64>,
    /// How long tombstones and expired values are kept before the sweep
    /// removes them, in seconds; at least the write-id window [default: 86400].
    #[arg(long, env = "TIERKV_ORIGIN_SWEEP_RETENTION_SECS")]
    sweep_retention_secs: Option<u64>,
    /// Seconds between two sweep passes over the store; 0 turns the sweep off
    /// [default: 3600].
    #[arg(long, env = "TIERKV_ORIGIN_SWEEP_INTERVAL_SECS")]
    sweep_interval_secs: Option<u64>,
    /// Most objects the sweep examines per second [default: 100].
    #[arg(long, env = "TIERKV_ORIGIN_SWEEP_MAX_PER_SEC")]
    sweep_max_per_sec: Option<u32>,
    /// Change-feed events kept for subscribers that reconnect; one that
    /// missed more revalidates its cache instead; at most 64 MiB of events are kept
    /// whatever the count [default: 65536].
    #[arg(long, env = "TIERKV_ORIGIN_FEED_BACKLOG")]
    feed_backlog: Option<usize>,
    /// Largest value, bytes, a change-feed event carries inline so that
    /// caches replace their copy rather than drop it; 0 sends none, at most
    /// 65536 [default: 4096].
    #[arg(long, env = "TIERKV_ORIGIN_FEED_INLINE_MAX_BYTES")]
    feed_inline_max_bytes: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

impl Args {
    fn into_config(self) -> anyhow::Result<OriginConfig> {
        let mut config: OriginConfig = kv_runtime::config::load_toml(self.config.as_deref())?;
        let store = &mut config.store;
        set(&mut config.listen, self.listen);
        set_some(&mut config.metrics, self.metrics);
        set(&mut store.url, self.store);
        set_some(&mut store.s3_endpoint, self.s3_endpoint);
        set_some(&mut store.s3_region, self.s3_region);
        set_some(&mut store.s3_access_key_id, self.s3_access_key_id);
        set_some(&mut store.s3_secret_access_key, self.s3_secret_access_key);
        set(&mut store.s3_allow_http, self.s3_allow_http);
        set(&mut store.timeout_ms, self.store_timeout_ms);
        set(&mut store.retries, self.store_retries);
        set(&mut config.write_id_window_secs, self.write_id_window_secs);
        set(&mut config.sweep_retention_secs, self.sweep_retention_secs);
        set(&mut config.sweep_interval_secs, self.sweep_interval_secs);
        set(&mut config.sweep_max_per_sec, self.sweep_max_per_sec);
        set(&mut config.feed_backlog, self.feed_backlog);
        set(
            &mut config.feed_inline_max_bytes,
            self.feed_inline_max_bytes,
        );
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
        .context("kv-origin: bad configuration")?;
    let _telemetry = telemetry::init(
        config.log_format,
        "kv-origin",
        config.otlp_endpoint.as_deref(),
    )
    .context("kv-origin: cannot set up telemetry")?;
    let shutdown = kv_runtime::shutdown::signal();
    let server = OriginServer::bind(&config).context("kv-origin: cannot start")?;
    tracing::info!(
        addr = %server.local_addr()?,
        metrics = ?server.metrics_addr(),
        store = %config.store.url,
        "kv-origin ready"
    );
    server.serve(shutdown).await;
    Ok(())
}
