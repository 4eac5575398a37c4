//! `kv-edge`: the tierkv HTTP API.
//!
//! - `kv-edge dev`: the whole stack in one process on 127.0.0.1.
//! - `kv-edge serve`: an edge in front of running regional nodes and origin.
//!
//! Settings come from, lowest first: built-in defaults, `--config FILE`
//! (TOML), `TIERKV_EDGE_*` environment variables, and flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kv_edge::EdgeConfig;
use kv_edge::dev::{DevOptions, DevStack};
use kv_runtime::cli::CommonArgs;
use kv_runtime::config::set;
use kv_runtime::quic::PeerAddr;
use kv_runtime::telemetry;

/// The tierkv edge: an HTTP API with an in-process hot cache.
#[derive(Debug, Parser)]
#[command(name = "kv-edge", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run origin (local files), one regional node and an edge in one process.
    Dev {
        /// Directory for certificates, stored values and the disk cache.
        #[arg(long, env = "TIERKV_DEV_DATA_DIR", default_value = "./.tierkv")]
        data_dir: PathBuf,
        /// HTTP address of the edge.
        #[arg(long, env = "TIERKV_DEV_HTTP", default_value = "127.0.0.1:8787")]
        http: SocketAddr,
        /// Log format: text or json.
        #[arg(long, env = "TIERKV_LOG_FORMAT", default_value = "text")]
        log_format: telemetry::LogFormat,
        /// Export spans to this OpenTelemetry collector over OTLP/HTTP
        /// (builds with the `otlp` feature) [default: none].
        #[arg(long, env = "TIERKV_OTLP_ENDPOINT", value_name = "URL")]
        otlp_endpoint: Option<String>,
    },
    /// Run an edge in front of running regional nodes and an origin.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "TIERKV_EDGE_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP address [default: 127.0.0.1:8787].
    #[arg(long, env = "TIERKV_EDGE_HTTP")]
    http: Option<SocketAddr>,
    /// Regional nodes' QUIC addresses (HOST:PORT, DNS names resolved at each
    /// dial), comma-separated; every edge must list the same names. An empty
    /// value means none (straight to the origin) [default: 127.0.0.1:7401].
    #[arg(long, env = "TIERKV_EDGE_REGIONALS", value_delimiter = ',', num_args = 0.., value_parser = regional_addr)]
    regionals: Option<Vec<Option<PeerAddr>>>,
    /// The name regional nodes' certificates must carry [default: localhost].
    #[arg(long, env = "TIERKV_EDGE_REGIONAL_NAME")]
    regional_name: Option<String>,
    /// The origin processes' QUIC addresses, HOST:PORT, comma-separated; any
    /// of them serves any key [default: 127.0.0.1:7400].
    #[arg(long, visible_alias = "origin", env = "TIERKV_EDGE_ORIGINS", value_delimiter = ',', num_args = 1..)]
    origins: Option<Vec<PeerAddr>>,
    /// The name the origins' certificates must carry [default: localhost].
    #[arg(long, env = "TIERKV_EDGE_ORIGIN_NAME")]
    origin_name: Option<String>,
    /// A read's or list's deadline from its arrival, milliseconds: every tier
    /// answers within it (a timeout is a 504) [default: 2000].
    #[arg(long, env = "TIERKV_EDGE_READ_DEADLINE_MS")]
    read_deadline_ms: Option<u64>,
    /// A write's deadline from when its body has arrived, milliseconds; a
    /// write not confirmed by then answers 504 `outcome_unknown` [default: 2000].
    #[arg(long, env = "TIERKV_EDGE_WRITE_DEADLINE_MS")]
    write_deadline_ms: Option<u64>,
    /// Milliseconds added to a write's deadline per MiB of its value [default: 500].
    #[arg(long, env = "TIERKV_EDGE_WRITE_DEADLINE_PER_MIB_MS")]
    write_deadline_per_mib_ms: Option<u64>,
    /// How long a dial to an upstream node may take, milliseconds; a failed
    /// dial marks the node down [default: 1000].
    #[arg(long, env = "TIERKV_EDGE_CONNECT_TIMEOUT_MS")]
    connect_timeout_ms: Option<u64>,
    /// Seconds a node whose link failed is tried only after the others [default: 5].
    #[arg(long, env = "TIERKV_EDGE_NODE_DOWN_SECS")]
    node_down_secs: Option<u64>,
    /// Hot cache capacity, MiB; 0 turns it off [default: 64].
    #[arg(long, env = "TIERKV_EDGE_HOT_CACHE_MIB")]
    hot_cache_mib: Option<u64>,
    /// Largest value the hot cache admits, KiB [default: 100].
    #[arg(long, env = "TIERKV_EDGE_HOT_MAX_VALUE_KIB")]
    hot_max_value_kib: Option<usize>,
    /// Seconds a value stays hot when a read names no cache TTL [default: 60].
    #[arg(long, env = "TIERKV_EDGE_CACHE_TTL_SECS")]
    cache_ttl_secs: Option<u64>,
    /// Seconds a miss (a key never written, or deleted) stays hot; the
    /// change feed ends it early when the key is written [default: 30].
    #[arg(long, env = "TIERKV_EDGE_NEGATIVE_TTL_SECS")]
    negative_ttl_secs: Option<u64>,
    /// Longest cache_ttl a read may ask for, seconds; longer is refused
    /// with a 400 [default: 3600].
    #[arg(long, env = "TIERKV_EDGE_MAX_CACHE_TTL_SECS")]
    max_cache_ttl_secs: Option<u64>,
    /// The last part of a TTL, percent, in which a read refreshes its hot
    /// copy in the background, so hot keys never expire into a miss; 0
    /// turns it off [default: 20].
    #[arg(long, env = "TIERKV_EDGE_REFRESH_AHEAD_PERCENT")]
    refresh_ahead_percent: Option<u8>,
    /// Seconds past its TTL a copy may still be served, marked stale, when
    /// the upstream fails or the deadline is near; 0 turns it off [default: 60].
    #[arg(long, env = "TIERKV_EDGE_STALE_IF_ERROR_SECS")]
    stale_if_error_secs: Option<u64>,
    /// Shortest cache_ttl a read may ask for, seconds [default: 30].
    #[arg(long, env = "TIERKV_EDGE_MIN_CACHE_TTL_SECS")]
    min_cache_ttl_secs: Option<u64>,
    /// Shortest expiration_ttl, seconds [default: 60].
    #[arg(long, env = "TIERKV_EDGE_MIN_EXPIRATION_TTL_SECS")]
    min_expiration_ttl_secs: Option<u64>,
    #[command(flatten)]
    common: CommonArgs,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<EdgeConfig> {
        let mut config: EdgeConfig = kv_runtime::config::load_toml(self.config.as_deref())?;
        set(&mut config.http, self.http);
        set(
            &mut config.regionals,
            self.regionals
                .map(|addrs| addrs.into_iter().flatten().collect()),
        );
        set(&mut config.regional_name, self.regional_name);
        set(&mut config.origins, self.origins);
        set(&mut config.origin_name, self.origin_name);
        set(&mut config.read_deadline_ms, self.read_deadline_ms);
        set(&mut config.write_deadline_ms, self.write_deadline_ms);
        set(
            &mut config.write_deadline_per_mib_ms,
            self.write_deadline_per_mib_ms,
        );
        set(&mut config.connect_timeout_ms, self.connect_timeout_ms);
        set(&mut config.node_down_secs, self.node_down_secs);
        set(&mut config.hot_cache_mib, self.hot_cache_mib);
        set(&mut config.hot_max_value_kib, self.hot_max_value_kib);
        set(&mut config.cache_ttl_secs, self.cache_ttl_secs);
        set(&mut config.negative_ttl_secs, self.negative_ttl_secs);
        set(&mut config.min_cache_ttl_secs, self.min_cache_ttl_secs);
        set(&mut config.max_cache_ttl_secs, self.max_cache_ttl_secs);
        set(
            &mut config.refresh_ahead_percent,
            self.refresh_ahead_percent,
        );
        set(&mut config.stale_if_error_secs, self.stale_if_error_secs);
        set(
            &mut config.min_expiration_ttl_secs,
            self.min_expiration_ttl_secs,
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

/// A regional address; an empty one (`--regionals ''`) stands for none.
fn regional_addr(text: &str) -> Result<Option<PeerAddr>, String> {
    match text.trim() {
        "" => Ok(None),
        addr => addr
            .parse::<PeerAddr>()
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Dev {
            data_dir,
            http,
            log_format,
            otlp_endpoint,
        } => {
            let _telemetry = telemetry::init(log_format, "kv-edge", otlp_endpoint.as_deref())
                .context("kv-edge dev: cannot set up telemetry")?;
            let shutdown = kv_runtime::shutdown::signal();
            let options = DevOptions {
                data_dir: data_dir.clone(),
                http,
                ..DevOptions::default()
            };
            let stack = DevStack::start(options)
                .await
                .context("kv-edge dev: cannot start")?;
            println!("tierkv dev stack ready: http://{}", stack.http);
            println!("  data in {}; Ctrl-C to stop", data_dir.display());
            println!(
                "  curl -X PUT --data-binary 'hello' http://{}/v1/demo/greeting",
                stack.http
            );
            println!("  curl -i http://{}/v1/demo/greeting", stack.http);
            shutdown.await;
            stack.stop().await;
            println!("tierkv dev stack stopped");
        }
        Command::Serve(args) => {
            let config = args.into_config().context("kv-edge: bad configuration")?;
            let _telemetry = telemetry::init(
                config.log_format,
                "kv-edge",
                config.otlp_endpoint.as_deref(),
            )
            .context("kv-edge: cannot set up telemetry")?;
            let shutdown = kv_runtime::shutdown::signal();
            let server = kv_edge::EdgeServer::bind(&config)
                .await
                .context("kv-edge: cannot start")?;
            tracing::info!(addr = %server.local_addr()?, regionals = ?config.regionals, "kv-edge ready");
            server.serve(shutdown).await?;
        }
    }
    Ok(())
}
