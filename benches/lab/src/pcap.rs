//! A writer for the classic libpcap file format (the one DPDK's `net_pcap`
//! PMD reads): a 24-byte global header, then per frame a 16-byte record
//! header and the frame. Link type 1 (Ethernet), microsecond timestamps,
//! little-endian.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;
/// Frames longer than this are cut by readers; ours never are.
const SNAPLEN: u32 = 65535;

/// Writes frames to a pcap file.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    frames: u64,
}

impl PcapWriter<BufWriter<std::fs::File>> {
    /// Creates (or truncates) `path` and writes the global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::new(BufWriter::new(std::fs::File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(Self { out, frames: 0 })
    }

    /// Appends one Ethernet frame (without FCS). Timestamps count up one
    /// microsecond per frame; the replay ignores them.
    pub fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&l| l <= SNAPLEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
        let ts = self.frames;
        self.out
            .write_all(&((ts / 1_000_000) as u32).to_le_bytes())?;
        self.out
            .write_all(&((ts % 1_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(frame)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(&[0xaa; 60]).unwrap();
        w.write(&[0xbb; 64]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 60 + 16 + 64);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
        // First record: caplen and len 60.
        assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 60);
        assert_eq!(u32::from_le_bytes(bytes[36..40].try_into().unwrap()), 60);
        // Second record's microseconds: 1.
        let r2 = 24 + 16 + 60;
        assert_eq!(
            u32::from_le_bytes(bytes[r2 + 4..r2 + 8].try_into().unwrap()),
            1
        );
    }
}
