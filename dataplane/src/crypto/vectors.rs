//! Known answers for the ESP transforms, each with its source, and the
//! tests that run them against every backend offering the algorithm.
//!
//! All values are lowercase hex. The ESP-level AES-GCM packets
//! ([`GCM_ESP`]) are also meant for the ESP engine's own tests.

/// An AEAD known answer: `nonce` = salt (4) || explicit IV (8); for the
/// ESP cases `aad` is SPI || seq (8 octets) or SPI || seq high || seq low
/// (12 octets, ESN) and `plaintext` is the ESP payload including padding,
/// pad length and next header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AeadVector {
    pub name: &'static str,
    pub key: &'static str,
    pub nonce: &'static str,
    pub aad: &'static str,
    pub plaintext: &'static str,
    pub ciphertext: &'static str,
    pub tag: &'static str,
}

/// AES-GCM test cases 3, 4 (AES-128) and 15, 16 (AES-256) from McGrew &
/// Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B. Not
/// ESP-shaped (empty or 20-octet AAD), so they run against the raw AEADs.
pub(crate) const GCM_SPEC: [AeadVector; 4] = [
    AeadVector {
        name: "GCM spec test case 3",
        key: "feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "",
        plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        ciphertext: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
    },
    AeadVector {
        name: "GCM spec test case 4",
        key: "feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        ciphertext: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        tag: "5bc94fbc3221a5db94fae95ae7121a47",
    },
    AeadVector {
        name: "GCM spec test case 15",
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "",
        plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        tag: "b094dac5d93471bdec1a502270e3cc6c",
    },
    AeadVector {
        name: "GCM spec test case 16",
        key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                    1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
];

/// ESP packets from draft-mcgrew-gcm-test-01 ("Test Cases for the use of
/// GCM and GMAC in IPsec ESP", March 2009) §4, the AES-GCM cases with
/// 128- and 256-bit keys in document order (the two 192-bit cases are left
/// out: ESP here offers no AES-192). The bytes were taken from a public
/// transcription of §4 and cross-checked against three other independent
/// transcriptions of the first and third cases; all agree. `key` is the
/// AES key without salt; the salt is `nonce[..4]`.
pub(crate) const GCM_ESP: [AeadVector; 12] = [
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, 12-octet AAD (ESN)",
        key: "4c80cdefbb5d10da906ac73c3613a634",
        nonce: "2e443b684956ed7e3b244cfe",
        aad: "000043218765432100000000",
        plaintext: "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000\
                    00000000045f736970045f756470037369700963796265726369747902646b00\
                    0021000101020201",
        ciphertext: "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34\
                     cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce\
                     61bc17d768fd9732",
        tag: "459018148f6cbe722fd04796562dfdb4",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, 8-octet AAD",
        key: "feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "0000a5f80000000a",
        plaintext: "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d00100\
                    0001000000000000037369700963796265726369747902646b00000100010001",
        ciphertext: "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c\
                     3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1",
        tag: "83b70d3aa8bc6ee4c309e9d85a41ad4a",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-256, 8-octet AAD",
        key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        nonce: "112233440102030405060708",
        aad: "4a2cbfe300000002",
        plaintext: "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000\
                    7002400020bf0000020405b40101040201020201",
        ciphertext: "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763\
                     748a637985771d347f0545659f14e99def842d8e",
        tag: "b335f4eecfdbf831824b4c4915956c96",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128 zero key, 8-octet AAD",
        key: "00000000000000000000000000000000",
        nonce: "000000000000000000000000",
        aad: "0000000000000001",
        plaintext: "4500003c99c500008001cb7a40679318010101010800075c0200440061626364\
                    65666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
        ciphertext: "4688daf2f973a392732909c331d56d60f694abaa414b5e7ff5fdcdfff5e9a284\
                     456476492719ffb64de7d9dca1e1d894bc3bd57873ed4d181d19d4d5c8c18af3",
        tag: "f821d496eeb096e98ad2b69e4799c71d",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, ESN, ICMP",
        key: "3de09874b388e6491988d0c3607eae1f",
        nonce: "57690e434e280000a2fca1a3",
        aad: "42f67e3f1010101010101010",
        plaintext: "4500003c99c300008001cb7c40679318010101010800085c0200430061626364\
                    65666768696a6b6c6d6e6f707172737475767761626364656667686901020201",
        ciphertext: "fba2caa4853cf9f0f22cb10d86dd83b0fec75691cf1a04b00d1138ec9c357917\
                     65acbd8701ad79845bf9fe3fba487bc91755e6662b4c8d0d1f5e22739530320a",
        tag: "e0d731cc978ecafaeae88f00e80d6e48",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, ESN, short packet",
        key: "3de09874b388e6491988d0c3607eae1f",
        nonce: "57690e434e280000a2fca1a3",
        aad: "42f67e3f1010101010101010",
        plaintext: "4500001c42a200008001441f406793b6e00000020a00f5ff01020201",
        ciphertext: "fba2ca845e5df9f0f22c3e6e86dd831e1fc65792cd1af9130e1379ed",
        tag: "369f071f35e034be95f112e4e7d05d35",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, ESN, UDP",
        key: "abbccddef00112233445566778899aab",
        nonce: "decaf888cafedebaceface74",
        aad: "000001000000000000000001",
        plaintext: "4500004933ba00007f119106c3fb1d10c2b1d326c02831ce0035dd7b800302d5\
                    00004e20001e8c18d75b81dc91baa0476b91b924b280389d92c963bac046ec95\
                    9b6266c04722b14923010101",
        ciphertext: "18a6fd42f72cbf4ab2a2ea901f73d814e3e7f243d95412e1c349c1d2fbec168f\
                     9190feebaf2cb01984e65863965d7472b79da345e0e780191f0d2f0e0f496c22\
                     6f2127b27db35724e7845d68",
        tag: "651f57e65f354f75ff17015769623436",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-256, ESN, TCP",
        key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        nonce: "73616c74616e640169766563",
        aad: "17405e67156f3126dd0db99b",
        plaintext: "45080028732c00004006e9f90a0106120a01038f06b88023dd6bafbecb712602\
                    50101f646d540001",
        ciphertext: "f2d69ecdbd5a0d5b8d5ef38bad4da58d1f278fde98ef67549d524a3018d9a57f\
                     f4d3a31ce673119e",
        tag: "451626c2415771e3b7eebca614c89b35",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, ESN, UDP 2",
        key: "3de09874b388e6491988d0c3607eae1f",
        nonce: "57690e434e280000a2fca1a3",
        aad: "42f67e3f1010101010101010",
        plaintext: "45000049333e00007f119182c3fb1d10c2b1d326c02831ce0035cb458003025b\
                    000001e0001e8c18d65759d52284a0352c71475c8880391c764d6e5ee0496b32\
                    5ae270c03899493915010101",
        ciphertext: "fba2cad12fc1f9f00d3cebf305410db83d7784b607323d220f24b0a97d541828\
                     00cadb0f68d99ef0e0c0c89ae9bea8884e52d65bc1afd0740f742444747b5b39\
                     ab533163aad4550ee5160975",
        tag: "cdb608c5769189609763b8e18caa81e2",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-256, ESN, text payload",
        key: "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        nonce: "73616c74616e640169766563",
        aad: "17405e67156f3126dd0db99b",
        plaintext: "636973636f0172756c657301746865016e6574776501646566696e6501746865\
                    746563686e6f6c6f67696573017468617477696c6c01646566696e65746f6d6f\
                    72726f7701020201",
        ciphertext: "d4b7ed86a1777f2ea13d6973d324c69e7b43f826fb56831226508bebd2dceb18\
                     d0a6df10e5487df074113e14c641024e3e6773d91a62ee429b043a10e3efe6b0\
                     12a49363412364f8",
        tag: "c0cac587f249e56b11e24f30e44ccc76",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-128, dummy packet (pad only)",
        key: "7d773d00c144c525ac619d18c84a3f47",
        nonce: "d966426743457e9182443bc6",
        aad: "335467aeffffffff",
        plaintext: "01020201",
        ciphertext: "437f866b",
        tag: "cb3f699fe9b0822bac961c4504bef270",
    },
    AeadVector {
        name: "draft-mcgrew-gcm-test-01 §4, AES-256, ESN, ICMP",
        key: "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961",
        nonce: "7475726e333021696765746d",
        aad: "796b6963ffffffffffffffff",
        plaintext: "45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364\
                    65666768696a6b6c6d6e6f707172737401020201",
        ciphertext: "f97ab2aa356d8edce17644ac8c78e25dd24dedbb29ebf1b64a274b39b49c3a86\
                     4cd3d78ca4ae68a32b42458fb57dbe821dcc63b9",
        tag: "d0937ba2945f669368661a329fb4c053",
    },
];

/// RFC 8439 §2.8.2 (AEAD_CHACHA20_POLY1305 example). Its 12-octet AAD
/// `50515253 c0c1c2c3 c4c5c6c7` happens to have the ESN shape, so it also
/// runs through the ESP transform with SPI 0x50515253, seq high
/// 0xc0c1c2c3, seq low 0xc4c5c6c7, salt 07000000, IV 4041424344454647.
pub(crate) const CHACHA_RFC8439: AeadVector = AeadVector {
    name: "RFC 8439 §2.8.2",
    key: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
    nonce: "070000004041424344454647",
    aad: "50515253c0c1c2c3c4c5c6c7",
    plaintext: "4c616469657320616e642047656e746c656d656e206f662074686520636c6173\
                73206f66202739393a204966204920636f756c64206f6666657220796f75206f\
                6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73\
                637265656e20776f756c642062652069742e",
    ciphertext: "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
                 3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
                 92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
                 3ff4def08e4b7a9de576d26586cec64b6116",
    tag: "1ae10b594f09e26a7e902ecbd0600691",
};

/// RFC 7634 Appendix A (ESP example): KEYMAT 80..9f || salt a0a1a2a3, IV
/// 1011121314151617, SPI 01020304, seq 5, an ICMP echo in tunnel mode.
/// Bytes cross-checked against three independent transcriptions.
pub(crate) const CHACHA_RFC7634_ESP: AeadVector = AeadVector {
    name: "RFC 7634 Appendix A",
    key: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
    nonce: "a0a1a2a31011121314151617",
    aad: "0102030400000005",
    plaintext: "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10\
                0007362708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223\
                2425262728292a2b2c2d2e2f303132333435363701020204",
    ciphertext: "24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6\
                 14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3\
                 cbec163fac469b502773f6fb94e664da9165b82829f641e0",
    tag: "76aaa8266b7fb0f7b11b369907e1ad43",
};

/// An AES-CBC known answer (no padding; lengths are block multiples).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CbcVector {
    pub name: &'static str,
    pub key: &'static str,
    pub iv: &'static str,
    pub plaintext: &'static str,
    pub ciphertext: &'static str,
}

/// RFC 3602 §4 cases #1–#4 (AES-128-CBC) and NIST SP 800-38A F.2.5
/// (CBC-AES256.Encrypt), since RFC 3602 has no AES-256 case.
pub(crate) const CBC: [CbcVector; 5] = [
    CbcVector {
        name: "RFC 3602 case #1",
        key: "06a9214036b8a15b512e03d534120006",
        iv: "3dafba429d9eb430b422da802c9fac41",
        // "Single block msg"
        plaintext: "53696e676c6520626c6f636b206d7367",
        ciphertext: "e353779c1079aeb82708942dbe77181a",
    },
    CbcVector {
        name: "RFC 3602 case #2",
        key: "c286696d887c9aa0611bbb3e2025a45a",
        iv: "562e17996d093d28ddb3ba695a2e6f58",
        plaintext: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ciphertext: "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
    },
    CbcVector {
        name: "RFC 3602 case #3",
        key: "6c3ea0477630ce21a2ce334aa746c2cd",
        iv: "c782dc4c098c66cbd9cd27d825682c81",
        // "This is a 48-byte message (exactly 3 AES blocks)"
        plaintext: "5468697320697320612034382d62797465206d657373616765202865786163746c7920332041455320626c6f636b7329",
        ciphertext: "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5\
                     021c19216bad525c8579695d83ba2684",
    },
    CbcVector {
        name: "RFC 3602 case #4",
        key: "56e47a38c5598974bc46903dba290349",
        iv: "8ce82eefbea0da3c44699ed7db51b7d9",
        plaintext: "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\
                    c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
        ciphertext: "c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e\
                     35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55",
    },
    CbcVector {
        name: "NIST SP 800-38A F.2.5",
        key: "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        iv: "000102030405060708090a0b0c0d0e0f",
        plaintext: "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
                    30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        ciphertext: "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
                     39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
    },
];

/// An HMAC known answer: the full MAC; ESP uses its first half.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HmacVector {
    pub name: &'static str,
    pub integrity: super::Integrity,
    pub key: &'static str,
    pub data: &'static str,
    pub mac: &'static str,
}

/// RFC 4868 §2.7.2 AUTH256-1/AUTH384-1/AUTH512-1 (key 0x0b repeated to
/// the ESP key length, data "Hi There"; the ICV is the first half) and
/// RFC 4231 §4.3 test case 2 (key "Jefe", full MAC).
pub(crate) const HMAC: [HmacVector; 6] = {
    use super::Integrity as I;
    [
        HmacVector {
            name: "RFC 4868 AUTH256-1",
            integrity: I::HmacSha256_128,
            key: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            data: "4869205468657265",
            mac: "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7",
        },
        HmacVector {
            name: "RFC 4868 AUTH384-1",
            integrity: I::HmacSha384_192,
            key: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b\
                  0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            data: "4869205468657265",
            mac: "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee9737a959796489bddbc\
                  4c5df61d5b3297b4fb68dab9f1b582c2",
        },
        HmacVector {
            name: "RFC 4868 AUTH512-1",
            integrity: I::HmacSha512_256,
            key: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b\
                  0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            data: "4869205468657265",
            mac: "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8\
                  ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b",
        },
        HmacVector {
            name: "RFC 4231 test case 2 (SHA-256)",
            integrity: I::HmacSha256_128,
            key: "4a656665",
            data: "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        },
        HmacVector {
            name: "RFC 4231 test case 2 (SHA-384)",
            integrity: I::HmacSha384_192,
            key: "4a656665",
            data: "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            mac: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                  8e2240ca5e69e2c78b3239ecfab21649",
        },
        HmacVector {
            name: "RFC 4231 test case 2 (SHA-512)",
            integrity: I::HmacSha512_256,
            key: "4a656665",
            data: "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
            mac: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                  9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        },
    ]
};

#[cfg(test)]
mod tests {
    use super::super::transform::{AeadPrimitive, CbcPrimitive, MacPrimitive};
    use super::super::{
        aws_lc, ipsec_mb, new_transform, rust_crypto, Algorithm, Backend, CryptoError, Encryption,
        Integrity, SaKeys,
    };
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("vector hex")
    }

    fn aeads(enc: Encryption, key: &[u8]) -> Vec<(Backend, Box<dyn AeadPrimitive>)> {
        {
            #[allow(unused_mut)]
            let mut v: Vec<(Backend, Box<dyn AeadPrimitive>)> = vec![
                (
                    Backend::AwsLc,
                    Box::new(aws_lc::AeadCipher::new(enc, key).unwrap()),
                ),
                (
                    Backend::RustCrypto,
                    Box::new(rust_crypto::AeadCipher::new(enc, key).unwrap()),
                ),
            ];
            #[cfg(have_ipsec_mb)]
            v.insert(
                0,
                (
                    Backend::IpsecMb,
                    Box::new(ipsec_mb::AeadCipher::new(enc, key).unwrap()),
                ),
            );
            v
        }
    }

    fn gcm_for(key: &[u8]) -> Encryption {
        match key.len() {
            16 => Encryption::AesGcm16_128,
            32 => Encryption::AesGcm16_256,
            n => panic!("no AES-GCM with a {n}-byte key"),
        }
    }

    /// Runs a vector through each backend's raw AEAD: seal gives the
    /// ciphertext and tag, open gives the plaintext back.
    fn check_raw_aead(v: &AeadVector, enc: Encryption) {
        let nonce: [u8; 12] = h(v.nonce).try_into().unwrap();
        for (backend, aead) in aeads(enc, &h(v.key)) {
            let mut buf = h(v.plaintext);
            let mut tag = [0u8; 16];
            aead.seal(&nonce, &h(v.aad), &mut buf, &mut tag).unwrap();
            assert_eq!(hex::encode(&buf), v.ciphertext, "{} on {backend}", v.name);
            assert_eq!(hex::encode(tag), v.tag, "{} on {backend}", v.name);
            aead.open(&nonce, &h(v.aad), &mut buf, &tag).unwrap();
            assert_eq!(hex::encode(&buf), v.plaintext, "{} on {backend}", v.name);
        }
    }

    /// Runs an ESP-shaped vector through `new_transform` on every backend.
    fn check_esp_aead(v: &AeadVector, alg: Algorithm) {
        let nonce = h(v.nonce);
        let mut enc_key = h(v.key);
        enc_key.extend_from_slice(&nonce[..4]);
        let keys = SaKeys::new(&enc_key, &[]);
        let aad = h(v.aad);
        let (header, esn_high): ([u8; 8], Option<u32>) = match aad.len() {
            8 => (aad[..].try_into().unwrap(), None),
            12 => {
                let mut hdr = [0u8; 8];
                hdr[..4].copy_from_slice(&aad[..4]);
                hdr[4..].copy_from_slice(&aad[8..]);
                (hdr, Some(u32::from_be_bytes(aad[4..8].try_into().unwrap())))
            }
            n => panic!("{}: {n}-octet AAD is not ESP", v.name),
        };
        let iv = &nonce[4..];
        for backend in super::super::built_backends() {
            let mut t = new_transform(backend, alg, &keys).unwrap();
            let mut payload = h(v.plaintext);
            let mut icv = [0u8; 16];
            t.seal(&header, esn_high, iv, &mut payload, &mut icv)
                .unwrap();
            assert_eq!(
                hex::encode(&payload),
                v.ciphertext,
                "{} on {backend}",
                v.name
            );
            assert_eq!(hex::encode(icv), v.tag, "{} on {backend}", v.name);
            t.open(&header, esn_high, iv, &mut payload, &icv).unwrap();
            assert_eq!(
                hex::encode(&payload),
                v.plaintext,
                "{} on {backend}",
                v.name
            );
            icv[0] ^= 1;
            assert_eq!(
                t.open(&header, esn_high, iv, &mut h(v.ciphertext), &icv),
                Err(CryptoError::AuthenticationFailed)
            );
        }
    }

    #[test]
    fn gcm_spec_test_cases() {
        for v in &GCM_SPEC {
            check_raw_aead(v, gcm_for(&h(v.key)));
        }
    }

    #[test]
    fn gcm_esp_packets_raw_and_through_the_transform() {
        for v in &GCM_ESP {
            let enc = gcm_for(&h(v.key));
            check_raw_aead(v, enc);
            check_esp_aead(
                v,
                Algorithm {
                    encryption: enc,
                    integrity: Integrity::None,
                },
            );
        }
    }

    #[test]
    fn chacha20_poly1305_rfc8439_and_rfc7634() {
        for v in [&CHACHA_RFC8439, &CHACHA_RFC7634_ESP] {
            check_raw_aead(v, Encryption::ChaCha20Poly1305);
            check_esp_aead(v, Algorithm::CHACHA20_POLY1305);
        }
    }

    fn cbcs(key: &[u8]) -> Vec<(Backend, Box<dyn CbcPrimitive>)> {
        {
            // ipsec-mb has no CBC primitive of its own: its CBC runs in
            // `CryptoBatch` jobs, checked against these vectors through the
            // transform below.
            let v: Vec<(Backend, Box<dyn CbcPrimitive>)> = vec![
                (
                    Backend::AwsLc,
                    Box::new(aws_lc::CbcCipher::new(key).unwrap()),
                ),
                (
                    Backend::RustCrypto,
                    Box::new(rust_crypto::CbcCipher::new(key).unwrap()),
                ),
            ];
            v
        }
    }

    #[test]
    fn aes_cbc_rfc3602_and_sp800_38a() {
        for v in &CBC {
            let iv: [u8; 16] = h(v.iv).try_into().unwrap();
            for (backend, cbc) in cbcs(&h(v.key)) {
                let mut buf = h(v.plaintext);
                cbc.encrypt(&iv, &mut buf).unwrap();
                assert_eq!(hex::encode(&buf), v.ciphertext, "{} on {backend}", v.name);
                cbc.decrypt(&iv, &mut buf).unwrap();
                assert_eq!(hex::encode(&buf), v.plaintext, "{} on {backend}", v.name);
            }
        }
    }

    #[test]
    fn aes_cbc_vectors_through_the_transform() {
        // The ciphertext part of an ESP CBC packet is plain CBC under the
        // packet's IV; the ICV is covered by the HMAC vectors and the
        // cross-backend properties.
        for v in &CBC {
            let key = h(v.key);
            let encryption = if key.len() == 16 {
                Encryption::AesCbc128
            } else {
                Encryption::AesCbc256
            };
            let alg = Algorithm {
                encryption,
                integrity: Integrity::HmacSha256_128,
            };
            let keys = SaKeys::new(&key, &[0x55; 32]);
            for backend in super::super::built_backends() {
                let mut t = new_transform(backend, alg, &keys).unwrap();
                let mut payload = h(v.plaintext);
                let mut icv = [0u8; 16];
                let hdr = [1, 2, 3, 4, 0, 0, 0, 1];
                t.seal(&hdr, None, &h(v.iv), &mut payload, &mut icv)
                    .unwrap();
                assert_eq!(
                    hex::encode(&payload),
                    v.ciphertext,
                    "{} on {backend}",
                    v.name
                );
                t.open(&hdr, None, &h(v.iv), &mut payload, &icv).unwrap();
                assert_eq!(
                    hex::encode(&payload),
                    v.plaintext,
                    "{} on {backend}",
                    v.name
                );
            }
        }
    }

    fn macs(integrity: Integrity, key: &[u8]) -> Vec<(Backend, Box<dyn MacPrimitive>)> {
        {
            // ipsec-mb's HMAC runs in `CryptoBatch` jobs: see
            // `hmac_vectors_through_null_encryption`.
            let v: Vec<(Backend, Box<dyn MacPrimitive>)> = vec![
                (
                    Backend::AwsLc,
                    Box::new(aws_lc::Hmac::new(integrity, key).unwrap()),
                ),
                (
                    Backend::RustCrypto,
                    Box::new(rust_crypto::Hmac::new(integrity, key).unwrap()),
                ),
            ];
            v
        }
    }

    #[test]
    fn hmac_full_and_truncated() {
        for v in &HMAC {
            let full = h(v.mac);
            let data = h(v.data);
            for (backend, mac) in macs(v.integrity, &h(v.key)) {
                for len in [full.len(), v.integrity.icv_len()] {
                    let mut out = vec![0u8; len];
                    // Split the data to exercise the piece-wise input.
                    let (a, b) = data.split_at(data.len() / 2);
                    mac.sign(&[a, b], &mut out).unwrap();
                    assert_eq!(out, full[..len], "{} ({len} bytes) on {backend}", v.name);
                }
            }
        }
    }

    /// Every HMAC vector with an ESP-sized key (RFC 4868 §2.1.1) and at
    /// least 8 octets of data through ENCR_NULL on every backend, one
    /// packet at a time and in a batch: the first 8 octets stand for the
    /// ESP header, the rest for the payload, and the ICV is the truncated
    /// MAC.
    #[test]
    fn hmac_vectors_through_null_encryption() {
        let esp_sized =
            |v: &&HmacVector| v.data.len() >= 16 && v.key.len() == 2 * v.integrity.key_len();
        let tested = HMAC.iter().filter(esp_sized).count();
        assert!(tested >= 3, "{tested} vectors");
        for v in HMAC.iter().filter(esp_sized) {
            let data = h(v.data);
            let alg = Algorithm {
                encryption: Encryption::Null,
                integrity: v.integrity,
            };
            let keys = SaKeys::new(&[], &h(v.key));
            let want = &h(v.mac)[..v.integrity.icv_len()];
            let hdr: [u8; 8] = data[..8].try_into().unwrap();
            for backend in super::super::built_backends() {
                let mut t = new_transform(backend, alg, &keys).unwrap();
                let mut payload = data[8..].to_vec();
                let mut icv = vec![0u8; t.icv_len()];
                t.seal(&hdr, None, &[], &mut payload, &mut icv).unwrap();
                assert_eq!(icv, want, "{} on {backend}", v.name);
                t.open(&hdr, None, &[], &mut payload, &icv).unwrap();
                if let Some(keys) = t.batch_keys() {
                    let mut store = crate::crypto::BatchStore::default();
                    let mut sealed = data.clone();
                    sealed.extend_from_slice(&vec![0; icv.len()]);
                    let mut opened = sealed.clone();
                    let n = opened.len();
                    opened[n - icv.len()..].copy_from_slice(want);
                    let mut batch = store.batch();
                    let a = batch.seal(keys, &mut sealed, None).unwrap();
                    let b = batch.open(keys, &mut opened, None).unwrap();
                    batch.run();
                    assert_eq!((batch.result(a), batch.result(b)), (Ok(()), Ok(())));
                    drop(batch);
                    assert_eq!(&sealed[data.len()..], want, "{} batched", v.name);
                }
            }
        }
    }

    #[test]
    fn rfc4868_icvs_through_null_encryption() {
        // With ENCR_NULL the ICV input is just esp_header || payload, and
        // "Hi There" is exactly 8 octets: header = data, empty payload.
        for v in HMAC.iter().filter(|v| v.name.starts_with("RFC 4868")) {
            let alg = Algorithm {
                encryption: Encryption::Null,
                integrity: v.integrity,
            };
            let keys = SaKeys::new(&[], &h(v.key));
            let hdr: [u8; 8] = h(v.data).try_into().unwrap();
            let want = &h(v.mac)[..v.integrity.icv_len()];
            for backend in super::super::built_backends() {
                let mut t = new_transform(backend, alg, &keys).unwrap();
                let mut icv = vec![0u8; t.icv_len()];
                t.seal(&hdr, None, &[], &mut [], &mut icv).unwrap();
                assert_eq!(icv, want, "{} on {backend}", v.name);
                t.open(&hdr, None, &[], &mut [], &icv).unwrap();
            }
        }
    }
}
