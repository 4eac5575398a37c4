//! The fault schedule: every few seconds (randomised, seeded) one process is
//! SIGKILLed and started again after a short pause, and now and then a link
//! is cut or slowed for a while. Kills go to the tier killed least so far,
//! so every tier gets its share.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

use super::ChaosError;
use super::cluster::{Cluster, Tier};
use super::history::Recorder;

/// What the schedule does.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Time between faults, ms.
    pub interval_ms: RangeInclusive<u64>,
    /// How long a killed process stays down, ms.
    pub down_ms: RangeInclusive<u64>,
    /// Kill processes.
    pub kills: bool,
    /// Chance that a tick also cuts or slows a link, 0 to 1.
    pub link_share: f64,
    /// How long a link fault lasts, ms.
    pub link_fault_ms: RangeInclusive<u64>,
    /// The delay a slowed link adds, each way, ms.
    pub link_delay_ms: u64,
    /// Seeds the schedule.
    pub seed: u64,
    /// `RUST_LOG` of restarted processes.
    pub log_filter: String,
}

/// One thing the schedule did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    /// When, µs since the campaign began.
    pub at_us: u64,
    /// `kill`, `restart`, `cut`, `delay`, `isolate`, `crashed`.
    pub kind: &'static str,
    /// The process or link.
    pub target: String,
}

impl FaultEvent {
    /// One line for the report.
    pub fn line(&self) -> String {
        format!(
            "[{:>9.3}s] {:<8} {}",
            self.at_us as f64 / 1e6,
            self.kind,
            self.target
        )
    }
}

/// What the schedule did, in total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultStats {
    /// SIGKILLs per tier.
    pub kills: BTreeMap<Tier, u64>,
    /// Links cut.
    pub link_cuts: u64,
    /// Links slowed.
    pub link_delays: u64,
    /// Times a process was cut off from every node it dials.
    pub isolations: u64,
    /// Processes that exited without being killed (then restarted).
    pub crashes: Vec<String>,
    /// Everything, in order.
    pub events: Vec<FaultEvent>,
}

struct Schedule {
    cluster: Arc<Mutex<Cluster>>,
    config: FaultConfig,
    recorder: Arc<Recorder>,
    rng: StdRng,
    stats: FaultStats,
    heals: JoinSet<()>,
}

/// Runs the schedule until `stop` turns true; answers what it did. Killed
/// processes are restarted before it returns, unless an error stops it.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    config: FaultConfig,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) -> Result<FaultStats, ChaosError> {
    let rng = StdRng::seed_from_u64(config.seed);
    let mut schedule = Schedule {
        cluster,
        config,
        recorder,
        rng,
        stats: FaultStats::default(),
        heals: JoinSet::new(),
    };
    for tier in Tier::ALL {
        schedule.stats.kills.insert(tier, 0);
    }
    loop {
        let wait = schedule
            .rng
            .random_range(schedule.config.interval_ms.clone());
        if sleep_or_stop(&mut stop, Duration::from_millis(wait)).await {
            break;
        }
        schedule.restart_crashed().await?;
        if schedule.config.link_share > 0.0
            && schedule.rng.random::<f64>() < schedule.config.link_share
        {
            schedule.link_fault().await;
        }
        if schedule.config.kills {
            schedule.kill_one(&mut stop).await?;
        }
    }
    schedule.heals.abort_all();
    Ok(schedule.stats)
}

/// Sleeps `wait`, or less if `stop` turns true; answers whether it did.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

impl Schedule {
    fn event(&mut self, kind: &'static str, target: String) {
        let event = FaultEvent {
            at_us: self.recorder.now_us(),
            kind,
            target,
        };
        tracing::info!("chaos: {}", event.line());
        self.stats.events.push(event);
    }

    /// Restarts processes that died on their own, and notes them.
    async fn restart_crashed(&mut self) -> Result<(), ChaosError> {
        let mut cluster = self.cluster.lock().await;
        let crashed = cluster.exited();
        for (name, status) in crashed {
            let index = cluster
                .procs()
                .into_iter()
                .find(|p| p.name == name)
                .map(|p| p.index);
            if let Some(index) = index {
                cluster.restart(index, &self.config.log_filter)?;
            }
            note_event(
                &mut self.stats,
                &self.recorder,
                "crashed",
                format!("{name} ({status})"),
            );
            self.stats.crashes.push(format!("{name}: {status}"));
        }
        Ok(())
    }

    /// Kills a process of the tier killed least so far, waits, restarts it.
    async fn kill_one(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), ChaosError> {
        let fewest = self.stats.kills.values().copied().min().unwrap_or(0);
        let tiers: Vec<Tier> = Tier::ALL
            .into_iter()
            .filter(|t| self.stats.kills.get(t).copied().unwrap_or(0) == fewest)
            .collect();
        let Some(&tier) = tiers.choose(&mut self.rng) else {
            return Ok(());
        };
        let victim = {
            let cluster = self.cluster.lock().await;
            let candidates: Vec<_> = cluster
                .procs()
                .into_iter()
                .filter(|p| p.tier == tier)
                .collect();
            candidates.choose(&mut self.rng).cloned()
        };
        let Some(victim) = victim else {
            return Ok(());
        };
        self.cluster.lock().await.kill(victim.index).await?;
        *self.stats.kills.entry(tier).or_default() += 1;
        self.event("kill", victim.name.clone());
        let down = self.rng.random_range(self.config.down_ms.clone());
        // Stopping early still restarts it: quiescence starts from all up.
        let _ = sleep_or_stop(stop, Duration::from_millis(down)).await;
        self.cluster
            .lock()
            .await
            .restart(victim.index, &self.config.log_filter)?;
        self.event("restart", victim.name);
        Ok(())
    }

    /// For a while: cuts or slows a random link, or (one time in three)
    /// cuts an edge or regional node off from every node it dials.
    async fn link_fault(&mut self) {
        let lasts = Duration::from_millis(self.rng.random_range(self.config.link_fault_ms.clone()));
        let isolate = self.rng.random_range(0..3) == 0;
        let (what, controls) = {
            let cluster = self.cluster.lock().await;
            if isolate {
                let dialers: Vec<_> = cluster
                    .procs()
                    .into_iter()
                    .filter(|p| p.tier != Tier::Origin)
                    .collect();
                let Some(victim) = dialers.choose(&mut self.rng) else {
                    return;
                };
                let prefix = format!("{}→", victim.name);
                let controls: Vec<_> = cluster
                    .links()
                    .iter()
                    .filter(|l| l.name.starts_with(&prefix))
                    .map(|l| l.control().clone())
                    .collect();
                (victim.name.clone(), controls)
            } else {
                let Some(link) = cluster.links().choose(&mut self.rng) else {
                    return;
                };
                (link.name.clone(), vec![link.control().clone()])
            }
        };
        if controls
            .iter()
            .any(|c| c.is_cut() || !c.extra_delay().is_zero())
        {
            return;
        }
        if isolate {
            for control in &controls {
                control.set_cut(true);
            }
            self.stats.isolations += 1;
            self.event(
                "isolate",
                format!("{what} (all its links) for {:.1}s", lasts.as_secs_f64()),
            );
        } else if self.rng.random::<bool>() {
            controls.iter().for_each(|c| c.set_cut(true));
            self.stats.link_cuts += 1;
            self.event("cut", format!("{what} for {:.1}s", lasts.as_secs_f64()));
        } else {
            let extra = Duration::from_millis(self.config.link_delay_ms);
            controls.iter().for_each(|c| c.set_extra_delay(extra));
            self.stats.link_delays += 1;
            self.event(
                "delay",
                format!(
                    "{what} +{}ms for {:.1}s",
                    self.config.link_delay_ms,
                    lasts.as_secs_f64()
                ),
            );
        }
        self.heals.spawn(async move {
            tokio::time::sleep(lasts).await;
            for control in controls {
                control.clear();
            }
        });
    }
}

fn note_event(stats: &mut FaultStats, recorder: &Recorder, kind: &'static str, target: String) {
    let event = FaultEvent {
        at_us: recorder.now_us(),
        kind,
        target,
    };
    tracing::warn!("chaos: {}", event.line());
    stats.events.push(event);
}
