//! Rotating the sealing key without a new identity or certificate: the new
//! public key goes out in the directory record; the old private key stays on
//! disk (`keys/retired/`) and in the keyring, so what was sealed to it still
//! opens (see `konsilium_protocol::seal::keyring`).

use super::*;
use crate::telemetry::report::RotationReport;
use konsilium_protocol::seal::keyring::OVERLAP;

impl Node {
    pub(super) fn rotate_sealing(&mut self) -> Result<RotationReport, NodeError> {
        let now = self.now();
        let new = crate::keys::rotate_sealing(&self.data_dir, now.unix_millis())
            .map_err(|e| NodeError::Keys(e.to_string()))?;
        let retired = self.keyring.current().public();
        self.keyring.rotate(new, now);
        // Published at once: every hour the old key stays in other
        // directories is an hour of packages sealed to it.
        self.publish_record()?;
        tracing::warn!(
            new = %hex(self.keyring.current().public().as_bytes()),
            retired = %hex(retired.as_bytes()),
            "sealing key rotated; packages sealed to the retired key are taken in until {}",
            now.saturating_add(OVERLAP)
        );
        Ok(RotationReport {
            sealing_key: hex(self.keyring.current().public().as_bytes()),
            retired: hex(retired.as_bytes()),
            accepted_until: now.saturating_add(OVERLAP).to_string(),
            retired_keys: self.keyring.retired().len(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}
