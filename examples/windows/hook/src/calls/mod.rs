//! The detoured functions, one file per call family (`process.rs`: the process-creation ones).

pub(crate) mod connect;
pub(crate) mod datagram;
pub(crate) mod ext;
pub(crate) mod names;
pub(crate) mod process;
pub(crate) mod resolve;
