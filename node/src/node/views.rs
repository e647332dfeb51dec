//! How a consultation is read for the API, the CLI and the operator: its
//! stored record joined with the state the desk holds, one at a time or a
//! page at a time.

use super::{Node, NodeError};
use crate::storage::store::StoredConsultation;
use konsilium_protocol::conclusion::ConclusionFile;
use konsilium_protocol::content::{CaseExtract, FileInfo};
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::desk;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::BlobRef;
use konsilium_protocol::workflow::{Consultation, ConsultationId, Side, Status};

/// One consultation as this node sees it.
#[derive(Debug, Clone)]
pub struct ConsultationView {
    pub consultation: Consultation,
    pub extract: CaseExtract,
    pub conclusion: Option<ConclusionFile>,
    pub side: Side,
    pub counterpart: OrgId,
    /// From the consulting organization's calendar and deadlines, when it is in the directory.
    pub deadline: Option<Deadline>,
    /// The case extract's files: what each is, and its sealed blob.
    pub files: Vec<(FileInfo, BlobRef)>,
}

/// A page of consultations, newest first (`NodeHandle::consultation_page`).
#[derive(Debug, Clone)]
pub struct ConsultationPage {
    pub views: Vec<ConsultationView>,
    /// Whether more follow the page's last.
    pub more: bool,
}

impl Node {
    /// A consultation's stored record and its state as the desk holds it.
    pub(super) fn load_consultation(
        &self,
        id: &ConsultationId,
    ) -> Result<(StoredConsultation, Consultation), NodeError> {
        let stored = self
            .store
            .consultation(id)?
            .ok_or(NodeError::UnknownConsultation(*id))?;
        let case = self
            .desk
            .case(id)
            .ok_or(NodeError::UnknownConsultation(*id))?;
        Ok((stored, case.consultation.clone()))
    }

    pub(super) fn consultation_view(
        &self,
        id: &ConsultationId,
    ) -> Result<ConsultationView, NodeError> {
        let (stored, c) = self.load_consultation(id)?;
        let side = (c.side_of(self.me.cert.org)).unwrap_or(Side::Consulting);
        let counterpart = desk::counterpart(&c.request, self.me.cert.org);
        let blobs = match (&stored.own_copy, stored.received_in) {
            (Some(own), _) => own.attachments.clone(),
            // The header alone: what the files are needs neither the body
            // nor the sender's directory entry (it may have lapsed since).
            (None, Some(package)) => {
                (self.store.inbox_header(&package)?)
                    .ok_or(NodeError::NotInInbox(package))?
                    .attachments
            }
            (None, None) => Vec::new(),
        };
        let files = blobs
            .into_iter()
            .enumerate()
            .map(|(i, blob)| (stored.files.get(i).cloned().unwrap_or_default(), blob))
            .collect();
        let conclusion = stored.conclusion.filter(|f| f.concludes(&c));
        Ok(ConsultationView {
            files,
            deadline: self.deadline(&c.request),
            consultation: c,
            extract: stored.extract,
            conclusion,
            side,
            counterpart,
        })
    }

    /// The page the desk chooses, each of its consultations read for its
    /// view: a page costs its own consultations, not all of them.
    pub(super) fn consultation_page(
        &self,
        status: Option<Status>,
        after: Option<ConsultationId>,
        limit: usize,
    ) -> Result<ConsultationPage, NodeError> {
        let page = self.desk.page(status, after, limit)?;
        let views = (page.ids.iter())
            .map(|id| self.consultation_view(id))
            .collect::<Result<_, _>>()?;
        Ok(ConsultationPage {
            views,
            more: page.more,
        })
    }

    pub(super) fn consultation_ids(&self) -> Result<Vec<ConsultationId>, NodeError> {
        Ok(self
            .store
            .consultations()?
            .iter()
            .filter_map(super::consult::request_id)
            .collect())
    }
}
