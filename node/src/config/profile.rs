//! What the organization publishes about itself besides its certificate, as
//! configured: the body of its directory record.

use konsilium_protocol::calendar::WorkingCalendar;
use konsilium_protocol::cert::CertChain;
use konsilium_protocol::directory::{Consultant, DirectoryRecord, Service};
use konsilium_protocol::identity::SealingPublicKey;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Deadlines;
use libp2p::Multiaddr;

/// What the organization publishes about itself besides its certificate.
#[derive(Debug, Clone)]
pub struct Profile {
    pub calendar: WorkingCalendar,
    pub deadlines: Deadlines,
    pub services: Vec<Service>,
    pub consultants: Vec<Consultant>,
}

impl Profile {
    /// The record to sign: no availability slots yet, at most the allowed
    /// number of addresses.
    pub fn record(
        &self,
        chain: CertChain,
        sealing_key: SealingPublicKey,
        mut addresses: Vec<Multiaddr>,
        sequence: u64,
        issued_at: Timestamp,
    ) -> DirectoryRecord {
        addresses.truncate(konsilium_protocol::limits::MAX_ADDRESSES);
        DirectoryRecord {
            chain,
            sealing_key,
            consultants: self.consultants.clone(),
            services: self.services.clone(),
            calendar: self.calendar.clone(),
            deadlines: self.deadlines,
            slots: Vec::new(),
            addresses,
            sequence,
            issued_at,
        }
    }
}
