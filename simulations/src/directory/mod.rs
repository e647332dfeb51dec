//! Directory anti-entropy among many simulated nodes: the directory
//! machines alone, at sizes the whole-node model does not reach.

pub mod network;
pub mod scenarios;
