//! An object store whose writes are held back, as a request stuck on the
//! network is: shared by the origin's and the edge's tests through
//! `#[path = "support/late_writes.rs"]`.
#![allow(dead_code, clippy::unwrap_used)]

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A store whose writes are held back, as a request stuck on the network
/// is: a put leaves at once and lands `delay` later, even if its caller
/// has stopped waiting.
#[derive(Debug)]
pub struct LateWrites {
    inner: Arc<dyn ObjectStore>,
    delay: Duration,
    /// How long each read takes; unlike writes, a read stops if its caller
    /// stops waiting.
    read_delay: Duration,
    /// Reads dropped by their caller before they finished.
    pub reads_abandoned: Arc<AtomicU64>,
    /// Writes that reached the store.
    pub arrived: Arc<AtomicU64>,
    /// Writes the store applied.
    pub landed: Arc<AtomicU64>,
}

impl LateWrites {
    /// Writes to `inner` that arrive `delay` after they are sent.
    pub fn new(inner: Arc<dyn ObjectStore>, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            read_delay: Duration::ZERO,
            reads_abandoned: Arc::default(),
            arrived: Arc::default(),
            landed: Arc::default(),
        }
    }

    /// The same store, with reads that take `read_delay`.
    pub fn with_read_delay(mut self, read_delay: Duration) -> Self {
        self.read_delay = read_delay;
        self
    }
}

/// Counts a read dropped before it finished.
struct Abandoned(Option<Arc<AtomicU64>>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl std::fmt::Display for LateWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LateWrites({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LateWrites {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let (inner, delay, arrived, landed, location) = (
            self.inner.clone(),
            self.delay,
            self.arrived.clone(),
            self.landed.clone(),
            location.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = inner.put_opts(&location, payload, opts).await;
            if result.is_ok() {
                landed.fetch_add(1, Ordering::SeqCst);
            }
            arrived.fetch_add(1, Ordering::SeqCst);
            result
        })
        .await
        .unwrap()
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut abandoned = Abandoned(Some(self.reads_abandoned.clone()));
        tokio::time::sleep(self.read_delay).await;
        let result = self.inner.get_opts(location, options).await;
        abandoned.0 = None;
        result
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
