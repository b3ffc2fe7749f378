//! What a candidate carries besides its files.

/// The manifest and its signature, exact bytes as read from the source: what the integrity
/// check verifies and what the store keeps beside each generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub manifest: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
}
