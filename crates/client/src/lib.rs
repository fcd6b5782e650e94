//! A headless RDP client: connects, decodes to RGBA, sends keys and mouse, saves PNGs.
//!
//! Used by the integration tests, the benchmarks and `rdhost view`. As an attendee of a shared
//! desktop ([`ClientConfig::assistance`]) it speaks MS-RDPEMC on the `encomsp` channel, and
//! [`connect_over`] runs over a connection the sharer dialled (reverse connect). Built on IronRDP's
//! client crates (connector / session), with the bits tests need that those do not expose:
//! the numeric Set Error Info code, a pre-connection PDU, byte and frame counters, and which
//! codec the server chose. With [`ClientConfig::clipboard`] it joins `cliprdr`: it puts text
//! on the server's clipboard and pastes what the server announces. With [`ClientConfig::gfx`] it
//! offers the graphics pipeline (MS-RDPEGFX, H.264 AVC420 included) and decodes it into the same
//! framebuffer ([`Client::gfx_counters`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! let mut client = rdhost_client::connect(rdhost_client::ClientConfig::new(
//!     "127.0.0.1:3389".parse()?, "alice", "secret")).await?;
//! client.pump_until_idle(Duration::from_millis(500), Duration::from_secs(10)).await?;
//! client.type_text("echo hi\n").await?;
//! client.save_png(std::path::Path::new("screen.png"))?;
//! client.disconnect().await?;
//! # Ok(()) }
//! ```

mod client;
mod clipboard;
mod config;
mod connect;
mod encomsp;
pub mod errinfo;
mod error;
mod gfx;
pub mod keymap;
mod tls;
mod wire;

pub use client::{Button, Client, Pointer, PointerShape, Pumped, connect, connect_over};
pub use clipboard::ClipboardCounters;
pub use config::{Assistance, ClientConfig, Gfx, Security};
pub use encomsp::{EncomspCounters, ParticipantState};
pub use error::{ConnectError, SessionError};
pub use gfx::{GfxConfirmed, GfxCounters};
pub use wire::{Codec, PointerUpdate, preconnection_pdu};
