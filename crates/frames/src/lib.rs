//! The pixel path from a desktop to its terminals.
//!
//! A terminal subscribes to its session's [`Canvas`](rdhost_desktop::Canvas); when damage
//! arrives it takes a [`Frame`](rdhost_desktop::Frame) (coalesced, never queued) and hands it to
//! an [`Encoder`] for its [`CodecProfile`]. The encoder's output is complete fast-path update
//! PDUs: they carry no per-connection ids, so the same bytes can go to every terminal with the
//! same profile.

mod encode;
mod fastpath;
mod pointer;

pub use encode::{CodecProfile, EncodeError, EncodedFrame, Encoder, default_pointer};
pub use fastpath::fastpath_updates;
pub use pointer::{PointerLimits, cached_pointer, hidden_pointer, pointer_update};
