//! One-way delay of an emulated network path: a fixed propagation delay plus
//! jitter drawn from a configurable distribution, and optional loss.
//!
//! Sampling is separate from the relay that applies it, so the distributions
//! are tested without sockets or clocks.

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, Normal, Pareto};
use serde::{Deserialize, Serialize};

/// How the extra delay on top of the fixed one is distributed. Every kind is
/// capped by `max_ms`, so one outlier cannot stall a link for seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Jitter {
    /// No jitter.
    #[default]
    None,
    /// Uniform in `[0, max_ms]`.
    Uniform {
        /// Upper bound.
        max_ms: f64,
    },
    /// The absolute value of a normal with mean 0 (a half-normal).
    Normal {
        /// Standard deviation of the underlying normal.
        stddev_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Exponential: most datagrams get little, a few get more.
    Exponential {
        /// Mean extra delay.
        mean_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Pareto minus its scale: a heavy tail, as queueing on real paths has.
    Pareto {
        /// The Pareto scale; the extra delay is `sample - scale_ms`.
        scale_ms: f64,
        /// The tail index; smaller is heavier.
        shape: f64,
        /// Upper bound.
        max_ms: f64,
    },
}

/// Why a delay setting is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DelayError(String);

/// One direction of an emulated path.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathDelay {
    /// Fixed one-way delay, ms.
    pub delay_ms: f64,
    /// Extra delay per datagram.
    pub jitter: Jitter,
    /// Share of datagrams dropped, 0 to 1.
    pub loss: f64,
}

impl PathDelay {
    /// A fixed delay with no jitter or loss.
    pub fn fixed(delay: Duration) -> Self {
        Self {
            delay_ms: delay.as_secs_f64() * 1e3,
            ..Self::default()
        }
    }

    /// Checks that every figure is finite and in range.
    pub fn validate(&self) -> Result<(), DelayError> {
        let bad = |m: String| Err(DelayError(m));
        let non_negative = |name: &str, v: f64| -> Result<(), DelayError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(DelayError(format!(
                    "{name} must be a finite number ≥ 0, not {v}"
                )))
            }
        };
        non_negative("delay_ms", self.delay_ms)?;
        if !(0.0..=1.0).contains(&self.loss) {
            return bad(format!("loss must be between 0 and 1, not {}", self.loss));
        }
        match self.jitter {
            Jitter::None => Ok(()),
            Jitter::Uniform { max_ms } => non_negative("jitter max_ms", max_ms),
            Jitter::Normal { stddev_ms, max_ms } => {
                non_negative("jitter stddev_ms", stddev_ms)?;
                non_negative("jitter max_ms", max_ms)
            }
            Jitter::Exponential { mean_ms, max_ms } => {
                non_negative("jitter max_ms", max_ms)?;
                if mean_ms.is_finite() && mean_ms > 0.0 {
                    Ok(())
                } else {
                    bad(format!("jitter mean_ms must be > 0, not {mean_ms}"))
                }
            }
            Jitter::Pareto {
                scale_ms,
                shape,
                max_ms,
            } => {
                non_negative("jitter max_ms", max_ms)?;
                if scale_ms > 0.0 && shape > 0.0 && scale_ms.is_finite() && shape.is_finite() {
                    Ok(())
                } else {
                    bad("jitter scale_ms and shape must be > 0".into())
                }
            }
        }
    }

    /// The same path with every delay multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        let jitter = match self.jitter {
            Jitter::None => Jitter::None,
            Jitter::Uniform { max_ms } => Jitter::Uniform {
                max_ms: max_ms * factor,
            },
            Jitter::Normal { stddev_ms, max_ms } => Jitter::Normal {
                stddev_ms: stddev_ms * factor,
                max_ms: max_ms * factor,
            },
            Jitter::Exponential { mean_ms, max_ms } => Jitter::Exponential {
                mean_ms: mean_ms * factor,
                max_ms: max_ms * factor,
            },
            Jitter::Pareto {
                scale_ms,
                shape,
                max_ms,
            } => Jitter::Pareto {
                scale_ms: scale_ms * factor,
                shape,
                max_ms: max_ms * factor,
            },
        };
        Self {
            delay_ms: self.delay_ms * factor,
            jitter,
            loss: self.loss,
        }
    }

    /// The largest delay a datagram can get.
    pub fn max_delay(&self) -> Duration {
        let jitter = match self.jitter {
            Jitter::None => 0.0,
            Jitter::Uniform { max_ms }
            | Jitter::Normal { max_ms, .. }
            | Jitter::Exponential { max_ms, .. }
            | Jitter::Pareto { max_ms, .. } => max_ms,
        };
        millis(self.delay_ms + jitter)
    }

    /// Draws one datagram's fate: `None` if it is lost, else its delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Option<Duration> {
        if self.loss > 0.0 && rng.random::<f64>() < self.loss {
            return None;
        }
        let extra = match self.jitter {
            Jitter::None => 0.0,
            Jitter::Uniform { max_ms } => rng.random::<f64>() * max_ms,
            Jitter::Normal { stddev_ms, max_ms } => Normal::new(0.0, stddev_ms)
                .map(|d| d.sample(rng).abs())
                .unwrap_or(0.0)
                .min(max_ms),
            Jitter::Exponential { mean_ms, max_ms } => Exp::new(1.0 / mean_ms)
                .map(|d| d.sample(rng))
                .unwrap_or(0.0)
                .min(max_ms),
            Jitter::Pareto {
                scale_ms,
                shape,
                max_ms,
            } => Pareto::new(scale_ms, shape)
                .map(|d| d.sample(rng) - scale_ms)
                .unwrap_or(0.0)
                .min(max_ms),
        };
        Some(millis(self.delay_ms + extra.max(0.0)))
    }
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn draws(path: &PathDelay, n: usize) -> Vec<Option<Duration>> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..n).map(|_| path.sample(&mut rng)).collect()
    }

    #[test]
    fn every_jitter_kind_stays_within_its_bounds() {
        let kinds = [
            Jitter::None,
            Jitter::Uniform { max_ms: 2.0 },
            Jitter::Normal {
                stddev_ms: 1.0,
                max_ms: 2.0,
            },
            Jitter::Exponential {
                mean_ms: 0.5,
                max_ms: 2.0,
            },
            Jitter::Pareto {
                scale_ms: 0.2,
                shape: 1.5,
                max_ms: 2.0,
            },
        ];
        for jitter in kinds {
            let path = PathDelay {
                delay_ms: 10.0,
                jitter,
                loss: 0.0,
            };
            path.validate().expect("a valid path");
            let samples: Vec<Duration> = draws(&path, 5_000).into_iter().flatten().collect();
            assert_eq!(samples.len(), 5_000, "{jitter:?} lost datagrams");
            let (min, max) = (
                samples.iter().min().copied().unwrap_or_default(),
                samples.iter().max().copied().unwrap_or_default(),
            );
            assert!(min >= Duration::from_millis(10), "{jitter:?}: {min:?}");
            assert!(max <= path.max_delay(), "{jitter:?}: {max:?}");
            if jitter != Jitter::None {
                assert!(max > min, "{jitter:?} added no jitter at all");
            }
        }
    }

    #[test]
    fn exponential_jitter_has_its_mean() {
        let path = PathDelay {
            delay_ms: 0.0,
            jitter: Jitter::Exponential {
                mean_ms: 1.0,
                max_ms: 100.0,
            },
            loss: 0.0,
        };
        let samples = draws(&path, 20_000);
        let mean_ms = samples
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64() * 1e3)
            .sum::<f64>()
            / samples.len() as f64;
        assert!((0.95..1.05).contains(&mean_ms), "mean {mean_ms} ms");
    }

    #[test]
    fn loss_drops_its_share() {
        let lossy = |loss| PathDelay {
            loss,
            ..PathDelay::default()
        };
        let lost = |loss| {
            draws(&lossy(loss), 10_000)
                .iter()
                .filter(|d| d.is_none())
                .count()
        };
        assert_eq!(lost(0.0), 0);
        assert_eq!(lost(1.0), 10_000);
        let some = lost(0.1);
        assert!((900..1_100).contains(&some), "{some} of 10000 lost at 10%");
    }

    #[test]
    fn scaling_shrinks_every_delay_but_not_loss() {
        let path = PathDelay {
            delay_ms: 30.0,
            jitter: Jitter::Pareto {
                scale_ms: 1.0,
                shape: 2.0,
                max_ms: 10.0,
            },
            loss: 0.01,
        };
        let scaled = path.scaled(0.1);
        assert_eq!(scaled.max_delay(), Duration::from_secs_f64(0.004));
        assert_eq!(scaled.loss, 0.01);
        assert_eq!(
            scaled.jitter,
            Jitter::Pareto {
                scale_ms: 0.1,
                shape: 2.0,
                max_ms: 1.0
            }
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for path in [
            PathDelay {
                delay_ms: -1.0,
                ..PathDelay::default()
            },
            PathDelay {
                delay_ms: f64::NAN,
                ..PathDelay::default()
            },
            PathDelay {
                loss: 1.5,
                ..PathDelay::default()
            },
            PathDelay {
                jitter: Jitter::Exponential {
                    mean_ms: 0.0,
                    max_ms: 1.0,
                },
                ..PathDelay::default()
            },
            PathDelay {
                jitter: Jitter::Pareto {
                    scale_ms: 1.0,
                    shape: 0.0,
                    max_ms: 1.0,
                },
                ..PathDelay::default()
            },
        ] {
            assert!(path.validate().is_err(), "{path:?} was accepted");
        }
    }
}
