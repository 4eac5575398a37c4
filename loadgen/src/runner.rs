//! The two ways to run: `compare` (every setup, started here, one after the
//! other, with the same planned requests) and `run --target` (a running
//! deployment).

use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::driver::{DriveOptions, Driven, drive, http_client, preload_http};
use crate::profile::Profile;
use crate::report::{RunReport, SetupReport};
use crate::stack::{SetupKind, Stack};
use crate::visibility::LagOptions;
use crate::workload::{Workload, WorkloadConfig};

/// Why a run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The workload is unusable.
    #[error("workload: {0}")]
    Workload(#[from] crate::workload::WorkloadError),
    /// The keyspace could not be written.
    #[error("preload: {0}")]
    Dataset(#[from] crate::dataset::DatasetError),
    /// A stack did not start.
    #[error("{setup}: {source}")]
    Stack {
        /// The setup.
        setup: &'static str,
        /// The cause.
        source: crate::stack::StackError,
    },
    /// Files or sockets.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// Writing keys to a target failed.
    #[error("preload through {target}: {message}")]
    Preload {
        /// The target.
        target: String,
        /// The first failure.
        message: String,
    },
    /// No target was given.
    #[error("no target: give at least one --target URL")]
    NoTarget,
}

/// How `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Delays and topology, already time-scaled.
    pub profile: Profile,
    /// The delay multiplier the profile was scaled by (for the report).
    pub time_scale: f64,
    /// What to send.
    pub workload: WorkloadConfig,
    /// Which setups, in order.
    pub setups: Vec<SetupKind>,
    /// Where stacks keep their data; a temporary directory if `None`.
    pub work_dir: Option<PathBuf>,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Driver settings.
    pub drive: DriveOptions,
}

fn bar(show: bool, len: u64, prefix: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_prefix(prefix.to_owned());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>16} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Runs every setup of `options` and reports them.
pub async fn compare(options: CompareOptions) -> Result<RunReport, RunError> {
    let workload = Arc::new(Workload::new(options.workload.clone())?);
    let edges = options.profile.topology.edges;
    let plan = workload.plan(edges)?;
    let scratch = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let preload = bar(options.progress, u64::from(workload.keys()), "preload");
    preload.set_message(format!(
        "{} keys, {:.0} MiB",
        workload.keys(),
        workload.total_bytes() as f64 / 1048576.0
    ));
    let dataset = crate::dataset::write(&workload, &preload).await?;
    preload.finish();

    let client = http_client(&options.drive)?;
    // Waits for a write to show are bounded by the stacks' cache TTL.
    let drive_options = DriveOptions {
        lag: options.drive.lag.map(|lag| LagOptions {
            max_wait: Some(lag.max_wait_for(options.profile.cache_ttl())),
            ..lag
        }),
        ..options.drive
    };
    let mut setups = Vec::new();
    for (i, kind) in options.setups.iter().copied().enumerate() {
        let stack = Stack::start(
            kind,
            &options.profile,
            &dataset,
            scratch.path(),
            workload.config().seed.wrapping_add(i as u64 * 1_000),
        )
        .await
        .map_err(|source| RunError::Stack {
            setup: kind.name(),
            source,
        })?;
        let progress = bar(options.progress, plan.len() as u64, kind.name());
        let driven = drive(
            &client,
            &workload,
            &plan,
            &stack.targets,
            drive_options,
            &progress,
        )
        .await;
        progress.finish();
        let mut report = setup_report(kind.name(), &driven, &stack.targets);
        report.stack = serde_json::to_value(stack.counters()).ok();
        setups.push(report);
        stack.stop().await;
    }
    Ok(RunReport {
        profile: options.profile.name.clone(),
        seed: workload.config().seed,
        time_scale: options.time_scale,
        workload: workload_json(&workload),
        origin_to_edge_ms: Some(options.profile.origin_to_edge_ms()),
        cache_ttl_secs: Some(options.profile.topology.cache_ttl_secs),
        setups,
    })
}

/// How `run` drives a deployment.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Edge base URLs; requests are spread across them.
    pub targets: Vec<String>,
    /// What to send.
    pub workload: WorkloadConfig,
    /// Write every key first (through the first target).
    pub preload: bool,
    /// Show progress bars.
    pub progress: bool,
    /// Driver settings.
    pub drive: DriveOptions,
}

/// Drives running edges and reports them as one setup named `target`.
pub async fn run_target(options: TargetOptions) -> Result<RunReport, RunError> {
    let targets: Vec<String> = options
        .targets
        .iter()
        .map(|t| t.trim_end_matches('/').to_owned())
        .collect();
    let first = targets.first().ok_or(RunError::NoTarget)?.clone();
    let workload = Arc::new(Workload::new(options.workload.clone())?);
    let plan = workload.plan(targets.len())?;
    let client = http_client(&options.drive)?;
    if options.preload {
        let progress = bar(options.progress, u64::from(workload.keys()), "preload");
        preload_http(&client, &workload, &first, 64, &progress)
            .await
            .map_err(|message| RunError::Preload {
                target: first.clone(),
                message,
            })?;
        progress.finish();
    }
    let progress = bar(options.progress, plan.len() as u64, "target");
    let driven = drive(
        &client,
        &workload,
        &plan,
        &targets,
        options.drive,
        &progress,
    )
    .await;
    progress.finish();
    Ok(RunReport {
        profile: "target".into(),
        seed: workload.config().seed,
        time_scale: 1.0,
        workload: workload_json(&workload),
        origin_to_edge_ms: None,
        cache_ttl_secs: None,
        setups: vec![setup_report("target", &driven, &targets)],
    })
}

/// One setup's report: latencies, tiers, lag and stale reads.
fn setup_report(name: &str, driven: &Driven, targets: &[String]) -> SetupReport {
    let mut report = SetupReport::new(name, &driven.recorder, driven.measured_time.as_secs_f64());
    report.visibility = driven.lag.as_ref().map(|lag| lag.report(targets));
    report.stale_reads = Some(driven.stale);
    report
}

fn workload_json(workload: &Workload) -> serde_json::Value {
    let mut value = serde_json::to_value(workload.config()).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("zipf_exponent_used".into(), workload.exponent().into());
        object.insert("head_keys".into(), workload.config().head_keys().into());
        object.insert("total_value_bytes".into(), workload.total_bytes().into());
    }
    value
}
