//! What a benchmark case is, and the matrices `espresso-lab bench` runs.

use dataplane::crypto::{Algorithm, Encryption, Integrity};
use serde::{Deserialize, Serialize};

/// Which way traffic crosses the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Plaintext in on the LAN side, ESP out on the WAN side.
    Encrypt,
    /// ESP in on the WAN side, plaintext out on the LAN side.
    Decrypt,
}

impl Direction {
    /// Both, encrypt first.
    pub const ALL: [Self; 2] = [Self::Encrypt, Self::Decrypt];

    /// `encrypt` or `decrypt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
        }
    }
}

/// The ESP suites the lab measures, named as strongSwan proposals name
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BenchAlgorithm {
    /// AES-GCM-16 with a 128-bit key.
    #[serde(rename = "aes128gcm16")]
    AesGcm128,
    /// AES-GCM-16 with a 256-bit key.
    #[serde(rename = "aes256gcm16")]
    AesGcm256,
    /// ChaCha20-Poly1305.
    #[serde(rename = "chacha20poly1305")]
    ChaCha20Poly1305,
    /// AES-CBC-128 with HMAC-SHA-256-128.
    #[serde(rename = "aes128-sha256")]
    AesCbc128HmacSha256,
}

impl BenchAlgorithm {
    /// Every suite, in table order.
    pub const ALL: [Self; 4] = [
        Self::AesGcm128,
        Self::AesGcm256,
        Self::ChaCha20Poly1305,
        Self::AesCbc128HmacSha256,
    ];

    /// The strongSwan-style name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesGcm128 => "aes128gcm16",
            Self::AesGcm256 => "aes256gcm16",
            Self::ChaCha20Poly1305 => "chacha20poly1305",
            Self::AesCbc128HmacSha256 => "aes128-sha256",
        }
    }

    /// The data plane's algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::AesGcm128 => Algorithm::AES_GCM_128,
            Self::AesGcm256 => Algorithm::AES_GCM_256,
            Self::ChaCha20Poly1305 => Algorithm::CHACHA20_POLY1305,
            Self::AesCbc128HmacSha256 => Algorithm {
                encryption: Encryption::AesCbc128,
                integrity: Integrity::HmacSha256_128,
            },
        }
    }
}

/// Frame sizes as RFC 2544 counts them: the Ethernet frame including its
/// 4-byte FCS. The pcap holds the frame without FCS (`size - 4` bytes) and
/// the IP packet inside is `size - 18` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameSize {
    /// Every frame this size.
    Fixed(u16),
    /// Simple IMIX: 64, 570 and 1518 bytes in the ratio 7:4:1.
    Imix,
}

/// The IMIX pattern in the order frames are laid out: 7 × 64, 4 × 570 and
/// 1 × 1518 bytes, interleaved so that bursts mix sizes.
pub const IMIX_PATTERN: [u16; 12] = [64, 570, 64, 1518, 64, 570, 64, 64, 570, 64, 570, 64];

impl FrameSize {
    /// The sizes the standard matrix sweeps.
    pub const SWEEP: [Self; 4] = [
        Self::Fixed(64),
        Self::Fixed(512),
        Self::Fixed(1420),
        Self::Imix,
    ];

    /// `64`, `512`, ..., `imix`.
    pub fn label(self) -> String {
        match self {
            Self::Fixed(n) => n.to_string(),
            Self::Imix => "imix".to_string(),
        }
    }

    /// The size (with FCS) of frame number `j` of a stream.
    pub fn size_of(self, j: usize) -> u16 {
        match self {
            Self::Fixed(n) => n,
            Self::Imix => IMIX_PATTERN[j % IMIX_PATTERN.len()],
        }
    }

    /// Frames per repetition of the size pattern.
    pub fn period(self) -> usize {
        match self {
            Self::Fixed(_) => 1,
            Self::Imix => IMIX_PATTERN.len(),
        }
    }

    /// Average IP packet length in bytes (frame size minus Ethernet header
    /// and FCS).
    pub fn mean_ip_len(self) -> f64 {
        let n = self.period();
        (0..n).map(|j| f64::from(self.size_of(j) - 18)).sum::<f64>() / n as f64
    }
}

/// One benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaseSpec {
    /// Encrypt or decrypt.
    pub direction: Direction,
    /// The ESP suite.
    pub algorithm: BenchAlgorithm,
    /// Frame size of the plaintext side.
    pub frame: FrameSize,
    /// ESP in UDP (RFC 3948, port 4500).
    pub udp_encap: bool,
    /// Number of SAs (and policies); traffic is spread over all of them.
    pub sa_count: u32,
    /// 0 for a pcap of the default length (one frame per SA, at least
    /// [`MIN_FRAMES`](super::traffic::MIN_FRAMES)); else the SA-count
    /// series' frame count: every case of the series, its 1-SA reference
    /// included, replays this many frames (rounded up to whole IMIX
    /// periods) of the same sizes, so the SA count is the only difference.
    #[serde(default)]
    pub scale_frames: u32,
}

impl CaseSpec {
    /// A short name, e.g. `encrypt aes128gcm16 64B 1SA`, with `udp`, or
    /// with ` 100000fr` for the SA-count series.
    pub fn name(&self) -> String {
        format!(
            "{} {} {}{} {}SA{}{}",
            self.direction.name(),
            self.algorithm.name(),
            self.frame.label(),
            if matches!(self.frame, FrameSize::Fixed(_)) {
                "B"
            } else {
                ""
            },
            self.sa_count,
            if self.udp_encap { " udp" } else { "" },
            if self.scale_frames != 0 {
                format!(" {}fr", self.scale_frames)
            } else {
                String::new()
            }
        )
    }
}

/// Frames of every pcap of the SA-count series: as many as the largest SA
/// count has SAs.
pub const SCALE_FRAMES: u32 = 100_000;

/// The standard matrix (`make bench`), chosen to fit about ten minutes on
/// two cores with three repetitions of every case and of its baseline:
/// - every suite, both directions, every frame size, 1 SA, plain ESP;
/// - every suite, both directions, IMIX, 1 SA, ESP in UDP;
/// - AES-128-GCM, both directions, IMIX, 1 / 1,000 / 10,000 / 100,000
///   SAs, every one of these on a pcap of [`SCALE_FRAMES`] frames.
pub fn standard_matrix() -> Vec<CaseSpec> {
    let mut cases = Vec::new();
    for direction in Direction::ALL {
        for algorithm in BenchAlgorithm::ALL {
            for frame in FrameSize::SWEEP {
                cases.push(CaseSpec {
                    direction,
                    algorithm,
                    frame,
                    udp_encap: false,
                    sa_count: 1,
                    scale_frames: 0,
                });
            }
        }
        for algorithm in BenchAlgorithm::ALL {
            cases.push(CaseSpec {
                direction,
                algorithm,
                frame: FrameSize::Imix,
                udp_encap: true,
                sa_count: 1,
                scale_frames: 0,
            });
        }
        for sa_count in [1, 1_000, 10_000, 100_000] {
            cases.push(CaseSpec {
                direction,
                algorithm: BenchAlgorithm::AesGcm128,
                frame: FrameSize::Imix,
                udp_encap: false,
                sa_count,
                scale_frames: SCALE_FRAMES,
            });
        }
    }
    cases
}

/// The quick matrix (`espresso-lab bench --quick`, run by `make test`): one
/// case per direction plus one with many SAs and UDP encapsulation.
pub fn quick_matrix() -> Vec<CaseSpec> {
    vec![
        CaseSpec {
            direction: Direction::Encrypt,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Fixed(64),
            udp_encap: false,
            sa_count: 1,
            scale_frames: 0,
        },
        CaseSpec {
            direction: Direction::Decrypt,
            algorithm: BenchAlgorithm::AesGcm128,
            frame: FrameSize::Imix,
            udp_encap: true,
            sa_count: 1,
            scale_frames: 0,
        },
        CaseSpec {
            direction: Direction::Encrypt,
            algorithm: BenchAlgorithm::AesCbc128HmacSha256,
            frame: FrameSize::Fixed(512),
            udp_encap: false,
            sa_count: 1_000,
            scale_frames: 0,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imix_is_seven_four_one() {
        let count = |n| IMIX_PATTERN.iter().filter(|&&s| s == n).count();
        assert_eq!((count(64), count(570), count(1518)), (7, 4, 1));
    }

    #[test]
    fn every_suite_is_a_valid_algorithm() {
        for a in BenchAlgorithm::ALL {
            a.algorithm().validate().unwrap();
        }
    }

    #[test]
    fn case_spec_round_trips_through_json() {
        for c in standard_matrix() {
            let s = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<CaseSpec>(&s).unwrap(), c);
        }
    }
}
