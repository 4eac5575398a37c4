//! Racing writers on one key: what their acknowledgements must show.

use tokio::task::JoinHandle;

/// Joins writers that each return the (version, value) of the writes they
/// got acknowledged, in the order they made them. Each writer's versions
/// rise in real-time order, and no version is issued twice (`expected`
/// writes in all). Returns the highest (version, value).
pub async fn highest_of(
    writers: Vec<JoinHandle<Vec<(u64, String)>>>,
    expected: usize,
) -> (u64, String) {
    let mut all = Vec::new();
    for writer in writers {
        let acked = writer.await.expect("a writer panicked");
        // Each writer's own writes are in real-time order.
        assert!(acked.windows(2).all(|w| w[0].0 < w[1].0), "{acked:?}");
        all.extend(acked);
    }
    let mut versions: Vec<_> = all.iter().map(|(v, _)| *v).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), expected, "a version was issued twice");
    all.into_iter().max().expect("at least one write")
}
