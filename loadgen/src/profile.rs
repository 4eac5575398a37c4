//! A profile: every emulated delay, the shape of each setup, and the default
//! workload, read from TOML. `cloudflare-2024` is built in; any other profile
//! is a file with the same shape.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::delay::PathDelay;
use crate::workload::WorkloadConfig;

/// The built-in profile's text.
pub const CLOUDFLARE_2024: &str = include_str!("../profiles/cloudflare-2024.toml");

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown fields.
    #[error("profile {name}: {message}")]
    Parse {
        /// The profile's name or path.
        name: String,
        /// The parser's message.
        message: String,
    },
    /// A figure is out of range.
    #[error("profile {name}: {message}")]
    Invalid {
        /// The profile's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Everything a profile sets.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Shown in reports.
    pub name: String,
    /// One line on where the figures come from.
    #[serde(default)]
    pub description: String,
    /// Emulated wide-area paths.
    pub network: Network,
    /// The front-line proxy of the untiered path.
    pub front_line: FrontLine,
    /// Central storage's latency.
    pub store: StoreDelays,
    /// How many nodes each setup runs, and their cache sizes.
    #[serde(default)]
    pub topology: Topology,
    /// The default workload.
    #[serde(default)]
    pub workload: WorkloadConfig,
    /// What `--quick` changes in the workload.
    #[serde(default)]
    pub quick: Quick,
}

/// The emulated paths between tiers, one way each.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Edge to its region's regional nodes.
    pub edge_regional: PathDelay,
    /// Edges and regional nodes to central storage.
    pub to_origin: PathDelay,
}

/// The front-line proxy hop.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FrontLine {
    /// Time one request spends in the proxy, per pass, ms.
    pub proxy_ms: f64,
}

/// Central storage's latency, applied with `object_store`'s `ThrottledStore`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreDelays {
    /// Time to first byte of a GET, ms.
    pub get_ms: f64,
    /// Transfer rate of a GET's body, MiB/s; 0 means unlimited.
    pub get_mib_per_sec: f64,
    /// Time of a PUT, ms.
    pub put_ms: f64,
    /// Time of a DELETE, ms.
    pub delete_ms: f64,
    /// Time of a LIST call, ms.
    pub list_ms: f64,
}

/// The nodes of each setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Edges; requests are spread across them evenly at random.
    pub edges: usize,
    /// Regional nodes, in setups that have the tier.
    pub regionals: usize,
    /// The hot cache's capacity per edge, in the setup that has it, MiB.
    pub hot_cache_mib: u64,
    /// Largest value the hot cache admits, KiB.
    pub hot_max_value_kib: usize,
    /// Each regional node's memory tier, MiB.
    pub regional_memory_mib: usize,
    /// Each regional node's disk tier, MiB (at least 64).
    pub regional_disk_mib: usize,
    /// How long edges and regional nodes keep a value, seconds (the nodes'
    /// `cache_ttl_secs`). Without a change feed, a write can take this long
    /// to show; loadgen waits at most twice this for a write to show.
    pub cache_ttl_secs: u64,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            edges: 12,
            regionals: 2,
            hot_cache_mib: 64,
            hot_max_value_kib: 100,
            regional_memory_mib: 32,
            regional_disk_mib: 512,
            cache_ttl_secs: 60,
        }
    }
}

/// The short version of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quick {
    /// Keyspace size.
    pub keys: u32,
    /// Requests per second.
    pub rate: f64,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Measured time, seconds.
    pub duration_secs: f64,
}

impl Default for Quick {
    fn default() -> Self {
        Self {
            keys: 5_000,
            rate: 400.0,
            warmup_secs: 3.0,
            duration_secs: 6.0,
        }
    }
}

impl Profile {
    /// The built-in profile called `name`, or the TOML file at `name`.
    pub fn load(name: &str) -> Result<Self, ProfileError> {
        let text = if name == "cloudflare-2024" {
            CLOUDFLARE_2024.to_owned()
        } else {
            std::fs::read_to_string(Path::new(name)).map_err(|source| ProfileError::Read {
                path: name.into(),
                source,
            })?
        };
        Self::parse(name, &text)
    }

    /// Parses and checks a profile's text.
    pub fn parse(name: &str, text: &str) -> Result<Self, ProfileError> {
        let profile: Self = toml::from_str(text).map_err(|e| ProfileError::Parse {
            name: name.into(),
            message: e.to_string(),
        })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every figure.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let invalid = |message: String| ProfileError::Invalid {
            name: self.name.clone(),
            message,
        };
        for (what, path) in [
            ("network.edge_regional", &self.network.edge_regional),
            ("network.to_origin", &self.network.to_origin),
        ] {
            path.validate()
                .map_err(|e| invalid(format!("{what}: {e}")))?;
        }
        let store = &self.store;
        for (what, ms) in [
            ("front_line.proxy_ms", self.front_line.proxy_ms),
            ("store.get_ms", store.get_ms),
            ("store.get_mib_per_sec", store.get_mib_per_sec),
            ("store.put_ms", store.put_ms),
            ("store.delete_ms", store.delete_ms),
            ("store.list_ms", store.list_ms),
        ] {
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(invalid(format!("{what} must be a number ≥ 0, not {ms}")));
            }
        }
        let topology = &self.topology;
        if topology.edges == 0 || topology.regionals == 0 {
            return Err(invalid(
                "topology.edges and topology.regionals must be at least 1".into(),
            ));
        }
        if topology.cache_ttl_secs == 0 {
            return Err(invalid("topology.cache_ttl_secs must be at least 1".into()));
        }
        if topology.regional_disk_mib < 64 || topology.regional_memory_mib == 0 {
            return Err(invalid(
                "topology.regional_disk_mib must be at least 64 and regional_memory_mib at least 1"
                    .into(),
            ));
        }
        self.workload
            .validate()
            .map_err(|e| invalid(format!("workload: {e}")))?;
        self.quick_workload()
            .validate()
            .map_err(|e| invalid(format!("quick: {e}")))?;
        Ok(())
    }

    /// The workload `--quick` runs.
    pub fn quick_workload(&self) -> WorkloadConfig {
        WorkloadConfig {
            keys: self.quick.keys,
            rate: self.quick.rate,
            warmup_secs: self.quick.warmup_secs,
            duration_secs: self.quick.duration_secs,
            ..self.workload.clone()
        }
    }

    /// The same profile with every delay multiplied by `factor`.
    pub fn time_scaled(&self, factor: f64) -> Self {
        let mut scaled = self.clone();
        scaled.network.edge_regional = self.network.edge_regional.scaled(factor);
        scaled.network.to_origin = self.network.to_origin.scaled(factor);
        scaled.front_line.proxy_ms *= factor;
        let store = &mut scaled.store;
        store.get_ms *= factor;
        store.put_ms *= factor;
        store.delete_ms *= factor;
        store.list_ms *= factor;
        // A transfer takes `factor` times as long at `1 / factor` times the rate.
        if factor > 0.0 {
            store.get_mib_per_sec /= factor;
        }
        scaled
    }

    /// The front-line proxy's hold time.
    pub fn front_line_delay(&self) -> Duration {
        ms(self.front_line.proxy_ms)
    }

    /// The fixed one-way delay from the origin to an edge through the
    /// regional tier (the change feed's path in the tiered setup), ms.
    pub fn origin_to_edge_ms(&self) -> f64 {
        self.network.to_origin.delay_ms + self.network.edge_regional.delay_ms
    }

    /// The nodes' cache TTL.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.topology.cache_ttl_secs)
    }
}

impl StoreDelays {
    /// The throttle these delays describe.
    pub fn throttle(&self) -> object_store::throttle::ThrottleConfig {
        let per_byte = if self.get_mib_per_sec > 0.0 {
            Duration::from_secs_f64(1.0 / (self.get_mib_per_sec * 1024.0 * 1024.0))
        } else {
            Duration::ZERO
        };
        object_store::throttle::ThrottleConfig {
            wait_get_per_call: ms(self.get_ms),
            wait_get_per_byte: per_byte,
            wait_put_per_call: ms(self.put_ms),
            wait_delete_per_call: ms(self.delete_ms),
            wait_list_per_call: ms(self.list_ms),
            wait_list_with_delimiter_per_call: ms(self.list_ms),
            ..Default::default()
        }
    }
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0) / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_profile_loads_and_checks() {
        let profile = Profile::load("cloudflare-2024").expect("the built-in profile");
        assert_eq!(profile.name, "cloudflare-2024");
        assert_eq!(profile.front_line_delay(), Duration::from_millis(10));
        assert!(profile.network.to_origin.delay_ms > profile.network.edge_regional.delay_ms);
        assert_eq!(profile.origin_to_edge_ms(), 37.0);
        assert_eq!(profile.cache_ttl(), Duration::from_secs(60));
        assert_eq!(profile.time_scaled(0.1).cache_ttl(), profile.cache_ttl());
    }

    #[test]
    fn time_scale_shrinks_every_delay() {
        let profile = Profile::load("cloudflare-2024").expect("the built-in profile");
        let scaled = profile.time_scaled(0.1);
        assert_eq!(scaled.front_line_delay(), Duration::from_millis(1));
        assert!(
            (scaled.network.to_origin.delay_ms - profile.network.to_origin.delay_ms / 10.0).abs()
                < 1e-9
        );
        let (full, tenth) = (profile.store.throttle(), scaled.store.throttle());
        assert_eq!(tenth.wait_get_per_call, full.wait_get_per_call / 10);
        // Transfers take a tenth of the time: ten times the rate.
        assert!((scaled.store.get_mib_per_sec - profile.store.get_mib_per_sec * 10.0).abs() < 1e-9);
        assert_eq!(scaled.workload, profile.workload, "only delays change");
    }

    #[test]
    fn unknown_fields_and_bad_figures_are_refused() {
        let good = CLOUDFLARE_2024;
        let unknown = format!("{good}\n[surprise]\nx = 1\n");
        assert!(matches!(
            Profile::parse("t", &unknown),
            Err(ProfileError::Parse { .. })
        ));
        let negative = good.replacen("proxy_ms = 10.0", "proxy_ms = -1.0", 1);
        assert_ne!(negative, good, "the profile sets proxy_ms = 10.0");
        assert!(matches!(
            Profile::parse("t", &negative),
            Err(ProfileError::Invalid { .. })
        ));
        assert!(matches!(
            Profile::load("/nonexistent/profile.toml"),
            Err(ProfileError::Read { .. })
        ));
    }
}
