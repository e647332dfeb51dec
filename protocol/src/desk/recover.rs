//! Recovery: a node that lost consultation state takes it back from the
//! counterparts that share it.
//!
//! Both organizations of a consultation hold the same signed request and
//! steps, each signed by the organization that took it. A counterpart's
//! history is therefore checked exactly as the steps were when they first
//! arrived (signatures, roles, order, the conclusion's hash), and it can
//! only extend what this node still has: a counterpart can withhold steps,
//! never alter or invent one. A history that forks from what this node
//! kept is settled as a race between the two steps at the fork would be
//! (`race`); any other contradiction is refused and left for the
//! operator, whatever it claims.

use super::*;
use crate::content::SharedHistory;

/// What a counterpart's history did here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// The consultation was unknown here and is back.
    New { steps: u32 },
    /// It was known, behind the counterpart: these steps were added.
    Extended { steps: u32 },
    /// Nothing was missing.
    UpToDate,
    /// It was known, and a step taken here lost a race to the
    /// counterpart's step at the same place (`workflow::outranks`): the
    /// `undone` steps from there on were undone, the counterpart's `steps`
    /// taken, as if its step had arrived in the usual way.
    Settled { undone: u32, steps: u32 },
    /// It forked from what this node kept in a race this node's step won:
    /// nothing was taken; the counterpart undoes its steps when this
    /// node's reach it.
    Stood,
}

impl Desk {
    /// The consultations this organization shares with `org` that moved
    /// at or after `since`: what `org` asks for when it lost them.
    pub fn shared_with(&self, org: OrgId, since: Timestamp) -> Vec<ConsultationId> {
        self.cases
            .values()
            .filter(|case| org != self.me && case.consultation.side_of(org).is_some())
            .filter(|case| last_moved(case) >= since)
            .map(Case::id)
            .collect()
    }

    /// A consultation's history `sender` holds, sent in `package` because
    /// this node asked for it. Forgery (a history from an organization
    /// that is not the other party, a step or conclusion that does not
    /// verify) is reported like a forged step.
    pub fn handle_history(
        &mut self,
        now: Timestamp,
        sender: OrgId,
        package: PackageId,
        history: &SharedHistory,
        trust: &Trust,
        directory: &Directory,
    ) -> Result<Recovered, DeskError> {
        let taken = self.take_history(now, sender, package, history, trust, directory);
        self.blame(sender, &taken);
        taken
    }

    fn take_history(
        &mut self,
        now: Timestamp,
        sender: OrgId,
        package: PackageId,
        history: &SharedHistory,
        trust: &Trust,
        directory: &Directory,
    ) -> Result<Recovered, DeskError> {
        let mut theirs = Consultation::open(&history.request)?;
        let request = theirs.request.clone();
        // Replayed before the parties are checked: an invited organization
        // is named only by the step that invited it.
        for step in &history.steps {
            theirs.apply(step)?;
        }
        let party = |org| theirs.side_of(org).is_some();
        if sender == self.me || !party(sender) || !party(self.me) {
            return Err(WorkflowError::Outsider { actor: sender }.into());
        }
        if let Some(file) = &history.conclusion {
            if theirs.conclusion != Some(file.conclusion.content_hash()) {
                return Err(DeskError::ConclusionMismatch);
            }
            // A signer's certificate may have expired since it concluded.
            match file.verify(trust, now) {
                Ok(_) | Err(ConclusionError::Chain(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let id = request.id;
        let from = sender;
        let Some(case) = self.cases.get_mut(&id) else {
            let steps = history.steps.len() as u32;
            let notes = vec![
                super::steps::receive_note(id, package),
                recover_note(id, from, steps),
            ];
            self.cases.insert(
                id,
                Case {
                    request: history.request.clone(),
                    deadline: Desk::deadline(&theirs.request, directory),
                    consultation: theirs,
                    waiting: Vec::new(),
                    conclusion: history.conclusion.clone(),
                    escalated_to: None,
                },
            );
            self.link_escalation(&request);
            self.out.push_back(Output::Persist { id, notes });
            self.updated(now, id, directory);
            self.release_early(now, id, trust, directory);
            return Ok(Recovered::New { steps });
        };
        let mut notes = Vec::new();
        let mine = &case.consultation.history;
        let common = mine.len().min(history.steps.len());
        let fork = (0..common).find(|&k| mine[k] != history.steps[k]);
        if let Some(at) = fork {
            let (ours, rival) = (&mine[at], &history.steps[at]);
            let actor = |s: &Signed<Transition>| s.decode_unverified().map(|t| t.actor);
            if race::stands_over(ours, actor(ours)?, &history.steps[at..]) {
                return Ok(Recovered::Stood);
            }
            let t = rival.decode_unverified()?;
            match race::settle(case, rival, &t)? {
                race::Race::Lost { undone, .. } => {
                    notes = race::undone_notes(id, &undone, t.actor);
                    // What followed the rival step may have come before it.
                    case.waiting
                        .extend(self.aside.remove(&id).unwrap_or_default());
                }
                race::Race::None => return Err(DeskError::Diverged(id)),
            }
        }
        let undone = notes.len() as u32;
        // From the fork on, the counterpart's steps are all taken (its step
        // at the fork among them).
        let kept = fork.unwrap_or(case.consultation.history.len());
        if history.steps.len() <= kept {
            return Ok(Recovered::UpToDate);
        }
        let steps = (history.steps.len() - kept) as u32;
        let applied: Vec<[u8; 32]> = theirs.history.iter().map(|s| s.content_hash()).collect();
        case.waiting
            .retain(|s| !applied.contains(&s.content_hash()));
        case.consultation = theirs;
        if case.conclusion.is_none() {
            case.conclusion = history.conclusion.clone();
        }
        notes.push(recover_note(id, from, steps));
        notes.extend(apply_waiting(case, &mut self.out));
        self.out.push_back(Output::Persist { id, notes });
        self.updated(now, id, directory);
        Ok(match fork {
            Some(_) => Recovered::Settled { undone, steps },
            None => Recovered::Extended { steps },
        })
    }

    /// A recovered consultation escalated from, or to, one this node
    /// holds: the link the lost state had is restored, so the older one is
    /// never escalated a second time.
    fn link_escalation(&mut self, request: &ConsultationRequest) {
        let links: Vec<(ConsultationId, ConsultationId)> = request
            .escalated_from
            .map(|from| (from, request.id))
            .into_iter()
            .chain(
                self.cases
                    .values()
                    .filter(|c| c.consultation.request.escalated_from == Some(request.id))
                    .map(|c| (request.id, c.id())),
            )
            .collect();
        for (from, to) in links {
            if let Some(case) = self.cases.get_mut(&from)
                && case.escalated_to.is_none()
            {
                case.escalated_to = Some(to);
                self.out.push_back(Output::Persist {
                    id: from,
                    notes: Vec::new(),
                });
            }
        }
    }

    fn updated(&mut self, now: Timestamp, id: ConsultationId, directory: &Directory) {
        if let Some(case) = self.cases.get(&id) {
            let status = case.consultation.status;
            self.out
                .push_back(Output::Event(Event::Updated { id, status }));
        }
        self.watch(now, id, directory);
    }
}

fn recover_note(id: ConsultationId, from: OrgId, steps: u32) -> Note {
    Note {
        user: None,
        role: None,
        action: journal::Action::Recover {
            consultation: id.0,
            from,
            steps,
        },
    }
}

/// When the consultation last moved: its latest step, or its request.
fn last_moved(case: &Case) -> Timestamp {
    case.consultation
        .history
        .last()
        .and_then(|s| s.decode_unverified().ok())
        .map_or(case.consultation.request.created, |t| t.at)
        .max(case.consultation.request.created)
}
