//! What callers ask of the event loop: the commands a `NodeHandle` sends,
//! with their arguments and answers.

use super::*;

/// A client's identifier for the request it sends, and the hash of what it
/// sent (see [`crate::storage::store::IntakeRecord`]). The identifier is namespaced
/// by the caller (the FHIR and the JSON API keep separate namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeKey {
    pub identifier: String,
    pub fingerprint: [u8; 32],
}

/// How long an identifier is remembered: a client retries within minutes
/// or hours; after this a reused identifier opens a new consultation.
pub const INTAKE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What an idempotent request did.
#[derive(Debug, Clone)]
pub enum Intake {
    Opened(ConsultationId, Sent),
    /// The identifier had already opened this consultation with the same request.
    Existing(ConsultationId),
}

/// Where a package should go.
#[derive(Debug, Clone)]
pub enum Target {
    Org(OrgId),
    /// Let routing pick the best match for the package's routing header.
    Best,
}

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub target: Target,
    pub routing: RoutingHeader,
    pub body: Vec<u8>,
    /// Sealed into separate blobs and transferred in resumable pieces.
    pub attachments: Vec<Attachment>,
    pub lifetime: Duration,
}

/// Where an attachment's bytes come from.
#[derive(Debug, Clone)]
pub enum Attachment {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// One file of a case extract: its bytes and what the consultant needs to
/// open them (title, media type), which travel sealed with the request.
#[derive(Debug, Clone)]
pub struct CaseFile {
    pub info: FileInfo,
    pub content: Attachment,
}

impl CaseFile {
    /// Bytes whose kind the sender does not say.
    pub fn untyped(content: Attachment) -> Self {
        CaseFile {
            info: FileInfo::default(),
            content,
        }
    }
}

/// A package whose recipient is chosen and whose header is drawn, waiting
/// for its attachments to be sealed outside the event loop.
pub(super) struct Plan {
    pub(super) header: EnvelopeHeader,
    pub(super) recipient_key: SealingPublicKey,
    pub(super) sealing: SealingKey,
    pub(super) blobs: BlobStore,
    pub(super) recipient_name: String,
    pub(super) route: Option<RouteDecision>,
}

/// A package its sender sealed, for the event loop to store and deliver.
pub(super) struct Queued {
    pub(super) package: seal::SealedPackage,
    pub(super) recipient_name: String,
    pub(super) route: Option<RouteDecision>,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub id: PackageId,
    pub recipient: OrgId,
    pub recipient_name: String,
    pub next_hop: OrgId,
    pub route: Option<RouteDecision>,
}

pub(super) enum Command {
    Plan(
        Target,
        RoutingHeader,
        Duration,
        oneshot::Sender<Result<Plan, NodeError>>,
    ),
    Queue(Box<Queued>, oneshot::Sender<Result<Sent, NodeError>>),
    Open(
        PackageId,
        oneshot::Sender<Result<(EnvelopeHeader, Vec<u8>), NodeError>>,
    ),
    Status(oneshot::Sender<Status>),
    Outbox(oneshot::Sender<Result<Vec<OutboxEntry>, NodeError>>),
    Records(oneshot::Sender<Vec<SignedRecord>>),
    Dial(Multiaddr),
    AttachmentKeys(
        PackageId,
        oneshot::Sender<Result<AttachmentKeys, NodeError>>,
    ),
    /// The keys to the conclusion's files as sealed to this organization.
    ConclusionFileKeys(
        ConsultationId,
        oneshot::Sender<Result<AttachmentKeys, NodeError>>,
    ),
    CaseFileKeys(
        ConsultationId,
        oneshot::Sender<Result<CaseFileKeys, NodeError>>,
    ),
    Candidates(RoutingHeader, oneshot::Sender<Result<usize, NodeError>>),
    OpenConsultation(
        Box<NewConsultation>,
        Vec<FileInfo>,
        OrgId,
        Option<IntakeKey>,
        oneshot::Sender<Result<consult::Opened, NodeError>>,
    ),
    FindIntake(
        IntakeKey,
        oneshot::Sender<Result<Option<ConsultationId>, NodeError>>,
    ),
    ForgetIntake(
        String,
        ConsultationId,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    /// What the attachment files' thread did.
    AttachmentFile(super::partials::FileReport),
    /// A package for us, opened off the event loop (or why it could not be).
    Opened {
        from: OrgId,
        package: Box<konsilium_protocol::seal::SealedPackage>,
        body: Result<Vec<u8>, konsilium_protocol::seal::SealError>,
    },
    /// The flush a turn's end started ended (or why it failed).
    Flushed(Result<(), crate::storage::store::StoreError>),
    /// An escalation's case files, re-sealed off the event loop for the
    /// next consultant (or why they could not be).
    Resealed {
        from: ConsultationId,
        to: OrgId,
        reason: &'static str,
        plan: Result<Box<Plan>, NodeError>,
    },
    /// A consultation's case files, re-sealed off the event loop for a
    /// counterpart that lost them (or why they could not be).
    HistoryResealed {
        id: ConsultationId,
        to: OrgId,
        plan: Result<Box<Plan>, NodeError>,
    },
    /// The envelopes a step of this consultation goes in, one per other
    /// participant, for sealing a conclusion's attachments off the event loop.
    StepPlans(
        ConsultationId,
        oneshot::Sender<Result<Vec<Plan>, NodeError>>,
    ),
    /// A step, with the envelopes its conclusion's attachments were sealed
    /// into (then the request carries none left to seal).
    Act(
        Box<ActRequest>,
        Vec<Plan>,
        oneshot::Sender<Result<WorkflowStatus, NodeError>>,
    ),
    Consultation(
        ConsultationId,
        oneshot::Sender<Result<ConsultationView, NodeError>>,
    ),
    Consultations(oneshot::Sender<Result<Vec<ConsultationId>, NodeError>>),
    ConsultationPage(
        Option<WorkflowStatus>,
        Option<ConsultationId>,
        usize,
        oneshot::Sender<Result<ConsultationPage, NodeError>>,
    ),
    Journal(oneshot::Sender<Result<JournalDump, NodeError>>),
    Record(
        Option<String>,
        Option<Role>,
        konsilium_protocol::journal::Action,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    KeepOwnCopy(
        ConsultationId,
        Box<EnvelopeHeader>,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    Inspect(
        Box<Inspect>,
        oneshot::Sender<Result<serde_json::Value, NodeError>>,
    ),
    Metrics(oneshot::Sender<String>),
    /// Revocation lists to put in force and publish.
    Revoke(
        Vec<RevocationNotice>,
        oneshot::Sender<Result<usize, NodeError>>,
    ),
    /// A reloaded configuration's directory profile and bootstrap list.
    Reload(Box<Profile>, Vec<Multiaddr>, oneshot::Sender<()>),
    /// Copy the node's state into a new directory.
    Backup(
        PathBuf,
        oneshot::Sender<Result<crate::storage::backup::Manifest, NodeError>>,
    ),
    /// Ask counterparts for lost consultation state; answered when the
    /// round finishes.
    Recover(
        Option<Timestamp>,
        Vec<OrgId>,
        oneshot::Sender<Result<crate::telemetry::report::RecoveryReport, NodeError>>,
    ),
    /// A new sealing key: the current one retires, the record is republished.
    RotateSealing(oneshot::Sender<Result<crate::telemetry::report::RotationReport, NodeError>>),
    /// Offer a video link to the consultation's other organization.
    OpenVideo(
        ConsultationId,
        Option<(String, Role)>,
        oneshot::Sender<Result<konsilium_protocol::video::SessionId, NodeError>>,
    ),
    /// A clinician's browser joins the session with its offer.
    JoinVideo(
        ConsultationId,
        (String, Role),
        String,
        oneshot::Sender<Result<(crate::media::SeatId, String), NodeError>>,
    ),
    /// A clinician's browser leaves.
    LeaveVideo(
        ConsultationId,
        crate::media::SeatId,
        (String, Role),
        oneshot::Sender<Result<(), NodeError>>,
    ),
    /// A data channel message or a media frame on a video link.
    VideoSend(
        konsilium_protocol::video::SessionId,
        OrgId,
        VideoPayload,
        oneshot::Sender<Result<bool, NodeError>>,
    ),
    /// Tell the session's frames from other sites as events.
    WatchVideo(
        konsilium_protocol::video::SessionId,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    /// Seal and queue a probe package to an organization.
    Probe(OrgId, oneshot::Sender<Result<Sent, NodeError>>),
    /// Open a probe link to an organization (`konsilium probe --video`).
    ProbeVideo(
        OrgId,
        oneshot::Sender<Result<konsilium_protocol::video::SessionId, NodeError>>,
    ),
    /// Close a probe link.
    CloseProbe(konsilium_protocol::video::SessionId, oneshot::Sender<()>),
    /// How we reach an organization now, if at all.
    Link(OrgId, oneshot::Sender<Option<String>>),
    Shutdown(oneshot::Sender<()>),
}

/// What goes out on a video link.
pub enum VideoPayload {
    Data(Vec<u8>),
    Frame(Vec<u8>),
}

pub(super) type JournalDump = (Vec<JournalEntry>, Vec<Signed<Checkpoint>>);

/// One workflow step a user takes.
pub struct ActRequest {
    pub consultation: ConsultationId,
    pub role: Role,
    pub user: String,
    pub action: WorkflowAction,
    /// Required with `Action::Conclude`: the node signs it and fills in its hash.
    pub conclusion: Option<ConclusionText>,
}

pub(super) type AttachmentKeys = (EnvelopeHeader, Keyring, Vec<SealingPublicKey>, BlobStore);
/// What opening a consultation's case files needs: the keys of the package
/// that holds them, and their descriptions in the same order.
pub(super) type CaseFileKeys = (AttachmentKeys, Vec<FileInfo>);
