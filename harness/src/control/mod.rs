//! The control protocol (`docs/control-protocol.md`), host side.
//!
//! - [`frame`]: decoding the guest's bytes into frames, bounded and strict;
//! - [`client`]: requests with tags, replies matched to them, uevents and
//!   BUG reports collected as they arrive.

pub mod client;
pub mod frame;

pub use client::{Control, ControlError, PendingReply};
pub use frame::{Frame, ProtocolError, Uevent};
