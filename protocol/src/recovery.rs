//! Asking counterparts for consultation state this node lost.
//!
//! A round asks each organization for the histories of the consultations
//! it shares with this node that moved since a point in time (the last
//! journal entry the database kept, or what the operator names). Peers
//! are often not connected yet when a round starts (it starts with the
//! node), so an organization that cannot be asked now is asked again with
//! backoff, a bounded number of times; one that refuses for good is not.
//! The histories themselves come back later as ordinary sealed packages,
//! checked by the desk (`desk::Desk::handle_history`).

use crate::identity::OrgId;
use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Times each organization is asked before the round gives up on it.
    pub attempts: u32,
    pub first_retry: Duration,
    pub max_retry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            attempts: 8,
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(60),
        }
    }
}

/// Where the round stands with one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// To be asked at `at`; `attempt` asks were made already.
    Due {
        at: Timestamp,
        attempt: u32,
    },
    Asked {
        attempt: u32,
    },
    /// It queued this many consultation histories for us.
    Answered {
        consultations: u32,
    },
    Failed {
        reason: String,
    },
}

impl Ask {
    fn is_open(&self) -> bool {
        matches!(self, Ask::Due { .. } | Ask::Asked { .. })
    }
}

/// Why an organization could not be asked or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// Asking again cannot help (a refusal that says so).
    pub permanent: bool,
}

/// A round as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub since: Timestamp,
    pub asks: BTreeMap<OrgId, Ask>,
}

impl Report {
    pub fn is_finished(&self) -> bool {
        !self.asks.values().any(Ask::is_open)
    }

    /// Histories queued for us over all organizations that answered.
    pub fn consultations(&self) -> u32 {
        self.asks
            .values()
            .map(|a| match a {
                Ask::Answered { consultations } => *consultations,
                _ => 0,
            })
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `Request::Recover { since }` to `org`, then report the answer
    /// with [`Recovery::handle_answer`].
    Ask { org: OrgId, since: Timestamp },
    /// Every organization answered or was given up on.
    Finished(Report),
}

pub struct Recovery {
    config: Config,
    round: Option<Report>,
    out: VecDeque<Output>,
}

impl Recovery {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            round: None,
            out: VecDeque::new(),
        }
    }

    /// Starts a round asking `orgs` for everything since `since`. A round
    /// under way is replaced: its answers stand at the counterparts, and
    /// asking twice costs a counterpart one more scan.
    pub fn start(
        &mut self,
        now: Timestamp,
        since: Timestamp,
        orgs: impl IntoIterator<Item = OrgId>,
    ) {
        let asks: BTreeMap<OrgId, Ask> = orgs
            .into_iter()
            .map(|org| {
                (
                    org,
                    Ask::Due {
                        at: now,
                        attempt: 0,
                    },
                )
            })
            .collect();
        self.round = Some(Report { since, asks });
        self.handle_timeout(now);
        self.finish_if_done();
    }

    /// What `org` answered, or why it could not be asked.
    pub fn handle_answer(&mut self, now: Timestamp, org: OrgId, answer: Result<u32, Failure>) {
        let Some(round) = &mut self.round else {
            return;
        };
        let Some(ask) = round.asks.get_mut(&org) else {
            return;
        };
        let Ask::Asked { attempt } = *ask else {
            return;
        };
        *ask = match answer {
            Ok(consultations) => Ask::Answered { consultations },
            Err(f) if f.permanent || attempt >= self.config.attempts => {
                Ask::Failed { reason: f.reason }
            }
            Err(_) => {
                let wait = self
                    .config
                    .first_retry
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(self.config.max_retry);
                Ask::Due {
                    at: now.saturating_add(wait),
                    attempt,
                }
            }
        };
        self.finish_if_done();
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.round
            .as_ref()?
            .asks
            .values()
            .filter_map(|a| match a {
                Ask::Due { at, .. } => Some(*at),
                _ => None,
            })
            .min()
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        let Some(round) = &mut self.round else {
            return;
        };
        for (org, ask) in &mut round.asks {
            if let Ask::Due { at, attempt } = *ask
                && at <= now
            {
                *ask = Ask::Asked {
                    attempt: attempt + 1,
                };
                self.out.push_back(Output::Ask {
                    org: *org,
                    since: round.since,
                });
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The round under way or the last one.
    pub fn report(&self) -> Option<&Report> {
        self.round.as_ref()
    }

    fn finish_if_done(&mut self) {
        if let Some(round) = &self.round
            && round.is_finished()
            && !self
                .out
                .iter()
                .any(|o| matches!(o, Output::Finished(r) if r == round))
        {
            self.out.push_back(Output::Finished(round.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKey;

    fn org(seed: u8) -> OrgId {
        IdentityKey::from_seed([seed; 32]).org_id()
    }

    fn asked(r: &mut Recovery) -> Vec<OrgId> {
        let mut orgs = Vec::new();
        while let Some(o) = r.poll_output() {
            if let Output::Ask { org, .. } = o {
                orgs.push(org);
            }
        }
        orgs
    }

    fn transient() -> Failure {
        Failure {
            reason: "not connected".into(),
            permanent: false,
        }
    }

    #[test]
    fn every_organization_is_asked_again_until_it_answers_or_the_attempts_run_out() {
        let config = Config {
            attempts: 3,
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(3),
        };
        let mut r = Recovery::new(config);
        let (a, b, c) = (org(1), org(2), org(3));
        let t0 = Timestamp::from_unix_millis(1_000_000);
        r.start(t0, Timestamp::from_unix_millis(10_000), [a, b, c]);
        let mut first = asked(&mut r);
        first.sort();
        let mut all = vec![a, b, c];
        all.sort();
        assert_eq!(first, all);

        r.handle_answer(t0, a, Ok(4));
        r.handle_answer(
            t0,
            b,
            Err(Failure {
                reason: "revoked".into(),
                permanent: true,
            }),
        );
        r.handle_answer(t0, c, Err(transient()));
        assert_eq!(
            r.poll_timeout(),
            Some(t0.saturating_add(Duration::from_secs(2)))
        );
        // An answer from an organization not asked right now changes nothing.
        r.handle_answer(t0, a, Err(transient()));

        let mut now = t0;
        for expected_wait in [2, 3] {
            now = now.saturating_add(Duration::from_secs(expected_wait));
            assert_eq!(r.poll_timeout(), Some(now));
            r.handle_timeout(now);
            assert_eq!(asked(&mut r), vec![c]);
            r.handle_answer(now, c, Err(transient()));
        }
        assert_eq!(r.poll_timeout(), None);
        let Some(Output::Finished(report)) = r.poll_output() else {
            panic!("the round did not finish");
        };
        assert!(report.is_finished());
        assert_eq!(report.consultations(), 4);
        assert_eq!(report.asks[&a], Ask::Answered { consultations: 4 });
        assert!(matches!(&report.asks[&b], Ask::Failed { reason } if reason == "revoked"));
        assert!(matches!(&report.asks[&c], Ask::Failed { reason } if reason == "not connected"));
        assert_eq!(r.poll_output(), None);
    }

    #[test]
    fn a_round_with_no_one_to_ask_finishes_at_once() {
        let mut r = Recovery::new(Config::default());
        let now = Timestamp::from_unix_millis(5_000);
        r.start(now, now, []);
        assert!(matches!(r.poll_output(), Some(Output::Finished(rep)) if rep.asks.is_empty()));
        assert_eq!(r.poll_timeout(), None);
    }
}
