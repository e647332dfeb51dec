//! What the node tells its operators, filled in by the event loop: Prometheus
//! metrics and the reports behind the operator views.

pub mod metrics;
pub mod report;
