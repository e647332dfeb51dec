//! Listing consultations a page at a time, newest first. The desk holds
//! every consultation's request and status in memory, so a page is chosen
//! without reading the database; only the page's consultations are then
//! read for their views.

use super::*;

/// One page of consultation ids, and whether more follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub ids: Vec<ConsultationId>,
    pub more: bool,
}

impl Desk {
    /// Up to `limit` consultations in `status` (any, if none), newest first
    /// (ties by id, highest first), starting after the consultation `after`
    /// names. An `after` that is not among them is an error: the caller
    /// starts again rather than get a page from somewhere else.
    pub fn page(
        &self,
        status: Option<Status>,
        after: Option<ConsultationId>,
        limit: usize,
    ) -> Result<Page, DeskError> {
        let mut listed: Vec<(Timestamp, ConsultationId)> = (self.cases.values())
            .filter(|case| status.is_none_or(|s| case.consultation.status == s))
            .map(|case| (case.consultation.request.created, case.id()))
            .collect();
        listed.sort_unstable_by(|a, b| b.cmp(a));
        let start = match after {
            None => 0,
            Some(after) => {
                let at = listed.iter().position(|(_, id)| *id == after);
                at.ok_or(DeskError::Unknown(after))? + 1
            }
        };
        let rest = &listed[start..];
        Ok(Page {
            ids: rest.iter().take(limit).map(|(_, id)| *id).collect(),
            more: rest.len() > limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{World, opened};
    use super::*;
    use crate::testkit::NOW;
    use crate::urgency::Urgency;

    #[test]
    fn pages_list_each_consultation_once_newest_first_and_by_status() {
        let w = World::new();
        let (_, mut consultant, first) = opened(&w, Urgency::Planned, 50);
        let mut ids = vec![first];
        for n in 51..55 {
            let (_, other, id) = opened(&w, Urgency::Planned, n);
            consultant.restore(NOW, other.case(&id).unwrap().clone(), &w.directory);
            ids.push(id);
        }
        // All opened at the same moment: newest first means by id, highest first.
        ids.sort_by_key(|id| std::cmp::Reverse(id.0));
        let mut seen: Vec<ConsultationId> = Vec::new();
        let mut after = None;
        loop {
            let page = consultant.page(None, after, 2).unwrap();
            assert!(page.ids.len() <= 2);
            seen.extend(&page.ids);
            if !page.more {
                break;
            }
            after = page.ids.last().copied();
        }
        assert_eq!(seen, ids);

        let dr = Actor {
            role: Role::Consultant,
            user: "Dr. Ivanov",
        };
        (consultant.act(NOW, ids[3], dr, Action::Accept, None, &w.directory)).unwrap();
        let accepted = consultant.page(Some(Status::Accepted), None, 10).unwrap();
        assert_eq!(accepted.ids, vec![ids[3]]);
        assert!(!accepted.more);
        let requested = consultant.page(Some(Status::Requested), None, 10).unwrap();
        assert_eq!(requested.ids.len(), 4);
        assert!(!requested.ids.contains(&ids[3]));

        // After a consultation that is not listed with this status.
        let unknown = consultant.page(Some(Status::Requested), Some(ids[3]), 10);
        assert_eq!(unknown, Err(DeskError::Unknown(ids[3])));
    }
}
