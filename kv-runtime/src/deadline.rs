//! Deadlines: how long a request may still take, counted on this process's
//! monotonic clock.
//!
//! A request carries its budget as the time remaining when it was sent
//! ([`kv_proto::Request::budget`]), so no two tiers need synchronized clocks.
//! Each tier turns the budget into a [`Deadline`] when the request arrives,
//! spends at most what is left, and passes on less than that
//! ([`Deadline::upstream_budget`]): the margin pays for the way back, so a
//! tier always answers before its caller stops waiting.

use std::time::{Duration, Instant};

/// The longest budget a tier honours: a caller asking for more gets this
/// (a write of the largest value needs far less), so that no request can
/// hold a tier's resources for days.
pub const MAX_ACCEPTED_BUDGET: Duration = Duration::from_secs(300);

/// The least a tier keeps back for the way back, whatever the budget.
const MIN_MARGIN: Duration = Duration::from_millis(2);
/// The share of the remaining time a tier keeps back for the way back.
const MARGIN_DIVISOR: u32 = 20;

/// A point in time after which the caller no longer waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

/// The deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline passed")]
pub struct Expired;

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Self {
            at: now
                .checked_add(budget)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        }
    }

    /// The deadline of a request that arrived just now: its budget, at most
    /// [`MAX_ACCEPTED_BUDGET`].
    pub fn of(request: &kv_proto::Request) -> Self {
        Self::after(request.budget.min(MAX_ACCEPTED_BUDGET))
    }

    /// The instant it falls at.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The budget to give a request sent upstream now: what is left, less a
    /// margin (a twentieth, and at least 2 ms) for the answer's way back.
    pub fn upstream_budget(&self) -> Duration {
        let left = self.remaining();
        left.saturating_sub((left / MARGIN_DIVISOR).max(MIN_MARGIN))
    }

    /// This deadline, or `limit` from now if that comes first.
    pub fn capped(self, limit: Duration) -> Self {
        self.min(Self::after(limit))
    }

    /// The deadline to wait for upstream when a stale copy could stand in:
    /// a tenth of what is left (at least 10 ms) earlier, so that the copy is
    /// served before this deadline if the upstream is slow.
    pub fn keeping_back_for_a_stand_in(&self) -> Self {
        let left = self.remaining();
        Self::after(left.saturating_sub((left / 10).max(Duration::from_millis(10))))
    }

    /// Runs `work` until it finishes or the deadline passes.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, Expired> {
        tokio::time::timeout_at(self.at.into(), work)
            .await
            .map_err(|_| Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_budgets_shrink_at_every_hop_and_never_exceed_what_is_left() {
        let deadline = Deadline::after(Duration::from_secs(2));
        let first = deadline.upstream_budget();
        assert!(first < Duration::from_secs(2) && first >= Duration::from_millis(1_800));
        let second = Deadline::after(first).upstream_budget();
        assert!(second < first);
        assert_eq!(
            Deadline::after(Duration::from_millis(1)).upstream_budget(),
            Duration::ZERO
        );
    }

    #[test]
    fn a_request_asking_for_days_gets_the_longest_accepted_budget() {
        let op = kv_proto::Op::List(kv_proto::ListRequest::new(
            kv_proto::Namespace::new("ns").expect("a valid namespace"),
            "",
        ));
        let greedy = kv_proto::Request::new(op).with_budget(kv_proto::Request::MAX_BUDGET);
        assert!(Deadline::of(&greedy).remaining() <= MAX_ACCEPTED_BUDGET);
    }

    #[test]
    fn a_zero_budget_is_already_expired() {
        assert!(Deadline::after(Duration::ZERO).is_expired());
        assert!(!Deadline::after(Duration::from_secs(60)).is_expired());
    }

    #[test]
    fn capping_takes_the_earlier_deadline() {
        let long = Deadline::after(Duration::from_secs(60));
        assert!(long.capped(Duration::from_secs(1)).remaining() <= Duration::from_secs(1));
        let short = Deadline::after(Duration::from_millis(10));
        assert!(short.capped(Duration::from_secs(60)).remaining() <= Duration::from_millis(10));
    }

    #[tokio::test]
    async fn run_stops_work_at_the_deadline() {
        let deadline = Deadline::after(Duration::from_millis(5));
        let never = std::future::pending::<()>();
        assert_eq!(deadline.run(never).await, Err(Expired));
        let fresh = Deadline::after(Duration::from_secs(60));
        assert_eq!(fresh.run(async { 7 }).await, Ok(7));
    }
}
