//! The detoured Winsock functions, one file per call family.

pub(crate) mod connect;
pub(crate) mod datagram;
pub(crate) mod ext;
pub(crate) mod names;
pub(crate) mod resolve;
