//! `loadgen compare`, `loadgen run` and `loadgen chaos`: see the crate docs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadgen::chaos::ChaosArgs;
use loadgen::driver::DriveOptions;
use loadgen::plot::{Curve, lag_plot_path, write_lag_plot, write_plot};
use loadgen::profile::Profile;
use loadgen::report::RunReport;
use loadgen::runner::{CompareOptions, TargetOptions, compare, run_target};
use loadgen::stack::SetupKind;
use loadgen::visibility::LagOptions;
use loadgen::workload::{Arrivals, WorkloadConfig};

/// Drives tierkv with an open-loop workload and prints read latency by
/// percentile, per setup.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts each setup (untiered, direct, direct+regional, tiered) in this
    /// process with emulated network delays, drives each with the same
    /// requests, and compares their latency curves.
    Compare(CompareArgs),
    /// Drives running edges (the dev stack or a deployment) with the workload.
    Run(RunArgs),
    /// Fault campaign: starts origins (on S3), regional nodes and edges as
    /// processes of the built binaries, runs writers and readers through
    /// every edge while killing processes and cutting links, then checks the
    /// history (durability, version order, no phantom or failed-write reads,
    /// bounded staleness, idempotency). Exits 2 on a violation.
    Chaos(Box<ChaosArgs>),
    /// Checks a history that `loadgen chaos` recorded (history.jsonl in its
    /// run directory) again, e.g. with another staleness bound. Exits 2 on a
    /// violation.
    ChaosCheck(ChaosCheckArgs),
}

#[derive(Debug, Args)]
struct ChaosCheckArgs {
    /// The history.jsonl file.
    history: PathBuf,
    /// How long after an acknowledged write a read may still return an
    /// older version, ms.
    #[arg(long, default_value_t = 3000)]
    staleness_bound_ms: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Multiplies every emulated delay (0.1 = ten times faster, for quick looks).
    #[arg(long, env = "LOADGEN_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Setups to run, in order (comma-separated): untiered, direct,
    /// direct+regional, tiered.
    #[arg(
        long,
        env = "LOADGEN_SETUPS",
        value_delimiter = ',',
        default_value = "untiered,direct,direct+regional,tiered"
    )]
    setups: Vec<String>,
    /// Directory for the stacks' data (a temporary directory inside it is
    /// used and removed); the system temp dir by default.
    #[arg(long, env = "LOADGEN_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Exit with status 2 if a check fails: the tiered setup against the
    /// untiered one, and (with cloudflare-2024) the tiered setup's
    /// write-to-visible lag.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// An edge's base URL, e.g. http://127.0.0.1:8787; repeat to spread load
    /// over several edges.
    #[arg(
        long = "target",
        env = "LOADGEN_TARGET",
        value_delimiter = ',',
        required = true
    )]
    targets: Vec<String>,
    /// Do not write the keyspace before the run (the keys are already there).
    #[arg(long)]
    no_preload: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// A built-in profile (cloudflare-2024) or a profile TOML file; it sets
    /// the delays, the topology and the default workload.
    #[arg(long, env = "LOADGEN_PROFILE", default_value = "cloudflare-2024")]
    profile: String,
    /// The profile's short workload (smaller keyspace, a few seconds per setup).
    #[arg(long, env = "LOADGEN_QUICK")]
    quick: bool,
    /// Keyspace size.
    #[arg(long, env = "LOADGEN_KEYS")]
    keys: Option<u32>,
    /// Target requests per second, all edges together.
    #[arg(long, env = "LOADGEN_RATE")]
    rate: Option<f64>,
    /// Warm-up before measuring, seconds.
    #[arg(long, env = "LOADGEN_WARMUP")]
    warmup: Option<f64>,
    /// Measured time, seconds.
    #[arg(long, env = "LOADGEN_DURATION")]
    duration: Option<f64>,
    /// Seeds keys, sizes, arrivals and delays: one seed, one run.
    #[arg(long, env = "LOADGEN_SEED")]
    seed: Option<u64>,
    /// Share of requests that are reads (the rest are writes).
    #[arg(long, env = "LOADGEN_READ_SHARE")]
    read_share: Option<f64>,
    /// Zipf exponent; by default solved from the profile's head share.
    #[arg(long, env = "LOADGEN_ZIPF")]
    zipf: Option<f64>,
    /// Arrival process: poisson or uniform.
    #[arg(long, env = "LOADGEN_ARRIVALS", value_parser = parse_arrivals)]
    arrivals: Option<Arrivals>,
    /// Most requests in flight at once.
    #[arg(long, env = "LOADGEN_MAX_IN_FLIGHT", default_value_t = 1024)]
    max_in_flight: usize,
    /// Write the results as JSON here.
    #[arg(long, env = "LOADGEN_JSON")]
    json: Option<PathBuf>,
    /// Write the latency curves as CSV here.
    #[arg(long, env = "LOADGEN_CSV")]
    csv: Option<PathBuf>,
    /// Plot the latency curves here (.svg or .png); the write-to-visible
    /// lag curves go next to it, with -visibility added to the name.
    #[arg(long, env = "LOADGEN_PLOT")]
    plot: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// After each write, poll every other edge this often (ms) until it
    /// serves the new version (polls back off to 5% of the time waited).
    #[arg(long, env = "LOADGEN_LAG_POLL_MS", default_value_t = 1.0)]
    lag_poll_ms: f64,
    /// Longest wait for a write to show on an edge before it counts as a
    /// timeout, seconds; by default twice the cache TTL (the profile's, or
    /// 60 s for run).
    #[arg(long, env = "LOADGEN_LAG_MAX_WAIT_SECS")]
    lag_max_wait_secs: Option<f64>,
    /// Probe writes per second, of a probe key of their own, added when the
    /// workload writes less often than this (0: never).
    #[arg(long, env = "LOADGEN_LAG_PROBE_RATE", default_value_t = 2.0)]
    lag_probe_rate: f64,
    /// Do not measure write-to-visible lag (no polls, no probe writes).
    #[arg(long)]
    no_lag: bool,
}

fn parse_arrivals(s: &str) -> Result<Arrivals, String> {
    match s {
        "poisson" => Ok(Arrivals::Poisson),
        "uniform" => Ok(Arrivals::Uniform),
        other => Err(format!("unknown arrivals {other:?}: poisson or uniform")),
    }
}

impl CommonArgs {
    fn workload(&self, profile: &Profile) -> anyhow::Result<WorkloadConfig> {
        let mut w = if self.quick {
            profile.quick_workload()
        } else {
            profile.workload.clone()
        };
        kv_runtime::config::set(&mut w.keys, self.keys);
        kv_runtime::config::set(&mut w.rate, self.rate);
        kv_runtime::config::set(&mut w.warmup_secs, self.warmup);
        kv_runtime::config::set(&mut w.duration_secs, self.duration);
        kv_runtime::config::set(&mut w.seed, self.seed);
        kv_runtime::config::set(&mut w.read_share, self.read_share);
        kv_runtime::config::set(&mut w.arrivals, self.arrivals);
        if self.zipf.is_some() {
            w.zipf_exponent = self.zipf;
        }
        w.validate().context("workload")?;
        Ok(w)
    }

    fn drive(&self) -> anyhow::Result<DriveOptions> {
        let lag = if self.no_lag {
            None
        } else {
            let poll_interval = std::time::Duration::try_from_secs_f64(self.lag_poll_ms / 1e3)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("--lag-poll-ms must be > 0, not {}", self.lag_poll_ms))?;
            let max_wait = self
                .lag_max_wait_secs
                .map(|secs| {
                    std::time::Duration::try_from_secs_f64(secs)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .with_context(|| format!("--lag-max-wait-secs must be > 0, not {secs}"))
                })
                .transpose()?;
            if !(self.lag_probe_rate.is_finite() && self.lag_probe_rate >= 0.0) {
                anyhow::bail!("--lag-probe-rate must be ≥ 0, not {}", self.lag_probe_rate);
            }
            Some(LagOptions {
                poll_interval,
                max_wait,
                probe_rate: self.lag_probe_rate,
                ..LagOptions::default()
            })
        };
        Ok(DriveOptions {
            max_in_flight: self.max_in_flight.max(1),
            lag,
            ..DriveOptions::default()
        })
    }

    fn progress(&self) -> bool {
        !self.no_progress
    }

    /// Refuses output paths that could only fail after the run.
    fn check_outputs(&self) -> anyhow::Result<()> {
        for path in [&self.json, &self.csv, &self.plot].into_iter().flatten() {
            check_writable(path)?;
        }
        if let Some(plot) = &self.plot {
            let extension = plot
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(extension.as_deref(), Some("svg" | "png")) {
                anyhow::bail!(
                    "--plot {}: the file must end in .svg or .png",
                    plot.display()
                );
            }
        }
        Ok(())
    }

    fn write_outputs(&self, report: &RunReport) -> anyhow::Result<()> {
        print!("{}", report.table());
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(report)?;
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
            println!("\nJSON: {}", path.display());
        }
        if let Some(path) = &self.csv {
            std::fs::write(path, report.csv())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("CSV: {}", path.display());
        }
        if let Some(path) = &self.plot {
            let curves: Vec<Curve> = report
                .setups
                .iter()
                .map(|s| Curve {
                    name: s.name.clone(),
                    points: s.curve.clone(),
                })
                .collect();
            let title = format!(
                "read latency by percentile · {} · time scale {}",
                report.profile, report.time_scale
            );
            write_plot(path, &title, &curves)
                .with_context(|| format!("plotting {}", path.display()))?;
            println!("plot: {}", path.display());
            let lags: Vec<Curve> = report
                .setups
                .iter()
                .filter_map(|s| {
                    s.visibility.as_ref().map(|v| Curve {
                        name: s.name.clone(),
                        points: v.curve.clone(),
                    })
                })
                .collect();
            if lags.iter().any(|c| !c.points.is_empty()) {
                let lag_path = lag_plot_path(path);
                let title = format!(
                    "write-to-visible lag on the other edges by percentile · {} · time scale {}",
                    report.profile, report.time_scale
                );
                write_lag_plot(&lag_path, &title, &lags)
                    .with_context(|| format!("plotting {}", lag_path.display()))?;
                println!("lag plot: {}", lag_path.display());
            }
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Compare(args) => run_compare(args).await,
            Command::Run(args) => run_run(args).await,
            Command::Chaos(args) => run_chaos(*args).await,
            Command::ChaosCheck(args) => run_chaos_check(args),
        }
    })
}

/// Logs to stderr; the stacks under test log warnings only, unless
/// `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&args.common.profile)?;
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!("--time-scale must be > 0, not {}", args.time_scale);
    }
    let workload = args.common.workload(&profile)?;
    let drive = args.common.drive()?;
    args.common.check_outputs()?;
    let setups = args
        .setups
        .iter()
        .map(|name| {
            SetupKind::named(name.trim()).with_context(|| {
                format!(
                    "unknown setup {name:?}: expected untiered, direct, direct+regional or tiered"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = compare(CompareOptions {
        profile: profile.time_scaled(args.time_scale),
        time_scale: args.time_scale,
        workload,
        setups,
        work_dir: args.work_dir.clone(),
        progress: args.common.progress(),
        drive,
    })
    .await?;
    args.common.write_outputs(&report)?;
    if args.check && report.checks().iter().any(|c| !c.passed) {
        std::process::exit(2);
    }
    Ok(())
}

async fn run_run(args: RunArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&args.common.profile)?;
    let workload = args.common.workload(&profile)?;
    let drive = args.common.drive()?;
    args.common.check_outputs()?;
    let report = run_target(TargetOptions {
        targets: args.targets.clone(),
        workload,
        preload: !args.no_preload,
        progress: args.common.progress(),
        drive,
    })
    .await?;
    args.common.write_outputs(&report)
}

/// Refuses an output path whose directory does not exist: it could only
/// fail after the run.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent
        && !dir.is_dir()
    {
        anyhow::bail!(
            "cannot write {}: no directory {}",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

async fn run_chaos(args: ChaosArgs) -> anyhow::Result<()> {
    // The report may go into the run directory.
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(path) = &args.json {
        check_writable(path)?;
    }
    // Ctrl-C drops the campaign, which kills every process it started.
    let campaign = tokio::select! {
        campaign = loadgen::chaos::run(&args) => campaign.context("chaos campaign")?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the stack was stopped"),
    };
    let report = &campaign.report;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON: {}", path.display());
    }
    if campaign.remove_dir {
        if let Err(e) = std::fs::remove_dir_all(&campaign.dir) {
            eprintln!("cannot remove {}: {e}", campaign.dir.display());
        }
    } else {
        println!("run directory kept: {}", campaign.dir.display());
    }
    if !report.passed {
        std::process::exit(2);
    }
    Ok(())
}

fn run_chaos_check(args: ChaosCheckArgs) -> anyhow::Result<()> {
    let report = loadgen::chaos::recheck(
        &args.history,
        std::time::Duration::from_millis(args.staleness_bound_ms),
    )?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.passed {
        std::process::exit(2);
    }
    Ok(())
}
