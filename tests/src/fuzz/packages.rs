//! Sealed packages opened as the recipient opens them, their bodies, and
//! the delivery receipts that come back.

use super::*;

/// A package delivered to the federal hospital, opened as the node opens it.
pub fn sealed_package(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(package) = decode::<SealedPackage>(data) else {
        return false;
    };
    let _ = package.header.check(NOW).map_err(|e| e.to_string());
    // The body alone, as a relay-independent check of every chunk.
    let mut out = Vec::new();
    let sender_keys = w
        .directory
        .get(&w.district.id())
        .expect("known")
        .sealing_keys();
    let body_ok = seal::open_body(
        &package.header,
        &w.federal.sealing,
        &sender_keys,
        &package.body,
        &mut out,
    )
    .map_err(|e| Refusal::from(e).to_string())
    .is_ok();
    let opened = seal::open(
        &package,
        w.federal.id(),
        &w.federal.sealing,
        &w.directory,
        NOW,
        |_| false,
    );
    match opened {
        Ok(body) => {
            assert!(body_ok || package.header.sender != w.district.id());
            // A replayed id is refused whatever the body.
            assert!(matches!(
                seal::open(
                    &package,
                    w.federal.id(),
                    &w.federal.sealing,
                    &w.directory,
                    NOW,
                    |_| true
                ),
                Err(seal::SealError::Replay(_))
            ));
            let _ = package_body(&body);
            true
        }
        Err(e) => {
            let _ = Refusal::from(e).to_string();
            false
        }
    }
}

/// What the consulting node does with an opened body.
pub(super) fn package_body(body: &[u8]) -> bool {
    let Some(content) = decode::<PackageBody>(body) else {
        return false;
    };
    match content {
        PackageBody::Consultation { request, .. } => Consultation::open(&request).is_ok(),
        PackageBody::Step { step, conclusion } => {
            let applied = apply_everywhere(&step);
            let concluded = conclusion.is_none_or(|c| c.verify(WORLD.trust(), NOW).is_ok());
            applied && concluded
        }
        PackageBody::History(history) => {
            let Ok(mut c) = Consultation::open(&history.request) else {
                return false;
            };
            history.steps.iter().all(|s| c.apply(s).is_ok())
        }
        PackageBody::Opaque(_) | PackageBody::Probe { .. } => true,
    }
}

/// A delivery receipt coming back in a request or response, checked against
/// the package the sender holds.
pub fn receipt(data: &[u8]) -> bool {
    let signed = match wire::peek_kind(data) {
        Ok(MessageKind::Response) => match decode::<Response>(data) {
            Some(Response::Receipt(r)) => r,
            _ => return false,
        },
        _ => match decode::<Request>(data) {
            Some(Request::Receipt(r)) => r,
            _ => return false,
        },
    };
    match delivery::check_receipt(&signed, &WORLD.package) {
        Ok(r) => {
            assert_eq!(r.package, WORLD.package.header.id);
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
