//! Writing fmap messages: [`FmapBuilder`], [`encode_simple`] and
//! [`encode_interleaved`]. User space only: the kernel module compiles
//! `fmap.rs` (the decoder) and not this file.

use crate::fmap::*;

/// Parameters of one interleaved extent, for the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterleaveSpec<'s> {
    /// Bytes per chunk.
    pub chunk_size: u32,
    /// Bytes of the file this extent covers.
    pub nbytes: u64,
    /// The strips, in order.
    pub strips: &'s [SimpleExtent],
}

/// Writes a message into a caller's buffer, without allocating.
///
/// Add extents of the type given to [`new`](Self::new), then call
/// [`finish`](Self::finish), which validates the result with [`Fmap::parse`]:
/// whatever it returns `Ok` for parses back.
///
/// ```
/// use famfs_fmap::{ExtType, FileType, Fmap, FmapBuilder, SimpleExtent, ALIGN};
/// let mut buf = [0u8; 4096];
/// let mut b = FmapBuilder::new(&mut buf, FileType::Regular, ExtType::Simple, 3 << 20);
/// b.push_simple(SimpleExtent { devindex: 0, offset: 0, len: 2 * ALIGN })?;
/// let len = b.finish()?;
/// let fmap = Fmap::parse(&buf[..len])?;
/// assert_eq!(fmap.resolve(ALIGN + 5).map(|r| r.dev_offset), Some(ALIGN + 5));
/// # Ok::<(), famfs_fmap::FmapError>(())
/// ```
#[derive(Debug)]
pub struct FmapBuilder<'b> {
    buf: &'b mut [u8],
    header: FmapHeader,
    pos: usize,
    error: Option<FmapError>,
}

impl<'b> FmapBuilder<'b> {
    /// Starts a message of `ext_type` extents in `buf`.
    pub fn new(buf: &'b mut [u8], file_type: FileType, ext_type: ExtType, file_size: u64) -> Self {
        let header = FmapHeader {
            file_type,
            ext_type,
            nextents: 0,
            file_size,
        };
        FmapBuilder {
            buf,
            header,
            pos: HEADER_LEN,
            error: None,
        }
    }

    /// Appends a simple extent (message of [`ExtType::Simple`] only).
    pub fn push_simple(&mut self, e: SimpleExtent) -> Result<&mut Self, FmapError> {
        self.guard(ExtType::Simple, 0)?;
        let pos = self.pos;
        self.pos = self.put_simple(pos, e)?;
        self.header.nextents = self.header.nextents.saturating_add(1);
        Ok(self)
    }

    /// Appends an interleaved extent and its strips (message of
    /// [`ExtType::Interleaved`] only).
    pub fn push_interleaved(&mut self, spec: InterleaveSpec<'_>) -> Result<&mut Self, FmapError> {
        let nstrips = u32::try_from(spec.strips.len()).map_err(|_| FmapError::TooManyStrips)?;
        if nstrips == 0 {
            return Err(FmapError::NoStrips);
        }
        if nstrips > MAX_STRIPS {
            return Err(FmapError::TooManyStrips);
        }
        self.guard(ExtType::Interleaved, nstrips)?;
        let mut pos = self.pos;
        pos = self.put(pos, &nstrips.to_le_bytes())?;
        pos = self.put(pos, &spec.chunk_size.to_le_bytes())?;
        pos = self.put(pos, &spec.nbytes.to_le_bytes())?;
        pos = self.put(pos, &0u64.to_le_bytes())?;
        for strip in spec.strips {
            pos = self.put_simple(pos, *strip)?;
        }
        self.pos = pos;
        self.header.nextents = self.header.nextents.saturating_add(1);
        Ok(self)
    }

    /// Writes the header, validates the whole message and returns its length.
    pub fn finish(mut self) -> Result<usize, FmapError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let h = self.header;
        let mut at = 0;
        at = self.put(at, &[h.file_type.to_raw(), 0])?;
        at = self.put(at, &FMAP_VERSION.to_le_bytes())?;
        at = self.put(at, &h.ext_type.to_raw().to_le_bytes())?;
        at = self.put(at, &h.nextents.to_le_bytes())?;
        at = self.put(at, &0u32.to_le_bytes())?;
        at = self.put(at, &h.file_size.to_le_bytes())?;
        self.put(at, &0u64.to_le_bytes())?;
        let msg = self.buf.get(..self.pos).ok_or(FmapError::BufferTooSmall)?;
        Fmap::parse(msg).map(|_| self.pos)
    }

    /// Refuses an extent of the wrong type, one too many, or one that would
    /// take the message past a page; an error sticks until `finish`.
    fn guard(&mut self, ext_type: ExtType, nstrips: u32) -> Result<(), FmapError> {
        let result = if let Some(e) = self.error {
            Err(e)
        } else if ext_type != self.header.ext_type {
            Err(FmapError::BadExtType)
        } else if self.header.nextents >= MAX_EXTENTS {
            Err(FmapError::TooManyExtents)
        } else {
            let size = usize::try_from(nstrips)
                .ok()
                .and_then(|n| n.checked_add(1))
                .and_then(|n| n.checked_mul(EXTENT_LEN))
                .and_then(|n| n.checked_add(self.pos));
            match size {
                Some(end) if end <= MAX_MSG_LEN => Ok(()),
                _ => Err(FmapError::TooLarge),
            }
        };
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
        result
    }

    fn put_simple(&mut self, at: usize, e: SimpleExtent) -> Result<usize, FmapError> {
        let mut at = self.put(at, &e.devindex.to_le_bytes())?;
        at = self.put(at, &0u32.to_le_bytes())?;
        at = self.put(at, &e.offset.to_le_bytes())?;
        self.put(at, &e.len.to_le_bytes())
    }

    /// Copies `src` to `buf[at..]`, returning the position after it.
    fn put(&mut self, at: usize, src: &[u8]) -> Result<usize, FmapError> {
        let end = at.checked_add(src.len()).ok_or(FmapError::BufferTooSmall)?;
        let Some(dst) = self.buf.get_mut(at..end) else {
            self.error.get_or_insert(FmapError::BufferTooSmall);
            return Err(FmapError::BufferTooSmall);
        };
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
        Ok(end)
    }
}

/// Encodes a message of simple extents into `buf`; returns its length.
pub fn encode_simple(
    buf: &mut [u8],
    file_type: FileType,
    file_size: u64,
    extents: &[SimpleExtent],
) -> Result<usize, FmapError> {
    let mut b = FmapBuilder::new(buf, file_type, ExtType::Simple, file_size);
    for e in extents {
        b.push_simple(*e)?;
    }
    b.finish()
}

/// Encodes a message of interleaved extents into `buf`; returns its length.
pub fn encode_interleaved(
    buf: &mut [u8],
    file_type: FileType,
    file_size: u64,
    extents: &[InterleaveSpec<'_>],
) -> Result<usize, FmapError> {
    let mut b = FmapBuilder::new(buf, file_type, ExtType::Interleaved, file_size);
    for spec in extents {
        b.push_interleaved(*spec)?;
    }
    b.finish()
}
