//! famfs fmap messages: the map from a famfs file's offsets to devdax memory.
//!
//! A `no_std`, allocation-free, `unsafe`-free crate shared by the famfs kernel
//! module and user space. All the logic is in [`fmap`] (`src/fmap.rs`), which
//! refers to nothing outside itself but `core`, so that the kernel module
//! compiles the very same file with `#[path = "../fmap/src/fmap.rs"] mod fmap;`.
//! Everything in it is re-exported here.
//!
//! - [`Fmap::parse`] validates a message (the rules are listed in [`fmap`])
//!   and gives a borrowed view: header fields, [`Fmap::extents`],
//!   [`Fmap::resolve`] (file offset to device index, device offset and
//!   contiguous length) and [`Fmap::check_devices`].
//! - [`FmapBuilder`], [`encode_simple`] and [`encode_interleaved`] write a
//!   message into a caller's buffer; whatever they return `Ok` for parses.
//! - [`FmapError::errno`] gives the errno the kernel returns for each error.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod abi;
pub mod encode;
pub mod fmap;
pub use encode::*;
pub use fmap::*;

// The daxdev table of the ABI is what an fmap's device index points into: fmap.rs and abi.rs
// each name it (both are self-contained, for the kernel's `#[path]` includes), and this crate,
// which compiles both, holds them equal. User space takes the limits from here only.
const _: () = assert!(abi::MAX_DAXDEVS == fmap::MAX_DAXDEVS);
