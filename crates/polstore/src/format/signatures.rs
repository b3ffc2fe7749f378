//! Several signify signatures over one message: what a k-of-n threshold counts.
//!
//! A *signature list* is one or more signify signature files (two lines each, as
//! `signify -S -x` writes them) put one after the other, one per signing key. A single
//! signature is a list of one, so every `.sig` file polstore ever accepted still reads,
//! and `cat a.sig b.sig > list.sig` joins the signatures of two signers. A *signed file*
//! (a root, a head) is a signature list followed by the message, which is signify's
//! embedded form (`signify -S -e`) when there is one signature.

use crate::format::signify::{self, COMMENT_HEADER, Signature, SignifyError};

/// The most signatures a list may hold. A threshold above it could never be met.
pub const SIGNATURES_MAX: usize = 16;

/// The largest signature list read.
pub const SIGNATURE_LIST_BYTES_MAX: usize = SIGNATURES_MAX * signify::KEY_FILE_BYTES_MAX;

#[derive(Debug, thiserror::Error)]
pub enum SignaturesError {
    #[error("no signature")]
    Empty,
    #[error("more than {SIGNATURES_MAX} signatures")]
    TooMany,
    #[error("larger than {SIGNATURE_LIST_BYTES_MAX} bytes")]
    TooLarge,
    /// The first signature's error is the error of a file of one signature.
    #[error("{}{error}", if *index > 1 { format!("signature {index}: ") } else { String::new() })]
    Signature { index: usize, error: SignifyError },
    #[error("nothing follows the signatures")]
    NoMessage,
}

/// Parses a detached signature list: nothing but signatures.
pub fn parse_list(text: &[u8]) -> Result<Vec<Signature>, SignaturesError> {
    if text.len() > SIGNATURE_LIST_BYTES_MAX {
        return Err(SignaturesError::TooLarge);
    }
    let (signatures, rest) = take_signatures(text)?;
    if !rest.is_empty() {
        // What follows is not a signature: parse it as one for the precise reason.
        let index = signatures.len() + 1;
        return Err(match Signature::parse(rest) {
            Err(error) => SignaturesError::Signature { index, error },
            Ok(_) => SignaturesError::Signature {
                index,
                error: SignifyError::TrailingData,
            },
        });
    }
    Ok(signatures)
}

/// Splits a signed file into its signatures and the message after them.
pub fn split_signed(text: &[u8]) -> Result<(Vec<Signature>, &[u8]), SignaturesError> {
    let (signatures, message) = take_signatures(text)?;
    if message.is_empty() {
        return Err(SignaturesError::NoMessage);
    }
    Ok((signatures, message))
}

/// The signatures at the start of `text` (at least one), and what follows them.
fn take_signatures(mut text: &[u8]) -> Result<(Vec<Signature>, &[u8]), SignaturesError> {
    let mut signatures = Vec::new();
    while text.starts_with(COMMENT_HEADER.as_bytes()) {
        if signatures.len() == SIGNATURES_MAX {
            return Err(SignaturesError::TooMany);
        }
        let index = signatures.len() + 1;
        let end = nth_line_end(text, 2).ok_or(SignaturesError::Signature {
            index,
            error: SignifyError::MissingNewline("base64 line"),
        })?;
        let signature = Signature::parse(&text[..end])
            .map_err(|error| SignaturesError::Signature { index, error })?;
        signatures.push(signature);
        text = &text[end..];
    }
    if signatures.is_empty() {
        return Err(match Signature::parse(text) {
            Err(error) if !text.is_empty() => SignaturesError::Signature { index: 1, error },
            _ => SignaturesError::Empty,
        });
    }
    Ok((signatures, text))
}

/// The offset just past the `count`th newline of `text`, within a signify file's size.
fn nth_line_end(text: &[u8], count: usize) -> Option<usize> {
    let window = &text[..text.len().min(signify::KEY_FILE_BYTES_MAX)];
    window
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .nth(count - 1)
        .map(|(index, _)| index + 1)
}

/// A signature list's text: each signature as its own signify file.
pub fn render_list(signatures: &[(Signature, String)]) -> String {
    signatures
        .iter()
        .map(|(signature, comment)| signature.to_file_text(comment))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::signify::SecretKey;

    #[test]
    fn one_signature_is_a_list_of_one_and_lists_join_by_concatenation() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let message = b"polstore-head 1\n";
        let one = a.sign(message).to_file_text("verify with a.pub");
        let list = parse_list(one.as_bytes()).unwrap();
        assert_eq!(list.len(), 1);
        let joined = format!("{one}{}", b.sign(message).to_file_text("b"));
        let list = parse_list(joined.as_bytes()).unwrap();
        assert_eq!(list.len(), 2);
        assert!(a.public_key().verifies(message, &list[0]));
        assert!(b.public_key().verifies(message, &list[1]));
        assert!(!a.public_key().verifies(message, &list[1]));
    }

    #[test]
    fn a_signed_file_splits_into_signatures_and_message() {
        let key = SecretKey::generate().unwrap();
        let message = b"polstore-root 1\nversion 1\n";
        let text = [
            key.sign(message).to_file_text("x").as_bytes(),
            key.sign(message).to_file_text("y").as_bytes(),
            message,
        ]
        .concat();
        let (signatures, rest) = split_signed(&text).unwrap();
        assert_eq!(signatures.len(), 2);
        assert_eq!(rest, message);
    }

    #[test]
    fn refusals_are_named() {
        let key = SecretKey::generate().unwrap();
        let one = key.sign(b"m").to_file_text("c");
        let text = |error: SignaturesError| error.to_string();
        assert_eq!(text(parse_list(b"").unwrap_err()), "no signature");
        assert_eq!(
            text(parse_list(format!("{one}junk\n").as_bytes()).unwrap_err()),
            "signature 2: not a signify file: first line must start with 'untrusted comment: '"
        );
        assert_eq!(
            text(split_signed(one.as_bytes()).unwrap_err()),
            "nothing follows the signatures"
        );
        let many = one.repeat(SIGNATURES_MAX + 1);
        assert_eq!(
            text(parse_list(many.as_bytes()).unwrap_err()),
            format!("more than {SIGNATURES_MAX} signatures")
        );
        let cut = &one[..one.len() - 1];
        assert_eq!(
            text(parse_list(cut.as_bytes()).unwrap_err()),
            "missing newline after the base64 line"
        );
    }
}
