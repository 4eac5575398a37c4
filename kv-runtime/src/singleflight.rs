//! Concurrent calls for one key share one execution.
//!
//! The first caller for a key (the leader) starts the work on its own task;
//! callers that arrive while it runs wait for the same result. Running the
//! work on a task means a leader that gives up (a client hung up, or its
//! deadline passed) does not cancel the work under the followers. Once
//! *every* caller has given up, nobody waits for the result, and the work is
//! cancelled. The key is forgotten as soon as the work finishes, so later
//! callers start afresh and see fresh data.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

type Flight<V> = Shared<BoxFuture<'static, Result<V, FlightFailed>>>;
/// A flight and its number, so a finished flight removes only itself. The
/// table holds it weakly: only callers keep a flight alive.
type Entry<V> = (u64, WeakShared<BoxFuture<'static, Result<V, FlightFailed>>>);

/// The shared work panicked or was aborted; every waiter gets this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared fetch failed to complete")]
pub struct FlightFailed;

/// Whether a call did the work or waited on another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This call started the work.
    Leader,
    /// This call waited on work another call started.
    Follower,
}

/// A table of in-flight work, by key. Clones share the table.
#[derive(Debug)]
pub struct SingleFlight<K, V> {
    flights: Arc<Mutex<HashMap<K, Entry<V>>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl<K, V> Clone for SingleFlight<K, V> {
    fn clone(&self) -> Self {
        Self {
            flights: self.flights.clone(),
            next_id: self.next_id.clone(),
        }
    }
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            flights: Arc::new(Mutex::new(HashMap::new())),
            next_id: Default::default(),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A new, empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` for `key`, unless work for `key` is already in flight, in
    /// which case waits for that instead. `work` is only called by a leader.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> (Result<V, FlightFailed>, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (flight, role) = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&key).and_then(|(_, flight)| flight.upgrade()) {
                Some(flight) => (flight, Role::Follower),
                None => {
                    let id = self
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let flight = self.start(key.clone(), id, work());
                    if let Some(weak) = flight.downgrade() {
                        flights.insert(key, (id, weak));
                    }
                    (flight, Role::Leader)
                }
            }
        };
        (flight.await, role)
    }

    /// Whether work for `key` is in flight (and can still be joined).
    pub fn is_in_flight(&self, key: &K) -> bool {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_some_and(|(_, flight)| flight.upgrade().is_some())
    }

    /// Detaches the work in flight for `key`, if any: callers already waiting
    /// keep waiting for it, but the next caller starts afresh. A write calls
    /// this once it is durable, so no read that starts later returns what the
    /// store held before it.
    pub fn forget(&self, key: &K) {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Number of keys with work in flight.
    pub fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn start<Fut>(&self, key: K, id: u64, work: Fut) -> Flight<V>
    where
        Fut: Future<Output = V> + Send + 'static,
    {
        let forget = Forget {
            flights: Arc::downgrade(&self.flights),
            key,
            id,
        };
        let task = AbortOnDrop(tokio::spawn(async move {
            // Dropped when the work ends, even by panicking or being cancelled.
            let _forget = forget;
            work.await
        }));
        async move {
            let mut task = task;
            (&mut task.0).await.map_err(|_| FlightFailed)
        }
        .boxed()
        .shared()
    }
}

/// Cancels the task when the last caller waiting on it is gone.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes a key from the table when dropped.
struct Forget<K: Hash + Eq, V> {
    flights: std::sync::Weak<Mutex<HashMap<K, Entry<V>>>>,
    key: K,
    id: u64,
}

impl<K: Hash + Eq, V> Drop for Forget<K, V> {
    fn drop(&mut self) {
        if let Some(flights) = self.flights.upgrade() {
            let mut flights = flights.lock().unwrap_or_else(PoisonError::into_inner);
            if flights.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                flights.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_one_execution() {
        let flights = Arc::new(SingleFlight::<u32, u32>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, runs, gate) = (flights.clone(), runs.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(7, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let mut gate = gate;
                        let _ = gate.wait_for(|open| *open).await;
                        42
                    })
                    .await
            }));
        }
        // Every caller has joined once 50 tasks have run to their first await;
        // waiting for the flight to exist is enough to release it safely.
        tokio::time::timeout(Duration::from_secs(5), async {
            while flights.in_flight() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("flight started");
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(true).expect("receivers alive");
        let mut leaders = 0;
        for task in tasks {
            let (value, role) = task.await.expect("task ran");
            assert_eq!(value, Ok(42));
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(leaders, 1, "exactly one caller led");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");
        assert_eq!(flights.in_flight(), 0, "finished flights are forgotten");
    }

    #[tokio::test]
    async fn later_calls_start_afresh() {
        let flights = SingleFlight::<&str, usize>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        for expected in 1..=3 {
            let runs = runs.clone();
            let (value, role) = flights
                .run("k", move || async move {
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await;
            assert_eq!(value, Ok(expected));
            assert_eq!(role, Role::Leader);
        }
    }

    #[tokio::test]
    async fn work_goes_on_while_anyone_waits_and_stops_when_nobody_does() {
        let flights = Arc::new(SingleFlight::<u8, u8>::new());
        let (release, gate) = tokio::sync::watch::channel(false);
        let (finished_tx, finished) = tokio::sync::oneshot::channel::<()>();
        let finished_tx = Arc::new(Mutex::new(Some(finished_tx)));
        let work = {
            let gate = gate.clone();
            let finished_tx = finished_tx.clone();
            move || async move {
                let mut gate = gate;
                let _ = gate.wait_for(|open| *open).await;
                if let Some(tx) = finished_tx
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    let _ = tx.send(());
                }
                9
            }
        };
        // The leader gives up; a follower still waits, so the work goes on.
        let leader = {
            let flights = flights.clone();
            let work = work.clone();
            tokio::spawn(async move { flights.run(1, work).await })
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            while flights.in_flight() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("flight started");
        let follower = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(1, || async { 0 }).await })
        };
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        release.send(true).expect("receivers alive");
        let (value, role) = follower.await.expect("follower ran");
        assert_eq!((value, role), (Ok(9), Role::Follower));

        // Every caller gives up: the work is cancelled and never finishes.
        let (_release, gate) = tokio::sync::watch::channel(false);
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (dropped_tx, dropped) = tokio::sync::oneshot::channel::<()>();
        struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(());
                }
            }
        }
        let only = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(2, move || async move {
                        let _guard = OnDrop(Some(dropped_tx));
                        let _ = started_tx.send(());
                        let mut gate = gate;
                        let _ = gate.wait_for(|open| *open).await;
                        1
                    })
                    .await
            })
        };
        started.await.expect("work started");
        only.abort();
        tokio::time::timeout(Duration::from_secs(5), dropped)
            .await
            .expect("the abandoned work was cancelled")
            .expect("guard sent");
        tokio::time::timeout(Duration::from_secs(5), async {
            while flights.in_flight() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the cancelled flight is forgotten");
        drop(finished);
    }

    #[tokio::test]
    async fn a_panicking_flight_fails_every_waiter_and_is_forgotten() {
        let flights = SingleFlight::<u8, u8>::new();
        let (value, _) = flights.run(1, || async { panic!("boom") }).await;
        assert_eq!(value, Err(FlightFailed));
        let (value, role) = flights.run(1, || async { 5 }).await;
        assert_eq!((value, role), (Ok(5), Role::Leader));
    }
}
