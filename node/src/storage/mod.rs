//! What the node keeps on disk: the sled database, sealed attachment blobs,
//! the journal's anchor, and the private data directory that holds them.

pub mod anchor;
pub mod background_flush;
pub mod backup;
pub mod blobs;
pub mod datadir;
pub mod store;
pub mod writeback;
