//! Just enough TCP (RFC 9293 §3.1) to clamp the MSS option (RFC 9293
//! §3.7.1, RFC 4459 §3.2) of SYN segments entering a tunnel, with an
//! incremental checksum fix (RFC 1624).
//!
//! ```text
//! |          Source Port          |       Destination Port        |
//! |                        Sequence Number                        |
//! |                    Acknowledgment Number                      |
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |           Checksum            |         Urgent Pointer        |
//! |                    Options                    |    Padding    |
//! ```

use core::net::{Ipv4Addr, Ipv6Addr};

use super::ip::checksum;
use super::{IpProtocol, WireError};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Option kinds (RFC 9293 §3.2).
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// The eight TCP flag bits of byte 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// CWR (RFC 3168).
    pub const CWR: u8 = 0x80;

    /// Whether all bits in `mask` are set.
    pub const fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// Whether SYN is set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header is present (`Truncated`), the data
    /// offset is at least 5 (`BadHeaderLen`) and the options fit
    /// (`Truncated`). The whole buffer is taken as the segment.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < Self::MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < Self::MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, range: core::ops::Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[range];
        u16::from_be_bytes([d[0], d[1]])
    }

    fn read_u32(&self, range: core::ops::Range<usize>) -> u32 {
        let d = &self.buffer.as_ref()[range];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Flag bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window.
    pub fn window(&self) -> u16 {
        self.read_u16(field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    /// The options bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::MIN_HEADER_LEN..usize::from(self.header_len())]
    }

    /// The segment data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Finds the MSS option: `Ok(Some((offset_in_segment, mss)))`.
    ///
    /// Walks the options per RFC 9293 §3.2: End of Option List stops, NOP is
    /// one byte, every other option has a length byte ≥ 2 that must fit
    /// (`BadOption` otherwise). An MSS option whose length is not 4 is
    /// `BadOption`.
    pub fn find_mss(&self) -> Result<Option<(usize, u16)>, WireError> {
        let opts = self.options();
        let mut i = 0;
        while let Some(&kind) = opts.get(i) {
            match kind {
                OPT_END => break,
                OPT_NOP => i += 1,
                _ => {
                    let len = usize::from(*opts.get(i + 1).ok_or(WireError::BadOption)?);
                    let opt = opts
                        .get(i..i + len)
                        .filter(|_| len >= 2)
                        .ok_or(WireError::BadOption)?;
                    if kind == OPT_MSS {
                        if len != 4 {
                            return Err(WireError::BadOption);
                        }
                        return Ok(Some((
                            Self::MIN_HEADER_LEN + i + 2,
                            u16::from_be_bytes([opt[2], opt[3]]),
                        )));
                    }
                    i += len;
                }
            }
        }
        Ok(None)
    }

    /// The MSS option value, if present.
    pub fn mss(&self) -> Result<Option<u16>, WireError> {
        Ok(self.find_mss()?.map(|(_, mss)| mss))
    }

    /// The checksum over the IPv4 pseudo-header.
    pub fn compute_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        self.compute_with(checksum::pseudo_header_v4(
            src,
            dst,
            IpProtocol::TCP,
            self.segment_len() as u16,
        ))
    }

    /// The checksum over the IPv6 pseudo-header.
    pub fn compute_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        self.compute_with(checksum::pseudo_header_v6(
            src,
            dst,
            IpProtocol::TCP,
            self.segment_len() as u32,
        ))
    }

    /// Whether the checksum verifies over IPv4.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let pseudo =
            checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, self.segment_len() as u16);
        checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())]) == 0xffff
    }

    /// Whether the checksum verifies over IPv6.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let pseudo =
            checksum::pseudo_header_v6(src, dst, IpProtocol::TCP, self.segment_len() as u32);
        checksum::combine(&[pseudo, checksum::data(self.buffer.as_ref())]) == 0xffff
    }

    fn segment_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    fn compute_with(&self, pseudo: u16) -> u16 {
        let d = self.buffer.as_ref();
        let before = checksum::data(&d[..field::CHECKSUM.start]);
        !checksum::combine(&[pseudo, before, checksum::data(&d[field::CHECKSUM.end..])])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes and stores the IPv4 checksum.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum_v4(src, dst);
        self.set_checksum(c);
    }

    /// Computes and stores the IPv6 checksum.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let c = self.compute_checksum_v6(src, dst);
        self.set_checksum(c);
    }

    /// Lowers the MSS option of a SYN (or SYN-ACK) segment to `max_mss` if it
    /// is larger, fixing the checksum incrementally so the pseudo-header is
    /// not needed.
    ///
    /// Returns `Ok(Some(old_mss))` if the option was rewritten, `Ok(None)` if
    /// the segment is not a SYN, has no MSS option or it is already small
    /// enough, and `BadOption` for malformed options. Works for an MSS
    /// option at any byte offset, even or odd.
    pub fn clamp_mss(&mut self, max_mss: u16) -> Result<Option<u16>, WireError> {
        if !self.flags().syn() {
            return Ok(None);
        }
        let Some((offset, mss)) = self.find_mss()? else {
            return Ok(None);
        };
        if mss <= max_mss {
            return Ok(None);
        }
        self.buffer.as_mut()[offset..offset + 2].copy_from_slice(&max_mss.to_be_bytes());
        let c = checksum::update_at(self.checksum(), offset, mss, max_mss);
        self.set_checksum(c);
        Ok(Some(mss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    /// SYN 192.168.1.2:40000 -> 192.168.1.1:443, options MSS 1460, SACK
    /// permitted, timestamps, NOP, window scale 7; checksum 0x2bbe verified
    /// with tshark.
    const SYN: &str =
        "9c4001bb0000000100000000a002faf02bbe0000020405b40402080a000000010000000001030307";

    #[test]
    fn parse_syn() {
        let bytes = hex::decode(SYN).unwrap();
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
        assert_eq!((p.seq_number(), p.ack_number()), (1, 0));
        assert_eq!(p.header_len(), 40);
        assert!(p.flags().syn() && !p.flags().contains(TcpFlags::ACK));
        assert_eq!(p.window(), 64240);
        assert_eq!(p.urgent(), 0);
        assert!(p.payload().is_empty());
        assert_eq!(p.options().len(), 20);
        assert_eq!(p.find_mss(), Ok(Some((22, 1460))));
        assert_eq!(p.compute_checksum_v4(SRC, DST), p.checksum());
        assert!(p.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn clamp_even_offset() {
        let mut bytes = hex::decode(SYN).unwrap();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.clamp_mss(1500), Ok(None));
        assert_eq!(p.clamp_mss(1360), Ok(Some(1460)));
        assert_eq!(p.mss(), Ok(Some(1360)));
        assert!(p.verify_checksum_v4(SRC, DST));
        assert_eq!(p.clamp_mss(1360), Ok(None));
    }

    #[test]
    fn clamp_odd_offset_and_v6() {
        // Options: NOP, MSS 8960, NOP, NOP, NOP -> MSS value at odd offset 23.
        let mut seg =
            hex::decode("9c4001bb000000010000000070020000000000000102042300010101").unwrap();
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
        assert_eq!(p.find_mss(), Ok(Some((23, 0x2300))));
        p.fill_checksum_v6(s, d);
        assert_eq!(p.clamp_mss(1220), Ok(Some(0x2300)));
        assert_eq!(p.mss(), Ok(Some(1220)));
        assert!(p.verify_checksum_v6(s, d));
    }

    #[test]
    fn not_syn_or_no_mss() {
        let mut bytes = hex::decode(SYN).unwrap();
        bytes[13] = TcpFlags::ACK;
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.clamp_mss(536), Ok(None));
        let mut bare = [0u8; 20];
        bare[12] = 0x50;
        bare[13] = TcpFlags::SYN;
        let mut p = TcpPacket::new_checked(&mut bare[..]).unwrap();
        assert_eq!(p.clamp_mss(536), Ok(None));
    }

    #[test]
    fn bad_options() {
        let mut seg = [0u8; 24];
        seg[12] = 0x60;
        seg[13] = TcpFlags::SYN;
        for (opts, want) in [
            ([2u8, 4, 5, 0xb4], Ok(Some(1460))),
            ([2, 3, 5, 0xb4], Err(WireError::BadOption)), // MSS length not 4
            ([8, 1, 0, 0], Err(WireError::BadOption)),    // length < 2
            ([1, 1, 1, 8], Err(WireError::BadOption)),    // no length byte
            ([1, 1, 8, 4], Err(WireError::BadOption)),    // runs past the end
            ([0, 2, 4, 5], Ok(None)),                     // after End of List
        ] {
            seg[20..24].copy_from_slice(&opts);
            let p = TcpPacket::new_checked(&seg[..]).unwrap();
            assert_eq!(p.mss(), want, "{opts:?}");
        }
    }

    #[test]
    fn length_errors() {
        let bytes = hex::decode(SYN).unwrap();
        for len in 0..40 {
            assert_eq!(
                TcpPacket::new_checked(&bytes[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
        }
        let mut b = bytes.clone();
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(WireError::BadHeaderLen));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), max in any::<u16>()) {
            if let Ok(mut p) = TcpPacket::new_checked(&mut bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.header_len());
                let _ = (p.flags(), p.window(), p.checksum(), p.urgent(), p.options(), p.payload());
                let _ = (p.find_mss(), p.verify_checksum_v4(SRC, DST), p.compute_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST));
                let _ = p.clamp_mss(max);
            }
        }

        #[test]
        fn clamp_keeps_checksum_valid(nops in 0usize..3, mss in any::<u16>(), max in any::<u16>(),
                                      payload in proptest::collection::vec(any::<u8>(), 0..30),
                                      src in any::<u32>(), dst in any::<u32>()) {
            // NOPs shift the MSS option to even or odd offsets.
            let mut opts = vec![1u8; nops];
            opts.extend_from_slice(&[2, 4]);
            opts.extend_from_slice(&mss.to_be_bytes());
            while opts.len() % 4 != 0 { opts.push(0); }
            let mut seg = vec![0u8; 20];
            seg[12] = (((20 + opts.len()) / 4) << 4) as u8;
            seg[13] = TcpFlags::SYN;
            seg.extend_from_slice(&opts);
            seg.extend_from_slice(&payload);
            let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
            p.fill_checksum_v4(src.into(), dst.into());
            let r = p.clamp_mss(max).unwrap();
            prop_assert_eq!(r, (mss > max).then_some(mss));
            prop_assert_eq!(p.mss().unwrap(), Some(mss.min(max)));
            prop_assert!(p.verify_checksum_v4(src.into(), dst.into()));
        }
    }
}
