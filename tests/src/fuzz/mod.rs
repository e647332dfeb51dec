//! Entry points for fuzzing the protocol's decoders, one per decoder family.
//!
//! Each function takes the bytes a node would receive from a peer or read
//! from a file and drives them through the same protocol calls the node
//! makes. The libFuzzer targets in `fuzz/` and the stable corpus replay in
//! `tests/tests/fuzz_corpus.rs` both call these functions, so what the fuzzer
//! explored is exactly what `cargo test` replays.
//!
//! They return whether the input was accepted by every check (used to prove
//! that the seeds reach past decoding), and panic only when the protocol
//! breaks one of its own promises: a panic here is a bug in the protocol.
//!
//! One module per family of targets; `world` holds the fixed federation they
//! all run against, `seeds` the valid inputs the fuzzer starts from.

mod admission;
mod anchor;
mod consultations;
mod files;
mod frames;
mod gossip;
mod packages;
mod sdp;
mod seeds;
mod stun;
mod video;
mod world;

pub use admission::{cert_chain, hello, revocation};
pub use anchor::journal_anchor;
pub use consultations::{conclusion_file, workflow_step};
pub use files::{config_file, fhir_referral, journal_file};
pub use frames::wire_frame;
pub use gossip::directory_record;
pub use packages::{receipt, sealed_package};
pub use sdp::sdp_offer;
pub use seeds::{Seed, seeds};
pub use stun::stun_datagram;
pub use video::video_signal;
pub use world::{WORLD, World};

use consultations::apply_everywhere;
use frames::decode;
use packages::package_body;
use world::{at, header, request};

use konsilium_protocol::cert::{CertChain, OrgLevel, RevocationNotice, Trust};
use konsilium_protocol::conclusion::{Conclusion, ConclusionFile};
use konsilium_protocol::content::{CaseExtract, PackageBody};
use konsilium_protocol::delivery::{self, Receipt};
use konsilium_protocol::directory::{Directory, Merge, SignedRecord, SyncOffer};
use konsilium_protocol::journal::{self, Checkpoint, Entry, Journal, Role};
use konsilium_protocol::rpc::{DeliveryAnswer, Hello, HelloAnswer, Refusal, Request, Response};
use konsilium_protocol::seal::{
    self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage,
};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire::{
    self, MessageKind, RecordBatch, RecordRequest, SyncSummaries, WireMessage,
};
use konsilium_protocol::workflow::{
    self, Action, Consent, ConsentMethod, Consultation, ConsultationId, ConsultationRequest, Slot,
    Transition,
};
use std::sync::LazyLock;
use std::time::Duration;

/// A target's entry function: true when the input passed every check.
pub type Target = fn(&[u8]) -> bool;

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("wire_frame", wire_frame),
    ("sealed_package", sealed_package),
    ("cert_chain", cert_chain),
    ("directory_record", directory_record),
    ("revocation", revocation),
    ("receipt", receipt),
    ("workflow_step", workflow_step),
    ("conclusion_file", conclusion_file),
    ("hello", hello),
    ("journal_anchor", journal_anchor),
    ("config_file", config_file),
    ("fhir_referral", fhir_referral),
    ("journal_file", journal_file),
    ("video_signal", video_signal),
    ("stun_datagram", stun_datagram),
    ("sdp_offer", sdp_offer),
];
