//! Video sessions between organizations, sans-I/O.
//!
//! A consilium's sites meet with no central media server: each
//! organization's node holds one WebRTC connection (a str0m `Rtc`, itself
//! sans-I/O) to each other site. What sets a connection up travels as
//! [`Signal`]s, signed by the organization that sends them, over the
//! authenticated channel between certified nodes; the DTLS fingerprint a
//! site will present is inside the description it signed, and str0m
//! refuses a handshake whose certificate does not match it. Nothing here
//! reads a clock, a socket or the system's randomness beyond what str0m's
//! DTLS needs: the caller passes time and datagrams in and takes datagrams,
//! signals and events out, as with the protocol crate's machines.
//!
//! Clinicians join from their browsers: each browser's connection is a
//! [`Seat`], answered from the browser's own offer (WHIP/WHEP). Frames
//! travel between seats and links as str0m reassembled them ([`Frame`]),
//! never decoded: every connection speaks VP8 and Opus.

mod connection;
mod error;
mod frame;
mod link;
mod seat;
mod simulcast;
mod stats;
pub mod stun;

pub use connection::{Datagram, Incoming, LocalAddrs, Prepared, Relayed};
pub use error::LinkError;
pub use frame::{Frame, Layer, Track};
pub use konsilium_protocol::video::{Description, SessionId, Signal, SignalError, accept};
pub use link::{Link, LinkEvent, LinkState, PER_SITE, RECONNECT_WAIT};
pub use seat::{CONNECT_WAIT, Seat, SeatEvent, Slot};
pub use simulcast::{
    AUDIO_ONLY_BELOW, FULL_RESUMES_AT, Forwarded, Quality, REDUCED_BELOW, VIDEO_RESUMES_AT,
};
pub use stats::{LinkStats, Route};
