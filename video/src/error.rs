//! What goes wrong with a link or a browser's seat, as its owner is told.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("session description: {0}")]
    Description(String),
    #[error("{0}")]
    Setup(String),
    #[error("the link is not ready: {0}")]
    NotReady(&'static str),
    #[error("the link failed: {0}")]
    Failed(String),
}
