//! The interposed functions, one file per call family.

pub mod connect;
pub mod descriptors;
pub mod recv;
pub mod resolve;
pub mod send;
