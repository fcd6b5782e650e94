//! The pixel path from a desktop to its terminals.
//!
//! A desktop's [`Stage`] is where its terminals take their pixels: each terminal holds a
//! [`Feed`] for its [`FeedProfile`], and the stage encodes each change of the desktop's
//! [`Canvas`](rdhost_desktop::Canvas) once per profile with an [`Encoder`], shared by every
//! terminal with that profile. The encoder's output is complete fast-path update PDUs: they
//! carry no per-connection ids, so the same bytes can go to every terminal with the same profile.

mod encode;
mod fastpath;
mod gfx;
mod h264;
pub mod planar;
mod pointer;
mod rfx;
mod rfx_kernels;
mod stage;
mod tiles;

pub use encode::{CodecProfile, EncodeError, EncodedFrame, Encoder, default_pointer};
pub use fastpath::fastpath_updates;
pub use gfx::{GfxCommand, planar_command};
pub use h264::{AccessUnit, H264Encoder, Picture, bgrx_to_i420_bt709, yuv_to_rgb_bt709};
pub use pointer::{PointerLimits, cached_pointer, hidden_pointer, pointer_update};
pub use stage::{Feed, FeedProfile, ProfileStats, Stage, StageStats, Update};
