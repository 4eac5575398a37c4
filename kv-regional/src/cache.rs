//! Building the foyer hybrid cache: memory in front of a disk cache in the
//! data directory, written on insertion so that a restart finds it.

use std::path::PathBuf;

use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, PsyncIoEngineConfig, RecoverMode,
};

use kv_runtime::metrics::Metrics;
use mixtrics::registry::prometheus_0_14::PrometheusMetricsRegistry;

use crate::cached::Cached;

/// The cache of a regional node: keys are `namespace/key` (a namespace has no `/`).
pub type RegionalCache = HybridCache<String, Cached>;

/// Sizes and place of the cache.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Memory tier capacity, bytes.
    pub memory_bytes: usize,
    /// Disk tier capacity, bytes.
    pub disk_bytes: usize,
    /// Where the disk tier lives.
    pub dir: PathBuf,
}

/// Disk cache block size. An entry must fit in one block, so values over
/// this (up to the 25 MiB limit) are cached in memory only.
pub const DISK_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// Opens the cache, recovering what an earlier run left on disk. foyer
/// reports its own metrics (`foyer_*`, labelled `name="regional"`) in `metrics`.
pub async fn open(
    options: &CacheOptions,
    metrics: &Metrics,
) -> Result<RegionalCache, foyer::Error> {
    std::fs::create_dir_all(&options.dir).map_err(foyer::Error::io_error)?;
    // The disk must hold a few blocks for foyer to rotate through.
    let disk_bytes = options.disk_bytes.max(4 * DISK_BLOCK_BYTES);
    let device = FsDeviceBuilder::new(&options.dir)
        .with_capacity(disk_bytes)
        .build()?;
    HybridCacheBuilder::new()
        .with_name("regional")
        .with_metrics_registry(Box::new(PrometheusMetricsRegistry::new(
            metrics.registry().clone(),
        )))
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .with_flush_on_close(true)
        .memory(options.memory_bytes)
        .with_weighter(|key: &String, value: &Cached| key.len() + value.weight())
        .storage()
        .with_io_engine_config(PsyncIoEngineConfig::new())
        .with_engine_config(
            BlockEngineConfig::new(device)
                .with_block_size(DISK_BLOCK_BYTES)
                // Deletes must survive a restart, or a recovered disk would
                // bring a deleted value back.
                .with_tombstone_log(true),
        )
        .with_recover_mode(RecoverMode::Quiet)
        .build()
        .await
}

/// The cache key of a namespaced key.
pub fn cache_key(namespace: &kv_proto::Namespace, key: &kv_proto::Key) -> String {
    let mut out = String::with_capacity(namespace.as_str().len() + 1 + key.as_str().len());
    out.push_str(namespace.as_str());
    out.push('/');
    out.push_str(key.as_str());
    out
}
