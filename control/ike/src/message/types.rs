//! IANA code points used by IKEv2 (RFC 7296 §3 and the IKEv2 registry).

use super::codec::codepoint;

codepoint! {
    /// Next Payload values, RFC 7296 §3.2.
    PayloadType(u8) {
        NONE = 0,
        SA = 33,
        KE = 34,
        IDI = 35,
        IDR = 36,
        CERT = 37,
        CERTREQ = 38,
        AUTH = 39,
        NONCE = 40,
        NOTIFY = 41,
        DELETE = 42,
        VENDOR_ID = 43,
        TSI = 44,
        TSR = 45,
        SK = 46,
        CP = 47,
        EAP = 48,
        /// Encrypted Fragment, RFC 7383 §2.5.
        SKF = 53,
    }
}

codepoint! {
    /// Exchange Type, RFC 7296 §3.1.
    ExchangeType(u8) {
        IKE_SA_INIT = 34,
        IKE_AUTH = 35,
        CREATE_CHILD_SA = 36,
        INFORMATIONAL = 37,
    }
}

codepoint! {
    /// Protocol ID in proposals, notifies and deletes, RFC 7296 §3.3.1.
    ProtocolId(u8) {
        NONE = 0,
        IKE = 1,
        AH = 2,
        ESP = 3,
    }
}

codepoint! {
    /// Transform Type, RFC 7296 §3.3.2.
    TransformType(u8) {
        ENCR = 1,
        PRF = 2,
        INTEG = 3,
        DH = 4,
        ESN = 5,
    }
}

codepoint! {
    /// Transform IDs for ENCR (type 1).
    EncrId(u16) {
        AES_CBC = 12,
        AES_GCM_8 = 18,
        AES_GCM_12 = 19,
        AES_GCM_16 = 20,
        CHACHA20_POLY1305 = 28,
    }
}

codepoint! {
    /// Transform IDs for PRF (type 2).
    PrfId(u16) {
        HMAC_SHA1 = 2,
        HMAC_SHA2_256 = 5,
        HMAC_SHA2_384 = 6,
        HMAC_SHA2_512 = 7,
    }
}

codepoint! {
    /// Transform IDs for INTEG (type 3).
    IntegId(u16) {
        NONE = 0,
        HMAC_SHA1_96 = 2,
        HMAC_SHA2_256_128 = 12,
        HMAC_SHA2_384_192 = 13,
        HMAC_SHA2_512_256 = 14,
    }
}

codepoint! {
    /// Key exchange (D-H) group numbers (type 4).
    DhGroupId(u16) {
        NONE = 0,
        MODP_2048 = 14,
        ECP_256 = 19,
        ECP_384 = 20,
        CURVE25519 = 31,
    }
}

codepoint! {
    /// Extended Sequence Numbers (type 5).
    EsnId(u16) {
        NO_ESN = 0,
        ESN = 1,
    }
}

codepoint! {
    /// Transform attribute types, RFC 7296 §3.3.5.
    AttributeType(u16) {
        KEY_LENGTH = 14,
    }
}

codepoint! {
    /// Authentication Method, RFC 7296 §3.8.
    AuthMethod(u8) {
        RSA_SIG = 1,
        SHARED_KEY_MIC = 2,
        DSS_SIG = 3,
        DIGITAL_SIGNATURE = 14,
    }
}

codepoint! {
    /// Identification types, RFC 7296 §3.5.
    IdType(u8) {
        IPV4_ADDR = 1,
        FQDN = 2,
        RFC822_ADDR = 3,
        IPV6_ADDR = 5,
        DER_ASN1_DN = 9,
        DER_ASN1_GN = 10,
        KEY_ID = 11,
    }
}

codepoint! {
    /// Traffic selector types, RFC 7296 §3.13.1.
    TsType(u8) {
        IPV4_ADDR_RANGE = 7,
        IPV6_ADDR_RANGE = 8,
    }
}
