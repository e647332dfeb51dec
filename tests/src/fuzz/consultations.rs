//! A consultation's signed life: workflow steps applied to every fixed
//! state, and conclusion files as `konsilium verify` reads them.

use super::*;

/// Applies one step to every fixed consultation, checking that a refused
/// step changes nothing. True if any state accepted it.
pub(super) fn apply_everywhere(step: &Signed<Transition>) -> bool {
    let mut any = false;
    for c in &WORLD.consultations {
        let mut after = c.clone();
        match after.apply(step) {
            Ok(status) => {
                assert_eq!(after.status, status);
                assert_eq!(after.history.len(), c.history.len() + 1);
                any = true;
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(&after, c, "a refused step changed the consultation");
            }
        }
    }
    any
}

/// A workflow step as it arrives in an opened package body (a `PackageBody`
/// frame). Also replays the step as a malicious party could send it: the
/// step's contents re-signed by the party it names and chained onto each
/// fixed consultation, so the state machine is explored past the signature
/// check, which a party to the consultation can always pass.
pub fn workflow_step(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(content) = decode::<PackageBody>(data) else {
        return false;
    };
    let PackageBody::Step { step, conclusion } = content else {
        return package_body(data);
    };
    let concluded = conclusion.is_none_or(|c| c.verify(w.trust(), NOW).is_ok());
    let accepted = apply_everywhere(&step) && concluded;
    let Ok(t) = step.decode_unverified() else {
        return accepted;
    };
    let signer = if t.actor == w.district.id() {
        &w.district
    } else {
        &w.federal
    };
    for c in &w.consultations {
        let resigned = c.step(&signer.identity, t.role, &t.user, t.at, t.action.clone());
        let mut after = c.clone();
        match after.apply(&resigned) {
            Ok(status) => {
                assert_eq!(after.status, status);
                assert_eq!(after.history.last(), Some(&resigned));
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(&after, c, "a refused step changed the consultation");
            }
        }
    }
    accepted
}

/// A conclusion file as `konsilium verify` reads it.
pub fn conclusion_file(data: &[u8]) -> bool {
    let Some(file) = decode::<ConclusionFile>(data) else {
        return false;
    };
    match file.verify(WORLD.trust(), NOW) {
        Ok((conclusion, signer)) => {
            assert!(conclusion.check().is_ok());
            assert!(!signer.trim().is_empty());
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
