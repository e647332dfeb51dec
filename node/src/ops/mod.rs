//! Operator tooling around a node: the admin channel the CLI talks to, the
//! doctor's checks, and progress of long transfers.

pub mod admin;
pub mod doctor;
pub mod progress;
