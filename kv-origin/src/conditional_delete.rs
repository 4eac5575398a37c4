//! Deleting an object only if it is still the version that was read.
//!
//! `object_store` has no conditional delete, but S3 honours `If-Match` on
//! `DeleteObject`. This sends that request itself, signed by the store's own
//! credentials (a presigned URL that binds the `If-Match` header), so that
//! the sweep can remove an old tombstone from a bucket that other origin
//! processes write: if one of them wrote the key since the tombstone was
//! read, the delete is refused and the write stays.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use reqwest::header::{HeaderValue, IF_MATCH};

/// How a conditional delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The object was the version read, and is gone.
    Yes,
    /// The object changed (or was already gone): nothing was deleted.
    Changed,
}

/// Conditional deletes on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Deleter {
    s3: Arc<AmazonS3>,
    http: reqwest::Client,
}

/// How long a signed delete URL is valid: enough for one request.
const URL_LIFETIME: Duration = Duration::from_secs(60);

impl S3Deleter {
    /// Deletes through `s3`'s endpoint and credentials.
    pub fn new(s3: Arc<AmazonS3>) -> Self {
        Self {
            s3,
            http: reqwest::Client::new(),
        }
    }

    /// Deletes `path` if its ETag is still `e_tag`, within `timeout`.
    pub async fn delete_if(
        &self,
        path: &Path,
        e_tag: &str,
        timeout: Duration,
    ) -> Result<Deleted, String> {
        let condition = HeaderValue::from_str(e_tag).map_err(|e| format!("bad ETag: {e}"))?;
        let options = SignedUrlOptions::new().with_signed_header(IF_MATCH, condition.clone());
        let url = self
            .s3
            .signed_url_opts(reqwest::Method::DELETE, path, URL_LIFETIME, &options)
            .await
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .delete(url)
            .header(IF_MATCH, condition)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200 | 204 => Ok(Deleted::Yes),
            // 412: another version is there now; 404: nothing is.
            404 | 412 => Ok(Deleted::Changed),
            status => Err(format!(
                "conditional delete answered {status}: {}",
                response.text().await.unwrap_or_default()
            )),
        }
    }
}
