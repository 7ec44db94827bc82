//! The blob budget the routes stream within (`limits.blob_memory`), held in
//! [`crate::shared::Shared`]; its use is in [`crate::routes`].

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The blob bytes all answers in flight may hold together (`limits.blob_memory`).
#[derive(Debug)]
pub(crate) struct BlobMemory(pub(crate) Arc<Semaphore>);

impl BlobMemory {
    pub(crate) fn new(bytes: u64) -> BlobMemory {
        let permits = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BlobMemory(Arc::new(Semaphore::new(permits)))
    }
}
