//! The latest checkpoint the witnesses cosigned (`serve --witness`, `witnesses.rs`), kept
//! for `GET /v1/checkpoint/cosigned` and the inclusion proofs asked against it.

/// The latest checkpoint with the cosignatures it got.
#[derive(Debug, Default)]
pub struct Cosigned(std::sync::RwLock<Option<(u64, String)>>);

impl Cosigned {
    /// The tree size and the note with its cosignature lines.
    pub fn latest(&self) -> Option<(u64, String)> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, size: u64, note: String) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some((size, note));
    }
}

/// Shared by the submitting task and the handlers.
pub type Witnessed = std::sync::Arc<Cosigned>;
