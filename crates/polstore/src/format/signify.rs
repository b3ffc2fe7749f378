//! OpenBSD signify key and signature files (Ed25519).
//!
//! Reads and writes the files of `signify` (`signify-openbsd` on Debian), so that keys
//! and signatures made by either tool work with the other. Every file is exactly two
//! lines: `untrusted comment: <text>` and one line of standard base64 (with padding)
//! holding a binary blob:
//!
//! | file       | bytes | layout                                                             |
//! |------------|-------|--------------------------------------------------------------------|
//! | public key | 42    | `Ed`, keynum (8), public key (32)                                  |
//! | secret key | 104   | `Ed`, `BK`, kdfrounds (u32 BE), salt (16), checksum (8), keynum (8), seed (32) and public key (32) |
//! | signature  | 74    | `Ed`, keynum (8), signature (64) over the exact message bytes       |
//!
//! The checksum of a secret key is the first 8 bytes of the SHA-512 of its 64 secret
//! bytes. Only unencrypted secret keys (kdfrounds 0, as made by `signify -G -n`) are
//! supported. Parsing is strict: only `\n` line ends, nothing after the base64 line,
//! no weak or non-canonical public keys, and signatures are checked with
//! [`ed25519_dalek::VerifyingKey::verify_strict`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha512};

/// Any key or signature file larger than this is refused before parsing.
pub const KEY_FILE_BYTES_MAX: usize = 4096;

/// Size of signify's comment buffer, terminating NUL included: a comment holds at most
/// `COMMENT_BYTES_MAX - 1` bytes, the most that `signify` accepts when it reads a
/// secret key.
pub const COMMENT_BYTES_MAX: usize = 1024;

/// The text that starts every signify file.
pub const COMMENT_HEADER: &str = "untrusted comment: ";
/// Public-key algorithm tag: Ed25519.
const PUBLIC_KEY_ALGORITHM: [u8; 2] = *b"Ed";
/// Key-derivation algorithm tag: `bcrypt_pbkdf`.
const KDF_ALGORITHM: [u8; 2] = *b"BK";

const ALGORITHM_BYTES: usize = 2;
const KEYNUM_BYTES: usize = 8;
const PUBLIC_KEY_BYTES: usize = ed25519_dalek::PUBLIC_KEY_LENGTH;
const SEED_BYTES: usize = ed25519_dalek::SECRET_KEY_LENGTH;
const SECRET_BYTES: usize = ed25519_dalek::KEYPAIR_LENGTH;
const SIGNATURE_BYTES: usize = ed25519_dalek::SIGNATURE_LENGTH;
const KDF_ROUNDS_BYTES: usize = 4;
const SALT_BYTES: usize = 16;
const CHECKSUM_BYTES: usize = 8;

const PUBLIC_KEY_BLOB_BYTES: usize = ALGORITHM_BYTES + KEYNUM_BYTES + PUBLIC_KEY_BYTES;
const SECRET_KEY_BLOB_BYTES: usize = ALGORITHM_BYTES
    + ALGORITHM_BYTES
    + KDF_ROUNDS_BYTES
    + SALT_BYTES
    + CHECKSUM_BYTES
    + KEYNUM_BYTES
    + SECRET_BYTES;
const SIGNATURE_BLOB_BYTES: usize = ALGORITHM_BYTES + KEYNUM_BYTES + SIGNATURE_BYTES;

// Comments written by the `to_file_text` methods when the caller's comment is empty,
// as signify refuses files with an empty comment.
const DEFAULT_PUBLIC_KEY_COMMENT: &str = "signify public key";
const DEFAULT_SECRET_KEY_COMMENT: &str = "signify secret key";
const DEFAULT_SIGNATURE_COMMENT: &str = "signify signature";

/// Why a signify file was refused, or a signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignifyError {
    /// The file is larger than [`KEY_FILE_BYTES_MAX`].
    #[error("file too large: {size} bytes, the maximum is {maximum}")]
    FileTooLarge {
        /// Size of the refused file.
        size: usize,
        /// [`KEY_FILE_BYTES_MAX`].
        maximum: usize,
    },
    /// The file does not start with `untrusted comment: `.
    #[error("not a signify file: first line must start with 'untrusted comment: '")]
    NotSignifyFile,
    /// The file contains a carriage return (for example CRLF line ends).
    #[error("carriage return in file: only '\\n' line ends are accepted")]
    CarriageReturn,
    /// A line is not ended by a newline.
    #[error("missing newline after the {0}")]
    MissingNewline(&'static str),
    /// The comment is empty.
    #[error("empty comment")]
    EmptyComment,
    /// The comment is too long for signify.
    #[error("comment too long: {length} bytes, the maximum is {maximum}")]
    CommentTooLong {
        /// Length of the refused comment.
        length: usize,
        /// `COMMENT_BYTES_MAX - 1`.
        maximum: usize,
    },
    /// The comment contains control characters.
    #[error("control characters in comment")]
    ControlCharacterInComment,
    /// Something follows the base64 line.
    #[error("trailing data after the base64 line")]
    TrailingData,
    /// The second line is not valid standard base64 with padding.
    #[error("malformed base64")]
    MalformedBase64,
    /// The decoded blob does not have the size of the expected kind of file.
    #[error("wrong length for a signify {kind}: expected {expected} bytes, found {found}")]
    WrongLength {
        /// What was expected: "public key", "secret key" or "signature".
        kind: &'static str,
        /// Expected length of the blob.
        expected: usize,
        /// Length of the blob found.
        found: usize,
    },
    /// The signature algorithm is not Ed25519 (`Ed`).
    #[error("unsupported algorithm {0:?}: only Ed25519 ('Ed') is supported")]
    UnsupportedAlgorithm(String),
    /// The key-derivation algorithm of a secret key is not `BK`.
    #[error("unsupported key derivation algorithm {0:?}: only 'BK' is supported")]
    UnsupportedKdf(String),
    /// The secret key is encrypted with a passphrase.
    #[error(
        "encrypted secret keys are not supported: make the key without a passphrase ('signify-openbsd -G -n')"
    )]
    EncryptedSecretKey,
    /// The checksum of the secret key does not match its secret bytes.
    #[error("secret key checksum mismatch")]
    ChecksumMismatch,
    /// The public half of the secret key is not the key derived from its seed.
    #[error("secret key is inconsistent: its public half does not match its seed")]
    InconsistentSecretKey,
    /// The public key is not the encoding of a curve point.
    #[error("invalid public key: not a point on the curve")]
    InvalidPublicKey,
    /// The public key is a non-canonical encoding of a curve point.
    #[error("non-canonical public key encoding refused")]
    NonCanonicalPublicKey,
    /// The public key has small order, so it would verify forged signatures.
    #[error("weak (small-order) public key refused")]
    WeakPublicKey,
    /// No trusted key has the keynum of the signature.
    #[error("signature is by key {0} which is not trusted")]
    UntrustedKey(KeyNum),
    /// The trusted key with the signature's keynum does not verify it.
    #[error("signature does not verify with key {0}")]
    BadSignature(KeyNum),
    /// The system random number generator failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

/// The 8-byte key number that links a signature to the key that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyNum(pub [u8; KEYNUM_BYTES]);

impl fmt::Display for KeyNum {
    /// Writes the key number as 16 lower-case hexadecimal digits.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

impl KeyNum {
    /// Parses 16 lower-case hexadecimal digits, the form [`fmt::Display`] writes.
    pub fn from_hex(text: &str) -> Option<KeyNum> {
        if text.len() != 2 * KEYNUM_BYTES
            || !text
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut bytes = [0u8; KEYNUM_BYTES];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
        }
        Some(KeyNum(bytes))
    }
}

/// A signify Ed25519 public key, checked to be canonical and not weak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    keynum: KeyNum,
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Parses the text of a signify public key file (`signify -G -p`).
    pub fn parse(text: &[u8]) -> Result<PublicKey, SignifyError> {
        Self::from_blob(&decode_file(text, "public key", PUBLIC_KEY_BLOB_BYTES)?)
    }

    /// A public key's blob, of [`PUBLIC_KEY_BLOB_BYTES`].
    fn from_blob(blob: &[u8]) -> Result<PublicKey, SignifyError> {
        let mut reader = BlobReader::new(blob);
        check_algorithm(reader.take())?;
        let keynum = KeyNum(reader.take());
        let key = checked_verifying_key(&reader.take())?;
        Ok(PublicKey { keynum, key })
    }

    /// Returns the text of a signify public key file with this comment.
    ///
    /// Control characters in the comment become spaces, and a comment too long for
    /// signify is truncated; an empty comment is replaced by `signify public key`.
    pub fn to_file_text(&self, comment: &str) -> String {
        let mut blob = Vec::with_capacity(PUBLIC_KEY_BLOB_BYTES);
        blob.extend_from_slice(&PUBLIC_KEY_ALGORITHM);
        blob.extend_from_slice(&self.keynum.0);
        blob.extend_from_slice(self.key.as_bytes());
        encode_file(comment, DEFAULT_PUBLIC_KEY_COMMENT, &blob)
    }

    /// The key number, which signatures by this key carry.
    pub fn keynum(&self) -> &KeyNum {
        &self.keynum
    }

    /// The base64 line of its signify file: the one-line form a root file names it by.
    pub fn to_base64(&self) -> String {
        let mut blob = Vec::with_capacity(PUBLIC_KEY_BLOB_BYTES);
        blob.extend_from_slice(&PUBLIC_KEY_ALGORITHM);
        blob.extend_from_slice(&self.keynum.0);
        blob.extend_from_slice(self.key.as_bytes());
        BASE64.encode(blob)
    }

    /// Parses the base64 line of a signify public key file, with the checks of [`parse`].
    ///
    /// [`parse`]: PublicKey::parse
    pub fn from_base64(line: &str) -> Result<PublicKey, SignifyError> {
        if line.len() > KEY_FILE_BYTES_MAX {
            return Err(SignifyError::MalformedBase64);
        }
        let blob = BASE64
            .decode(line)
            .map_err(|_| SignifyError::MalformedBase64)?;
        if blob.len() != PUBLIC_KEY_BLOB_BYTES {
            return Err(SignifyError::WrongLength {
                kind: "public key",
                expected: PUBLIC_KEY_BLOB_BYTES,
                found: blob.len(),
            });
        }
        Self::from_blob(&blob)
    }

    /// Whether `signature` is this key's, over exactly `message` (`verify_strict`).
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        signature.keynum == self.keynum
            && self
                .key
                .verify_strict(message, &signature.signature)
                .is_ok()
    }

    /// The 32-byte Ed25519 public key.
    pub fn key_bytes(&self) -> [u8; PUBLIC_KEY_BYTES] {
        self.key.to_bytes()
    }
}

/// A signify Ed25519 secret key. Its key material is zeroed when dropped.
pub struct SecretKey {
    keynum: KeyNum,
    signing_key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SecretKey")
            .field("keynum", &self.keynum)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Makes a new key from the system random number generator.
    pub fn generate() -> Result<SecretKey, SignifyError> {
        let mut seed = [0u8; SEED_BYTES];
        let mut keynum = [0u8; KEYNUM_BYTES];
        fill_random(&mut seed)?;
        fill_random(&mut keynum)?;
        let signing_key = ed25519_dalek::SigningKey::from_bytes(&seed);
        wipe(&mut seed);
        Ok(SecretKey {
            keynum: KeyNum(keynum),
            signing_key,
        })
    }

    /// Parses the text of an unencrypted signify secret key file (`signify -G -n -s`).
    pub fn parse(text: &[u8]) -> Result<SecretKey, SignifyError> {
        let mut blob = decode_file(text, "secret key", SECRET_KEY_BLOB_BYTES)?;
        let result = Self::from_blob(&blob);
        wipe(&mut blob);
        result
    }

    fn from_blob(blob: &[u8]) -> Result<SecretKey, SignifyError> {
        let mut reader = BlobReader::new(blob);
        check_algorithm(reader.take())?;
        let kdf_algorithm: [u8; ALGORITHM_BYTES] = reader.take();
        if kdf_algorithm != KDF_ALGORITHM {
            return Err(SignifyError::UnsupportedKdf(
                String::from_utf8_lossy(&kdf_algorithm).into_owned(),
            ));
        }
        if u32::from_be_bytes(reader.take()) != 0 {
            return Err(SignifyError::EncryptedSecretKey);
        }
        // With zero rounds the salt is unused; signify still fills it with random bytes.
        let _salt: [u8; SALT_BYTES] = reader.take();
        let checksum: [u8; CHECKSUM_BYTES] = reader.take();
        let keynum = KeyNum(reader.take());
        let mut secret: [u8; SECRET_BYTES] = reader.take();
        let checksum_matches = secret_checksum(&secret) == checksum;
        // Checks that the public half is the key derived from the seed.
        let signing_key = ed25519_dalek::SigningKey::from_keypair_bytes(&secret);
        wipe(&mut secret);
        if !checksum_matches {
            return Err(SignifyError::ChecksumMismatch);
        }
        let signing_key = signing_key.map_err(|_| SignifyError::InconsistentSecretKey)?;
        Ok(SecretKey {
            keynum,
            signing_key,
        })
    }

    /// Returns the text of an unencrypted signify secret key file with this comment
    /// (kdfrounds 0, all-zero salt).
    ///
    /// Control characters in the comment become spaces, and a comment too long for
    /// signify is truncated; an empty comment is replaced by `signify secret key`.
    pub fn to_file_text(&self, comment: &str) -> String {
        let mut secret = self.signing_key.to_keypair_bytes();
        let mut blob = Vec::with_capacity(SECRET_KEY_BLOB_BYTES);
        blob.extend_from_slice(&PUBLIC_KEY_ALGORITHM);
        blob.extend_from_slice(&KDF_ALGORITHM);
        blob.extend_from_slice(&0u32.to_be_bytes());
        blob.extend_from_slice(&[0u8; SALT_BYTES]);
        blob.extend_from_slice(&secret_checksum(&secret));
        blob.extend_from_slice(&self.keynum.0);
        blob.extend_from_slice(&secret);
        let text = encode_file(comment, DEFAULT_SECRET_KEY_COMMENT, &blob);
        wipe(&mut secret);
        wipe(&mut blob);
        text
    }

    /// The public key of this secret key, with the same keynum.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            keynum: self.keynum,
            key: self.signing_key.verifying_key(),
        }
    }

    /// Signs the exact bytes of `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            keynum: self.keynum,
            signature: self.signing_key.sign(message),
        }
    }
}

/// A signify Ed25519 signature, as found in a detached `.sig` file.
#[derive(Clone, Debug)]
pub struct Signature {
    keynum: KeyNum,
    signature: ed25519_dalek::Signature,
}

impl Signature {
    /// Parses the text of a detached signify signature file (`signify -S -x`).
    ///
    /// Embedded signatures (`signify -S -e`), where the message follows the signature,
    /// are refused as trailing data.
    pub fn parse(text: &[u8]) -> Result<Signature, SignifyError> {
        let blob = decode_file(text, "signature", SIGNATURE_BLOB_BYTES)?;
        let mut reader = BlobReader::new(&blob);
        check_algorithm(reader.take())?;
        let keynum = KeyNum(reader.take());
        let signature = ed25519_dalek::Signature::from_bytes(&reader.take());
        Ok(Signature { keynum, signature })
    }

    /// Returns the text of a signify signature file with this comment.
    ///
    /// Control characters in the comment become spaces, and a comment too long for
    /// signify is truncated; an empty comment is replaced by `signify signature`.
    /// signify itself writes `verify with <name>.pub`.
    pub fn to_file_text(&self, comment: &str) -> String {
        let mut blob = Vec::with_capacity(SIGNATURE_BLOB_BYTES);
        blob.extend_from_slice(&PUBLIC_KEY_ALGORITHM);
        blob.extend_from_slice(&self.keynum.0);
        blob.extend_from_slice(&self.signature.to_bytes());
        encode_file(comment, DEFAULT_SIGNATURE_COMMENT, &blob)
    }

    /// The key number of the key that made this signature.
    pub fn keynum(&self) -> &KeyNum {
        &self.keynum
    }
}

/// Finds the trusted key whose keynum matches the signature's and verifies with `verify_strict`.
/// Returns the index into `trusted` of the key that verified.
pub fn verify(
    trusted: &[PublicKey],
    message: &[u8],
    signature: &Signature,
) -> Result<usize, SignifyError> {
    let mut candidates = trusted
        .iter()
        .enumerate()
        .filter(|(_, key)| key.keynum == signature.keynum)
        .peekable();
    if candidates.peek().is_none() {
        return Err(SignifyError::UntrustedKey(signature.keynum));
    }
    candidates
        .find(|(_, key)| key.key.verify_strict(message, &signature.signature).is_ok())
        .map(|(index, _)| index)
        .ok_or(SignifyError::BadSignature(signature.keynum))
}

/// Checks the size and two-line layout of a signify file and returns its decoded
/// blob, which is `expected_length` bytes long.
fn decode_file(
    text: &[u8],
    kind: &'static str,
    expected_length: usize,
) -> Result<Vec<u8>, SignifyError> {
    if text.len() > KEY_FILE_BYTES_MAX {
        return Err(SignifyError::FileTooLarge {
            size: text.len(),
            maximum: KEY_FILE_BYTES_MAX,
        });
    }
    let rest = text
        .strip_prefix(COMMENT_HEADER.as_bytes())
        .ok_or(SignifyError::NotSignifyFile)?;
    if rest.contains(&b'\r') {
        return Err(SignifyError::CarriageReturn);
    }
    let (comment, rest) = split_line(rest).ok_or(SignifyError::MissingNewline("comment"))?;
    check_comment(comment)?;
    let (base64_line, rest) =
        split_line(rest).ok_or(SignifyError::MissingNewline("base64 line"))?;
    if !rest.is_empty() {
        return Err(SignifyError::TrailingData);
    }
    let blob = BASE64
        .decode(base64_line)
        .map_err(|_| SignifyError::MalformedBase64)?;
    if blob.len() != expected_length {
        return Err(SignifyError::WrongLength {
            kind,
            expected: expected_length,
            found: blob.len(),
        });
    }
    Ok(blob)
}

/// Splits `text` after its first newline into the line (without the newline) and the rest.
fn split_line(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let newline = text.iter().position(|&byte| byte == b'\n')?;
    Some((&text[..newline], &text[newline + 1..]))
}

/// Refuses comments that signify would refuse, and control characters.
fn check_comment(comment: &[u8]) -> Result<(), SignifyError> {
    if comment.is_empty() {
        return Err(SignifyError::EmptyComment);
    }
    if comment.len() >= COMMENT_BYTES_MAX {
        return Err(SignifyError::CommentTooLong {
            length: comment.len(),
            maximum: COMMENT_BYTES_MAX - 1,
        });
    }
    if comment.iter().any(u8::is_ascii_control) {
        return Err(SignifyError::ControlCharacterInComment);
    }
    Ok(())
}

/// Returns the file text for `blob`, with `comment` made safe for one line.
fn encode_file(comment: &str, default_comment: &str, blob: &[u8]) -> String {
    let comment = sanitize_comment(comment, default_comment);
    format!("{COMMENT_HEADER}{comment}\n{}\n", BASE64.encode(blob))
}

/// Replaces control characters by spaces and truncates to fit signify's comment
/// buffer, on a character boundary; an empty comment becomes `default_comment`.
fn sanitize_comment(comment: &str, default_comment: &str) -> String {
    let mut sanitized = String::with_capacity(comment.len().min(COMMENT_BYTES_MAX));
    for character in comment.chars() {
        let character = if character.is_control() {
            ' '
        } else {
            character
        };
        if sanitized.len() + character.len_utf8() >= COMMENT_BYTES_MAX {
            break;
        }
        sanitized.push(character);
    }
    if sanitized.is_empty() {
        default_comment.to_owned()
    } else {
        sanitized
    }
}

fn check_algorithm(algorithm: [u8; ALGORITHM_BYTES]) -> Result<(), SignifyError> {
    if algorithm == PUBLIC_KEY_ALGORITHM {
        Ok(())
    } else {
        Err(SignifyError::UnsupportedAlgorithm(
            String::from_utf8_lossy(&algorithm).into_owned(),
        ))
    }
}

/// Decodes a public key, refusing invalid, non-canonical and small-order points.
fn checked_verifying_key(
    bytes: &[u8; PUBLIC_KEY_BYTES],
) -> Result<ed25519_dalek::VerifyingKey, SignifyError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
        .map_err(|_| SignifyError::InvalidPublicKey)?;
    if key.to_edwards().compress().as_bytes() != bytes {
        return Err(SignifyError::NonCanonicalPublicKey);
    }
    if key.is_weak() {
        return Err(SignifyError::WeakPublicKey);
    }
    Ok(key)
}

/// The first 8 bytes of the SHA-512 of the 64 secret bytes, as signify computes it.
fn secret_checksum(secret: &[u8; SECRET_BYTES]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha512::digest(secret);
    let mut checksum = [0u8; CHECKSUM_BYTES];
    checksum.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    checksum
}

fn fill_random(buffer: &mut [u8]) -> Result<(), SignifyError> {
    getrandom::fill(buffer).map_err(|error| SignifyError::Random(error.to_string()))
}

/// Overwrites secret bytes with zeros (best effort, without a zeroize crate).
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// Reads fixed-size fields, in order, from a blob whose length was already checked.
struct BlobReader<'blob> {
    remaining: &'blob [u8],
}

impl<'blob> BlobReader<'blob> {
    fn new(blob: &'blob [u8]) -> Self {
        BlobReader { remaining: blob }
    }

    /// Takes the next `N` bytes. The caller checked the blob's length against the
    /// sum of its field sizes, so running short is a bug in this module.
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (field, rest) = self
            .remaining
            .split_first_chunk::<N>()
            .expect("blob length was checked against its layout");
        self.remaining = rest;
        *field
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"policy bundle contents\n";

    // Test vectors, made once with signify-openbsd and `polstore keygen` (test keys, trusted
    // nowhere); tests/interop.rs in polstore-cli runs the real signify-openbsd.

    /// `signify-openbsd -G -n -p key.pub -s key.sec`: a key pair signify made.
    const SIGNIFY_PUBLIC_KEY: &str = "untrusted comment: signify public key\n\
        RWQ6NR/tVJjeYfGwyoMvQ9OVWOXUIBi4JTD5xMH9rkYZgbpnPqftdbE8\n";
    const SIGNIFY_SECRET_KEY: &str = "untrusted comment: signify secret key\n\
        RWRCSwAAAAAaPzht3S10j8ngQkBQ6o6l0ZlcdDQwAzc6NR/tVJjeYfv+FATQd8v6GISn9fwwBbktI2qx\
        WUhQ6pVzZ0Wzna4n8bDKgy9D05VY5dQgGLglMPnEwf2uRhmBumc+p+11sTw=\n";
    /// The key number of that key pair.
    const SIGNIFY_KEYNUM: &str = "3a351fed5498de61";
    /// `signify-openbsd -S -s key.sec -m message -x message.sig`, `message` holding
    /// [`MESSAGE`].
    const SIGNIFY_SIGNATURE: &str = "untrusted comment: verify with key.pub\n\
        RWQ6NR/tVJjeYckg7Da/cs5CFMl278kyryIicOkXz2B6txN/8wbtMD1rO18KgCT0FoQ8taNpuZau6vEF\
        eXEUvTG2v3q3/uTVZA0=\n";

    /// `polstore keygen --public polstore.pub --secret polstore.sec`: a key pair polstore
    /// made.
    const POLSTORE_PUBLIC_KEY: &str = "untrusted comment: signify public key\n\
        RWSTHaHaO2hvgFTTBx9gQ1rUNie+Cq05zoyJngrsQvViAG3aHRYeC6ml\n";
    const POLSTORE_SECRET_KEY: &str = "untrusted comment: signify secret key\n\
        RWRCSwAAAAAAAAAAAAAAAAAAAAAAAAAAxQw6IQleyY2THaHaO2hvgA+UH3oIXZnYeW6NA+A/ti25kBRJ\
        5bfneKlygO0CxTnfVNMHH2BDWtQ2J74KrTnOjImeCuxC9WIAbdodFh4LqaU=\n";
    /// `signify-openbsd -S -s polstore.sec -m message -x polstore-key.sig`: signify
    /// signing [`MESSAGE`] with the key polstore made.
    const SIGNIFY_SIGNATURE_WITH_POLSTORE_KEY: &str = "untrusted comment: verify with polstore.pub\n\
        RWSTHaHaO2hvgCG8sts5jMshRqhK8Qf98VZUwTLef8G9UIfdJO4VQUvrUG3GVSWUZthuyBKenJd0llF8\
        oL9fkCZ5/SmzidioiwQ=\n";

    fn error_text<T: fmt::Debug>(result: Result<T, SignifyError>) -> String {
        result.expect_err("expected a refusal").to_string()
    }

    /// Builds a file from a raw blob, with a plain comment.
    fn file_from_blob(blob: &[u8]) -> Vec<u8> {
        format!("untrusted comment: test\n{}\n", BASE64.encode(blob)).into_bytes()
    }

    fn decode_blob(text: &str) -> Vec<u8> {
        let base64_line = text.lines().nth(1).expect("second line");
        BASE64.decode(base64_line).expect("valid base64")
    }

    #[test]
    fn keynum_displays_as_hex() {
        let keynum = KeyNum([0x00, 0x01, 0x0a, 0xff, 0x10, 0x20, 0xab, 0xcd]);
        assert_eq!(keynum.to_string(), "00010aff1020abcd");
    }

    #[test]
    fn secret_key_round_trip() {
        let secret_key = SecretKey::generate().expect("generate");
        let text = secret_key.to_file_text("signify secret key");
        assert!(text.starts_with("untrusted comment: signify secret key\n"));
        assert_eq!(text.lines().count(), 2);
        let blob = decode_blob(&text);
        assert_eq!(blob.len(), SECRET_KEY_BLOB_BYTES);
        assert_eq!(&blob[..4], b"EdBK");
        let parsed = SecretKey::parse(text.as_bytes()).expect("parse");
        assert_eq!(parsed.keynum, secret_key.keynum);
        assert_eq!(
            parsed.signing_key.to_bytes(),
            secret_key.signing_key.to_bytes()
        );
        assert_eq!(parsed.to_file_text("signify secret key"), text);
    }

    #[test]
    fn public_key_round_trip() {
        let public_key = SecretKey::generate().expect("generate").public_key();
        let text = public_key.to_file_text("signify public key");
        assert!(text.starts_with("untrusted comment: signify public key\n"));
        assert_eq!(decode_blob(&text).len(), PUBLIC_KEY_BLOB_BYTES);
        let parsed = PublicKey::parse(text.as_bytes()).expect("parse");
        assert_eq!(parsed, public_key);
        assert_eq!(parsed.keynum(), public_key.keynum());
        assert_eq!(parsed.key_bytes(), public_key.key_bytes());
    }

    #[test]
    fn signature_round_trip_and_verify() {
        let secret_key = SecretKey::generate().expect("generate");
        let public_key = secret_key.public_key();
        let signature = secret_key.sign(MESSAGE);
        assert_eq!(signature.keynum(), public_key.keynum());
        let text = signature.to_file_text("verify with key.pub");
        assert!(text.starts_with("untrusted comment: verify with key.pub\n"));
        assert_eq!(decode_blob(&text).len(), SIGNATURE_BLOB_BYTES);
        let parsed = Signature::parse(text.as_bytes()).expect("parse");
        assert_eq!(parsed.keynum(), signature.keynum());
        assert_eq!(parsed.signature, signature.signature);

        let other_key = SecretKey::generate().expect("generate").public_key();
        let trusted = [other_key, public_key];
        assert_eq!(verify(&trusted, MESSAGE, &parsed).expect("verify"), 1);
    }

    #[test]
    fn comments_are_sanitized() {
        let public_key = SecretKey::generate().expect("generate").public_key();
        let text = public_key.to_file_text("two\nlines\r\tand\u{7f}more\u{85}");
        assert!(text.starts_with("untrusted comment: two lines  and more \n"));
        PublicKey::parse(text.as_bytes()).expect("parse sanitized");

        let empty = public_key.to_file_text("");
        assert!(empty.starts_with("untrusted comment: signify public key\n"));
        PublicKey::parse(empty.as_bytes()).expect("parse default comment");

        // Multi-byte characters are not split by the truncation.
        let long = public_key.to_file_text(&"é".repeat(COMMENT_BYTES_MAX));
        let comment_line = long.lines().next().expect("comment line");
        let comment = comment_line
            .strip_prefix("untrusted comment: ")
            .expect("header");
        assert_eq!(comment.len(), COMMENT_BYTES_MAX - 2);
        assert!(comment.chars().all(|character| character == 'é'));
        PublicKey::parse(long.as_bytes()).expect("parse long comment");

        let long_ascii = public_key.to_file_text(&"a".repeat(2 * COMMENT_BYTES_MAX));
        let comment_line = long_ascii.lines().next().expect("comment line");
        assert_eq!(
            comment_line.len(),
            "untrusted comment: ".len() + COMMENT_BYTES_MAX - 1
        );
        PublicKey::parse(long_ascii.as_bytes()).expect("parse longest comment");
    }

    #[test]
    fn refuses_bad_first_line() {
        let text = SecretKey::generate()
            .expect("generate")
            .public_key()
            .to_file_text("c");
        let bad = text.replacen("untrusted comment: ", "trusted comment: ", 1);
        assert_eq!(
            error_text(PublicKey::parse(bad.as_bytes())),
            "not a signify file: first line must start with 'untrusted comment: '"
        );
        assert_eq!(
            error_text(PublicKey::parse(b"")),
            "not a signify file: first line must start with 'untrusted comment: '"
        );
    }

    #[test]
    fn refuses_crlf() {
        let text = SecretKey::generate()
            .expect("generate")
            .public_key()
            .to_file_text("c")
            .replace('\n', "\r\n");
        assert_eq!(
            error_text(PublicKey::parse(text.as_bytes())),
            "carriage return in file: only '\\n' line ends are accepted"
        );
    }

    #[test]
    fn refuses_bad_comments() {
        let text = SecretKey::generate()
            .expect("generate")
            .public_key()
            .to_file_text("c");
        let base64_line = text.lines().nth(1).expect("base64 line");
        let with_comment = |comment: &str| format!("untrusted comment: {comment}\n{base64_line}\n");
        assert_eq!(
            error_text(PublicKey::parse(with_comment("a\tb").as_bytes())),
            "control characters in comment"
        );
        assert_eq!(
            error_text(PublicKey::parse(with_comment("").as_bytes())),
            "empty comment"
        );
        assert_eq!(
            error_text(PublicKey::parse(
                with_comment(&"a".repeat(COMMENT_BYTES_MAX)).as_bytes()
            )),
            "comment too long: 1024 bytes, the maximum is 1023"
        );
    }

    #[test]
    fn refuses_missing_newlines() {
        let text = SecretKey::generate()
            .expect("generate")
            .public_key()
            .to_file_text("c");
        assert_eq!(
            error_text(PublicKey::parse(text.trim_end().as_bytes())),
            "missing newline after the base64 line"
        );
        assert_eq!(
            error_text(PublicKey::parse(b"untrusted comment: c")),
            "missing newline after the comment"
        );
    }

    #[test]
    fn refuses_trailing_data() {
        let text = SecretKey::generate()
            .expect("generate")
            .public_key()
            .to_file_text("c");
        for trailing in ["\n", "x", "more\n"] {
            let bad = format!("{text}{trailing}");
            assert_eq!(
                error_text(PublicKey::parse(bad.as_bytes())),
                "trailing data after the base64 line"
            );
        }
    }

    #[test]
    fn refuses_malformed_base64() {
        for base64_line in ["not base64!", "RWQ", "RW==", " RWQ=", "RWQ= "] {
            let text = format!("untrusted comment: c\n{base64_line}\n");
            assert_eq!(
                error_text(PublicKey::parse(text.as_bytes())),
                "malformed base64",
                "for {base64_line:?}"
            );
        }
        // Unpadded base64 is refused too.
        let secret_key = SecretKey::generate().expect("generate");
        let text = secret_key.sign(MESSAGE).to_file_text("c");
        let unpadded = text.replace('=', "");
        assert_eq!(
            error_text(Signature::parse(unpadded.as_bytes())),
            "malformed base64"
        );
    }

    #[test]
    fn refuses_wrong_length() {
        let secret_key = SecretKey::generate().expect("generate");
        let public_text = secret_key.public_key().to_file_text("c");
        let signature_text = secret_key.sign(MESSAGE).to_file_text("c");
        assert_eq!(
            error_text(PublicKey::parse(signature_text.as_bytes())),
            "wrong length for a signify public key: expected 42 bytes, found 74"
        );
        assert_eq!(
            error_text(Signature::parse(public_text.as_bytes())),
            "wrong length for a signify signature: expected 74 bytes, found 42"
        );
        assert_eq!(
            error_text(SecretKey::parse(public_text.as_bytes())),
            "wrong length for a signify secret key: expected 104 bytes, found 42"
        );
        assert_eq!(
            error_text(PublicKey::parse(b"untrusted comment: c\n\n")),
            "wrong length for a signify public key: expected 42 bytes, found 0"
        );
    }

    #[test]
    fn refuses_wrong_algorithm() {
        let secret_key = SecretKey::generate().expect("generate");
        let mut public_blob = decode_blob(&secret_key.public_key().to_file_text("c"));
        public_blob[..2].copy_from_slice(b"RS");
        assert_eq!(
            error_text(PublicKey::parse(&file_from_blob(&public_blob))),
            "unsupported algorithm \"RS\": only Ed25519 ('Ed') is supported"
        );

        let mut signature_blob = decode_blob(&secret_key.sign(MESSAGE).to_file_text("c"));
        signature_blob[1] = b'x';
        assert_eq!(
            error_text(Signature::parse(&file_from_blob(&signature_blob))),
            "unsupported algorithm \"Ex\": only Ed25519 ('Ed') is supported"
        );

        let mut secret_blob = decode_blob(&secret_key.to_file_text("c"));
        secret_blob[..2].copy_from_slice(b"RS");
        assert_eq!(
            error_text(SecretKey::parse(&file_from_blob(&secret_blob))),
            "unsupported algorithm \"RS\": only Ed25519 ('Ed') is supported"
        );
        let mut secret_blob = decode_blob(&secret_key.to_file_text("c"));
        secret_blob[2..4].copy_from_slice(b"XX");
        assert_eq!(
            error_text(SecretKey::parse(&file_from_blob(&secret_blob))),
            "unsupported key derivation algorithm \"XX\": only 'BK' is supported"
        );
    }

    #[test]
    fn refuses_encrypted_secret_key() {
        let secret_key = SecretKey::generate().expect("generate");
        let mut blob = decode_blob(&secret_key.to_file_text("c"));
        blob[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(
            error_text(SecretKey::parse(&file_from_blob(&blob))),
            "encrypted secret keys are not supported: \
             make the key without a passphrase ('signify-openbsd -G -n')"
        );
    }

    #[test]
    fn refuses_checksum_mismatch() {
        let secret_key = SecretKey::generate().expect("generate");
        let blob = decode_blob(&secret_key.to_file_text("c"));
        let checksum_start = 4 + KDF_ROUNDS_BYTES + SALT_BYTES;
        let mut bad_checksum = blob.clone();
        bad_checksum[checksum_start] ^= 1;
        assert_eq!(
            error_text(SecretKey::parse(&file_from_blob(&bad_checksum))),
            "secret key checksum mismatch"
        );
        let mut bad_seed = blob;
        let last = bad_seed.len() - 1;
        bad_seed[last - PUBLIC_KEY_BYTES] ^= 1;
        assert_eq!(
            error_text(SecretKey::parse(&file_from_blob(&bad_seed))),
            "secret key checksum mismatch"
        );
    }

    #[test]
    fn refuses_inconsistent_secret_key() {
        let secret_key = SecretKey::generate().expect("generate");
        let other_key = SecretKey::generate().expect("generate");
        let mut blob = decode_blob(&secret_key.to_file_text("c"));
        // Put another key's public half, with a matching checksum.
        let secret_start = blob.len() - SECRET_BYTES;
        blob[secret_start + SEED_BYTES..].copy_from_slice(&other_key.public_key().key_bytes());
        let mut secret = [0u8; SECRET_BYTES];
        secret.copy_from_slice(&blob[secret_start..]);
        let checksum_start = 4 + KDF_ROUNDS_BYTES + SALT_BYTES;
        blob[checksum_start..checksum_start + CHECKSUM_BYTES]
            .copy_from_slice(&secret_checksum(&secret));
        assert_eq!(
            error_text(SecretKey::parse(&file_from_blob(&blob))),
            "secret key is inconsistent: its public half does not match its seed"
        );
    }

    fn public_key_file(key: [u8; PUBLIC_KEY_BYTES]) -> Vec<u8> {
        let mut blob = Vec::new();
        blob.extend_from_slice(b"Ed");
        blob.extend_from_slice(&[7u8; KEYNUM_BYTES]);
        blob.extend_from_slice(&key);
        file_from_blob(&blob)
    }

    #[test]
    fn refuses_weak_public_key() {
        // The identity point, and the point of order 2 (y = -1).
        let mut identity = [0u8; PUBLIC_KEY_BYTES];
        identity[0] = 1;
        let mut order_two = [0xffu8; PUBLIC_KEY_BYTES];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        for key in [identity, order_two] {
            assert_eq!(
                error_text(PublicKey::parse(&public_key_file(key))),
                "weak (small-order) public key refused"
            );
        }
    }

    #[test]
    fn refuses_non_canonical_public_key() {
        // y = p + 1 (p = 2^255 - 19) encodes the identity non-canonically; the
        // identity with the sign bit of x set is non-canonical too.
        let mut y_above_p = [0xffu8; PUBLIC_KEY_BYTES];
        y_above_p[0] = 0xee;
        y_above_p[31] = 0x7f;
        let mut negative_zero = [0u8; PUBLIC_KEY_BYTES];
        negative_zero[0] = 1;
        negative_zero[31] = 0x80;
        for key in [y_above_p, negative_zero] {
            assert_eq!(
                error_text(PublicKey::parse(&public_key_file(key))),
                "non-canonical public key encoding refused"
            );
        }
    }

    #[test]
    fn refuses_untrusted_keynum() {
        let secret_key = SecretKey::generate().expect("generate");
        let other_key = SecretKey::generate().expect("generate").public_key();
        let signature = secret_key.sign(MESSAGE);
        assert_eq!(
            error_text(verify(&[other_key], MESSAGE, &signature)),
            format!(
                "signature is by key {} which is not trusted",
                signature.keynum()
            )
        );
        assert_eq!(
            error_text(verify(&[], MESSAGE, &signature)),
            format!(
                "signature is by key {} which is not trusted",
                signature.keynum()
            )
        );
    }

    #[test]
    fn refuses_signature_over_another_message() {
        let secret_key = SecretKey::generate().expect("generate");
        let public_key = secret_key.public_key();
        let signature = secret_key.sign(MESSAGE);
        assert_eq!(
            error_text(verify(
                std::slice::from_ref(&public_key),
                b"another message",
                &signature
            )),
            format!("signature does not verify with key {}", public_key.keynum())
        );
    }

    #[test]
    fn refuses_signature_by_another_key_with_same_keynum() {
        let secret_key = SecretKey::generate().expect("generate");
        let impostor = SecretKey {
            keynum: secret_key.keynum,
            signing_key: SecretKey::generate().expect("generate").signing_key,
        };
        let signature = impostor.sign(MESSAGE);
        assert_eq!(
            error_text(verify(&[secret_key.public_key()], MESSAGE, &signature)),
            format!("signature does not verify with key {}", signature.keynum())
        );
        // With both keys trusted, the one that verifies is found.
        let trusted = [secret_key.public_key(), impostor.public_key()];
        assert_eq!(verify(&trusted, MESSAGE, &signature).expect("verify"), 1);
    }

    #[test]
    fn refuses_truncated_signature() {
        let secret_key = SecretKey::generate().expect("generate");
        let blob = decode_blob(&secret_key.sign(MESSAGE).to_file_text("c"));
        assert_eq!(
            error_text(Signature::parse(&file_from_blob(&blob[..blob.len() - 1]))),
            "wrong length for a signify signature: expected 74 bytes, found 73"
        );
        let text = secret_key.sign(MESSAGE).to_file_text("c");
        let cut = &text.as_bytes()[..text.len() / 2];
        assert_eq!(
            error_text(Signature::parse(cut)),
            "missing newline after the base64 line"
        );
    }

    #[test]
    fn refuses_file_too_large() {
        let text = SecretKey::generate()
            .expect("generate")
            .public_key()
            .to_file_text("c");
        let mut large = text.into_bytes();
        large.resize(KEY_FILE_BYTES_MAX + 1, b'\n');
        assert_eq!(
            error_text(PublicKey::parse(&large)),
            "file too large: 4097 bytes, the maximum is 4096"
        );
        assert_eq!(
            error_text(Signature::parse(&large)),
            "file too large: 4097 bytes, the maximum is 4096"
        );
        assert_eq!(
            error_text(SecretKey::parse(&large)),
            "file too large: 4097 bytes, the maximum is 4096"
        );
    }

    #[test]
    fn signify_key_pair_parses_and_is_written_back_byte_for_byte() {
        let public_key =
            PublicKey::parse(SIGNIFY_PUBLIC_KEY.as_bytes()).expect("parse signify public key");
        let secret_key =
            SecretKey::parse(SIGNIFY_SECRET_KEY.as_bytes()).expect("parse signify secret key");
        assert_eq!(secret_key.public_key(), public_key);
        assert_eq!(public_key.keynum().to_string(), SIGNIFY_KEYNUM);
        // Writing the public key again gives the same file, byte for byte.
        assert_eq!(
            public_key.to_file_text("signify public key"),
            SIGNIFY_PUBLIC_KEY
        );
        // The secret key too, but for the salt: signify fills it with random bytes even
        // with zero rounds, polstore writes zeros.
        let written = secret_key.to_file_text("signify secret key");
        let mut expected = decode_blob(SIGNIFY_SECRET_KEY);
        let salt_start = 2 * ALGORITHM_BYTES + KDF_ROUNDS_BYTES;
        expected[salt_start..salt_start + SALT_BYTES].fill(0);
        assert_eq!(decode_blob(&written), expected);
        assert_eq!(written.lines().next(), SIGNIFY_SECRET_KEY.lines().next());
    }

    #[test]
    fn signify_signature_verifies_and_is_written_back_byte_for_byte() {
        let public_key =
            PublicKey::parse(SIGNIFY_PUBLIC_KEY.as_bytes()).expect("parse signify public key");
        let signature =
            Signature::parse(SIGNIFY_SIGNATURE.as_bytes()).expect("parse signify signature");
        assert_eq!(signature.keynum(), public_key.keynum());
        assert_eq!(
            verify(std::slice::from_ref(&public_key), MESSAGE, &signature).expect("verify"),
            0
        );
        assert_eq!(
            error_text(verify(&[public_key], b"another message", &signature)),
            format!("signature does not verify with key {SIGNIFY_KEYNUM}")
        );
        assert_eq!(
            signature.to_file_text("verify with key.pub"),
            SIGNIFY_SIGNATURE
        );
    }

    #[test]
    fn signing_with_a_signify_key_gives_the_signature_signify_made() {
        // Ed25519 signatures are deterministic: the same key and message give the same
        // bytes, so what polstore signs with this key is what signify verified.
        let secret_key =
            SecretKey::parse(SIGNIFY_SECRET_KEY.as_bytes()).expect("parse signify secret key");
        assert_eq!(
            secret_key.sign(MESSAGE).to_file_text("verify with key.pub"),
            SIGNIFY_SIGNATURE
        );
    }

    #[test]
    fn a_polstore_key_pair_is_the_same_file_again_and_verifies_what_signify_signed_with_it() {
        let secret_key =
            SecretKey::parse(POLSTORE_SECRET_KEY.as_bytes()).expect("parse polstore secret key");
        let public_key =
            PublicKey::parse(POLSTORE_PUBLIC_KEY.as_bytes()).expect("parse polstore public key");
        assert_eq!(secret_key.public_key(), public_key);
        assert_eq!(
            secret_key.to_file_text("signify secret key"),
            POLSTORE_SECRET_KEY
        );
        assert_eq!(
            public_key.to_file_text("signify public key"),
            POLSTORE_PUBLIC_KEY
        );
        let signature = Signature::parse(SIGNIFY_SIGNATURE_WITH_POLSTORE_KEY.as_bytes())
            .expect("parse signify signature");
        assert_eq!(
            verify(std::slice::from_ref(&public_key), MESSAGE, &signature).expect("verify"),
            0
        );
        assert_eq!(
            secret_key
                .sign(MESSAGE)
                .to_file_text("verify with polstore.pub"),
            SIGNIFY_SIGNATURE_WITH_POLSTORE_KEY
        );
    }
}
