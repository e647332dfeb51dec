//! `konsilium backup` on the node's side: the database, the journal's
//! anchor and the files beside them copied at one moment on the event loop
//! (the only writer), then the attachments off it (see `storage::backup`).

use super::*;
use crate::storage::backup::{self, Manifest};

impl Node {
    pub(super) fn backup(
        &mut self,
        dest: PathBuf,
        reply: oneshot::Sender<Result<Manifest, NodeError>>,
    ) {
        let snapshot = self.snapshot(&dest);
        let Ok(mut manifest) = snapshot else {
            let _ = reply.send(snapshot);
            return;
        };
        let blobs = self.blobs.dir().to_owned();
        tokio::spawn(async move {
            let copied = tokio::task::spawn_blocking(move || {
                let (count, bytes) = backup::copy_attachments(&blobs, &dest)?;
                manifest.attachments = count;
                manifest.attachment_bytes = bytes;
                backup::write_manifest(&dest, &manifest)?;
                Ok(manifest)
            })
            .await
            .unwrap_or_else(|e| Err(NodeError::Attachment(e.to_string())));
            let _ = reply.send(copied);
        });
    }

    fn snapshot(&mut self, dest: &std::path::Path) -> Result<Manifest, NodeError> {
        backup::prepare(dest)?;
        self.checkpoint_journal();
        // Also writes the anchor for the journal's head.
        self.store.flush()?;
        backup::snapshot(&self.store, &self.data_dir, dest)?;
        let (journal_entries, head) = self.store.journal_head()?;
        let consultations = self
            .consultation_ids()?
            .into_iter()
            .map(|id| id.to_string())
            .collect();
        tracing::info!(dest = %dest.display(), journal_entries, "backup: database copied");
        Ok(Manifest {
            org: self.me.cert.org.to_string(),
            taken_at: self.now().to_string(),
            journal_entries,
            journal_head: hex::encode(head),
            directory_digest: hex::encode(self.directory().digest()),
            consultations,
            attachments: 0,
            attachment_bytes: 0,
        })
    }
}
