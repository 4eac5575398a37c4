//! The keyspace: every key of the workload written once, through the
//! origin's own write path, into an in-memory object store that each setup
//! then starts from a fork of (values are shared, not copied).
//!
//! In memory rather than in a local directory because `ThrottledStore`
//! cannot wrap `LocalFileSystem` reads (object_store 0.14 answers them with
//! a file handle the throttle does not support), and the emulated latency
//! is the throttle's, not the medium's.

use std::sync::Arc;

use futures::StreamExt;
use indicatif::ProgressBar;
use kv_origin::{Origin, Store, StoreConfig};
use kv_proto::{Key, Namespace, PutRequest};
use kv_runtime::deadline::Deadline;
use object_store::memory::InMemory;

use crate::workload::{NAMESPACE, Workload, key_name};

/// How long one preload write may take: local and in memory, so generous.
const PRELOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the keyspace could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A key or value was refused.
    #[error("key {key}: {message}")]
    Put {
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
}

/// Writes every key of `workload` into a new in-memory store.
pub async fn write(workload: &Workload, progress: &ProgressBar) -> Result<InMemory, DatasetError> {
    let memory = Arc::new(InMemory::new());
    let store = Store::new(
        memory.clone(),
        object_store::path::Path::default(),
        true,
        &StoreConfig::default(),
    );
    let origin = Arc::new(Origin::new(store));
    let namespace = Namespace::new(NAMESPACE).map_err(|e| DatasetError::Put {
        key: String::new(),
        message: e.to_string(),
    })?;
    let mut puts = futures::stream::iter(0..workload.keys())
        .map(|rank| {
            let (origin, namespace) = (origin.clone(), namespace.clone());
            async move {
                let name = key_name(rank);
                let failed = |message: String| DatasetError::Put {
                    key: name.clone(),
                    message,
                };
                let key = Key::new(name.clone()).map_err(|e| failed(e.to_string()))?;
                let put = PutRequest::new(namespace, key, workload.value(rank))
                    .map_err(|e| failed(e.to_string()))?;
                let deadline = Deadline::after(PRELOAD_DEADLINE);
                origin
                    .put(&put, &deadline)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                progress.inc(1);
                Ok::<(), DatasetError>(())
            }
        })
        .buffer_unordered(32);
    while let Some(result) = puts.next().await {
        result?;
    }
    drop(puts);
    Ok(memory.fork())
}
