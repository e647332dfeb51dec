//! Video sessions between real nodes on 127.0.0.1: links negotiated over
//! the sites' libp2p connection, opened by the workflow's appointment or by
//! hand, ended with the consultation, journaled; twenty at once; the
//! media path probed without a consultation; media through a TURN relay,
//! and an ICE restart when that relay is lost;
//! browsers joining through WHIP and the room page; several clinicians
//! at one site each reaching the other; both sites opening at once.
//! A binary of its own, so its
//! twenty concurrent handshakes do not share the machine with the
//! consultation tests' clocks.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::wait;
use konsilium_node::node::{self, NodeError, NodeEvent, NodeHandle};
use konsilium_protocol::journal::{Action as JournalAction, Role};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, ConsultationId, Status};
use std::time::Duration;
use tokio::sync::broadcast;

#[path = "../consultation/sites.rs"]
mod sites;
use sites::*;

mod browser;
mod consilium;
mod glare;
mod relay;
mod room;
mod sessions;
mod thin;
mod whip;
