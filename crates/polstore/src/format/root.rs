//! The root of trust: which keys may sign what, how many of them must, and until when.
//!
//! ```text
//! polstore-root 1
//! version 2
//! expires 2027-11-26T00:00:00Z
//!
//! key RWS...   one line per key: the base64 line of its signify public key file
//! role root 2 KEYNUM KEYNUM KEYNUM
//! role manifest 2 KEYNUM KEYNUM KEYNUM
//! role head 1 KEYNUM
//! ```
//!
//! Canonical, as a manifest is: keys sorted by keynum, the three roles in this order, each
//! role's keynums sorted, every key named by at least one role; anything else is refused.
//! Each Ed25519 key is listed once: a keynum is only a label (a signature's keynum is not
//! signed), so one key under two keynums would count twice toward a threshold.
//! A root file is a signed file (`format::signatures`): the signatures of its root role's
//! keys, then this text. A node's flat `trust.keys` is read as a root of version 0 without
//! expiry in which every role is any one of those keys ([`Root::from_keys`]).

use std::fmt;

use crate::format::signatures::{self, SIGNATURES_MAX, SignaturesError};
use crate::format::signify::{KeyNum, PublicKey, Signature};
use crate::format::timestamp::Timestamp;

const MAGIC: &str = "polstore-root 1";
/// The largest root file read, signatures included.
pub const ROOT_FILE_BYTES_MAX: usize = 64 << 10;
/// The most keys a root names.
pub const KEYS_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Signs the next root.
    Root,
    /// Signs policy manifests.
    Manifest,
    /// Signs heads, the short-lived pointers to the newest manifest.
    Head,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Root, Role::Manifest, Role::Head];

    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Manifest => "manifest",
            Role::Head => "head",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleKeys {
    /// How many of `keys` must sign: at least 1, at most `keys.len()`.
    pub threshold: usize,
    /// Sorted, no duplicates, each one of the root's keys.
    pub keys: Vec<KeyNum>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// 0 only for the root made of flat `trust.keys`; a root file's is at least 1.
    pub version: u64,
    /// Past it, the root no longer vouches for anything; `None` only for flat keys.
    pub expires: Option<Timestamp>,
    /// Sorted by keynum, keynums unique.
    pub keys: Vec<PublicKey>,
    /// Indexed by [`Role`].
    pub roles: [RoleKeys; 3],
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("not a root file: {0}")]
    Signatures(SignaturesError),
    #[error("larger than {ROOT_FILE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("not in canonical form (polstore root create writes it)")]
    NotCanonical,
    #[error("{0}")]
    Invalid(String),
}

/// Why signatures do not meet a role's threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdError {
    pub role: Role,
    pub threshold: usize,
    /// Role keys whose signature verified.
    pub valid: Vec<KeyNum>,
    /// Role keys with a signature that does not verify.
    pub invalid: Vec<KeyNum>,
    /// Signatures by keys the role does not name.
    pub foreign: Vec<KeyNum>,
    /// The root stands for flat `trust.keys` (version 0): every key has every role.
    pub flat: bool,
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Flat trusted keys, one signature: say what is wrong with it in the words a
        // single trusted key always had.
        if self.flat && self.valid.is_empty() {
            match (self.invalid.as_slice(), self.foreign.as_slice()) {
                ([key], []) => {
                    return write!(formatter, "signature does not verify with key {key}");
                }
                ([], [key]) => {
                    return write!(formatter, "signature is by key {key} which is not trusted");
                }
                _ => {}
            }
        }
        let list = |keys: &[KeyNum]| {
            keys.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            formatter,
            "signed by {} of the {} keys the {} role requires",
            self.valid.len(),
            self.threshold,
            self.role
        )?;
        let mut notes = Vec::new();
        if !self.valid.is_empty() {
            notes.push(format!("valid: {}", list(&self.valid)));
        }
        if !self.invalid.is_empty() {
            notes.push(format!("not verifying: {}", list(&self.invalid)));
        }
        if !self.foreign.is_empty() {
            notes.push(format!("not of the role: {}", list(&self.foreign)));
        }
        if !notes.is_empty() {
            write!(formatter, " ({})", notes.join("; "))?;
        }
        Ok(())
    }
}

impl Root {
    /// The root a node's flat key list stands for: version 0, no expiry, any one of the
    /// keys for every role.
    pub fn from_keys(keys: Vec<PublicKey>) -> Root {
        let mut keys = keys;
        keys.sort_by_key(|key| key.keynum().0);
        keys.dedup();
        let mut numbers: Vec<KeyNum> = keys.iter().map(|key| *key.keynum()).collect();
        numbers.dedup();
        let role = RoleKeys {
            threshold: 1,
            keys: numbers,
        };
        Root {
            version: 0,
            expires: None,
            keys,
            roles: [role.clone(), role.clone(), role],
        }
    }

    pub fn role(&self, role: Role) -> &RoleKeys {
        &self.roles[role.index()]
    }

    /// Checks that at least the role's threshold of its keys signed exactly `message`,
    /// each key counted once, with `verify_strict`. Returns the keys that did.
    pub fn check(
        &self,
        role: Role,
        message: &[u8],
        signatures: &[Signature],
    ) -> Result<Vec<KeyNum>, ThresholdError> {
        let wanted = self.role(role);
        let mut error = ThresholdError {
            role,
            threshold: wanted.threshold,
            valid: Vec::new(),
            invalid: Vec::new(),
            foreign: Vec::new(),
            flat: self.version == 0,
        };
        for signature in signatures {
            let keynum = *signature.keynum();
            if !wanted.keys.contains(&keynum) {
                if !error.foreign.contains(&keynum) {
                    error.foreign.push(keynum);
                }
                continue;
            }
            if error.valid.contains(&keynum) {
                continue;
            }
            let verifies = self
                .keys
                .iter()
                .filter(|key| *key.keynum() == keynum)
                .any(|key| key.verifies(message, signature));
            if verifies {
                error.valid.push(keynum);
                error.invalid.retain(|key| *key != keynum);
            } else if !error.invalid.contains(&keynum) {
                error.invalid.push(keynum);
            }
        }
        if error.valid.len() >= wanted.threshold {
            Ok(error.valid)
        } else {
            Err(error)
        }
    }

    /// When the root expired, if it is past its expiry at `now`.
    pub fn expired(&self, now: Timestamp) -> Option<Timestamp> {
        self.expires.filter(|expires| *expires <= now)
    }

    pub fn render(&self) -> String {
        let mut text = format!("{MAGIC}\nversion {}\n", self.version);
        if let Some(expires) = self.expires {
            text.push_str(&format!("expires {expires}\n"));
        }
        text.push('\n');
        for key in &self.keys {
            text.push_str(&format!("key {}\n", key.to_base64()));
        }
        for role in Role::ALL {
            let keys = self.role(role);
            text.push_str(&format!("role {role} {}", keys.threshold));
            for key in &keys.keys {
                text.push_str(&format!(" {key}"));
            }
            text.push('\n');
        }
        text
    }

    /// Parses the text of a root (what follows the signatures of a root file).
    pub fn parse(bytes: &[u8]) -> Result<Root, RootError> {
        if bytes.len() > ROOT_FILE_BYTES_MAX {
            return Err(RootError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| RootError::Line {
            line: 1,
            reason: "not UTF-8".into(),
        })?;
        let mut lines = text.split_inclusive('\n').enumerate().map(|(index, line)| {
            (
                index + 1,
                line.strip_suffix('\n').ok_or(RootError::Line {
                    line: index + 1,
                    reason: "no final newline".into(),
                }),
            )
        });
        let mut next = |expected: &str| -> Result<(usize, &str), RootError> {
            match lines.next() {
                Some((line, text)) => Ok((line, text?)),
                None => Err(RootError::Invalid(format!("ends before {expected}"))),
            }
        };
        let bad = |line: usize, reason: String| RootError::Line { line, reason };
        let (line, magic) = next("the first line")?;
        if magic != MAGIC {
            return Err(bad(line, format!("expected '{MAGIC}'")));
        }
        let (line, version) = next("version")?;
        let version = version
            .strip_prefix("version ")
            .and_then(|number| number.parse::<u64>().ok())
            .filter(|version| *version >= 1)
            .ok_or_else(|| bad(line, "expected 'version N', N at least 1".into()))?;
        let (line, expires) = next("expires")?;
        let expires = expires
            .strip_prefix("expires ")
            .and_then(|time| Timestamp::parse(time).ok())
            .ok_or_else(|| bad(line, "expected 'expires YYYY-MM-DDTHH:MM:SSZ'".into()))?;
        let (line, blank) = next("the blank line")?;
        if !blank.is_empty() {
            return Err(bad(line, "expected a blank line after the header".into()));
        }
        let mut keys: Vec<PublicKey> = Vec::new();
        let mut roles: Vec<RoleKeys> = Vec::new();
        for (line, text) in lines {
            let text = text?;
            if let Some(key) = text.strip_prefix("key ") {
                if !roles.is_empty() {
                    return Err(bad(line, "a key after the roles".into()));
                }
                if keys.len() == KEYS_MAX {
                    return Err(bad(line, format!("more than {KEYS_MAX} keys")));
                }
                let key = PublicKey::from_base64(key)
                    .map_err(|error| bad(line, format!("key: {error}")))?;
                if keys.iter().any(|known| known.keynum() == key.keynum()) {
                    return Err(bad(
                        line,
                        format!("a second key with keynum {}", key.keynum()),
                    ));
                }
                // The keynum is a label the signer chooses, not part of what the key
                // signs: one key under two keynums would count twice toward a threshold.
                if let Some(known) = keys
                    .iter()
                    .find(|known| known.key_bytes() == key.key_bytes())
                {
                    return Err(bad(
                        line,
                        format!(
                            "key {} is key {} listed twice, under another keynum",
                            key.keynum(),
                            known.keynum()
                        ),
                    ));
                }
                if keys.last().is_some_and(|last| last.keynum() > key.keynum()) {
                    return Err(bad(line, "keys not sorted by keynum".into()));
                }
                keys.push(key);
            } else if let Some(role) = text.strip_prefix("role ") {
                let expected = Role::ALL
                    .get(roles.len())
                    .ok_or_else(|| bad(line, "more than three roles".into()))?;
                let mut words = role.split(' ');
                if words.next() != Some(expected.name()) {
                    return Err(bad(line, format!("expected 'role {expected} ...'")));
                }
                let threshold = words
                    .next()
                    .and_then(|threshold| threshold.parse::<usize>().ok())
                    .ok_or_else(|| bad(line, "expected a threshold".into()))?;
                let mut role_keys = Vec::new();
                for word in words {
                    let keynum = KeyNum::from_hex(word)
                        .ok_or_else(|| bad(line, format!("not a keynum: {:.20}", word)))?;
                    if !keys.iter().any(|key| *key.keynum() == keynum) {
                        return Err(bad(line, format!("key {keynum} is not listed")));
                    }
                    if role_keys.contains(&keynum) {
                        return Err(bad(line, format!("key {keynum} named twice")));
                    }
                    if role_keys.last().is_some_and(|last| *last > keynum) {
                        return Err(bad(line, "keynums not sorted".into()));
                    }
                    role_keys.push(keynum);
                }
                if threshold == 0 || threshold > role_keys.len() || threshold > SIGNATURES_MAX {
                    return Err(bad(
                        line,
                        format!(
                            "threshold {threshold} must be from 1 to the role's {} keys (at most {SIGNATURES_MAX})",
                            role_keys.len()
                        ),
                    ));
                }
                roles.push(RoleKeys {
                    threshold,
                    keys: role_keys,
                });
            } else {
                return Err(bad(line, "expected 'key ...' or 'role ...'".into()));
            }
        }
        let roles: [RoleKeys; 3] = roles.try_into().map_err(|_| {
            RootError::Invalid("the roles root, manifest and head are required".into())
        })?;
        if let Some(unused) = keys
            .iter()
            .find(|key| !roles.iter().any(|role| role.keys.contains(key.keynum())))
        {
            return Err(RootError::Invalid(format!(
                "key {} is in no role",
                unused.keynum()
            )));
        }
        let root = Root {
            version,
            expires: Some(expires),
            keys,
            roles,
        };
        if root.render().as_bytes() != bytes {
            return Err(RootError::NotCanonical);
        }
        Ok(root)
    }

    /// A new root: keys and roles sorted into canonical form, then checked as a parse
    /// checks them.
    pub fn new(
        version: u64,
        expires: Timestamp,
        roles: [(usize, Vec<PublicKey>); 3],
    ) -> Result<Root, RootError> {
        let mut keys: Vec<PublicKey> = Vec::new();
        let mut role_keys = Vec::new();
        for (threshold, members) in roles {
            let mut numbers: Vec<KeyNum> = Vec::new();
            for key in members {
                if let Some(known) = keys.iter().find(|known| known.keynum() == key.keynum()) {
                    if *known != key {
                        return Err(RootError::Invalid(format!(
                            "two different keys with keynum {}",
                            key.keynum()
                        )));
                    }
                } else {
                    keys.push(key.clone());
                }
                numbers.push(*key.keynum());
            }
            numbers.sort_by_key(|keynum| keynum.0);
            numbers.dedup();
            role_keys.push(RoleKeys {
                threshold,
                keys: numbers,
            });
        }
        keys.sort_by_key(|key| key.keynum().0);
        let root = Root {
            version,
            expires: Some(expires),
            keys,
            roles: role_keys.try_into().expect("three roles"),
        };
        // The one set of rules: what parse refuses, new refuses.
        Root::parse(root.render().as_bytes())
    }
}

/// A root file: its signatures, the root, and the exact bytes they sign.
pub struct SignedRoot {
    pub root: Root,
    pub signatures: Vec<Signature>,
    pub text: Vec<u8>,
}

impl SignedRoot {
    /// Parses a root file whose signatures may not meet any threshold yet (one being
    /// signed). A file without signatures is the bare root text.
    pub fn parse(bytes: &[u8]) -> Result<SignedRoot, RootError> {
        if bytes.len() > ROOT_FILE_BYTES_MAX {
            return Err(RootError::TooLarge);
        }
        let (signatures, text) = if bytes.starts_with(MAGIC.as_bytes()) {
            (Vec::new(), bytes)
        } else {
            signatures::split_signed(bytes).map_err(RootError::Signatures)?
        };
        Ok(SignedRoot {
            root: Root::parse(text)?,
            signatures,
            text: text.to_vec(),
        })
    }

    /// The file's bytes: the signatures, then the root's text.
    pub fn render(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self
            .signatures
            .iter()
            .flat_map(|signature| {
                signature
                    .to_file_text(&format!(
                        "polstore root {} signed by {}",
                        self.root.version,
                        signature.keynum()
                    ))
                    .into_bytes()
            })
            .collect();
        bytes.extend_from_slice(&self.text);
        bytes
    }

    /// Checks the root's own threshold: what an initial root and every later one need.
    pub fn check_self(&self) -> Result<Vec<KeyNum>, ThresholdError> {
        self.root.check(Role::Root, &self.text, &self.signatures)
    }

    /// Checks that this root may follow `trusted`: the next version, signed by a threshold
    /// of `trusted`'s root keys and of its own.
    pub fn check_follows(&self, trusted: &Root) -> Result<(), String> {
        if self.root.version != trusted.version + 1 {
            return Err(format!(
                "root version {} does not follow the trusted version {}",
                self.root.version, trusted.version
            ));
        }
        trusted
            .check(Role::Root, &self.text, &self.signatures)
            .map_err(|error| {
                format!(
                    "root version {}: by the trusted root: {error}",
                    self.root.version
                )
            })?;
        self.check_self()
            .map_err(|error| format!("root version {}: by itself: {error}", self.root.version))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::signify::SecretKey;

    fn keys(count: usize) -> Vec<SecretKey> {
        (0..count).map(|_| SecretKey::generate().unwrap()).collect()
    }

    fn public(keys: &[SecretKey]) -> Vec<PublicKey> {
        keys.iter().map(SecretKey::public_key).collect()
    }

    fn root(version: u64, root_keys: &[SecretKey], threshold: usize) -> Root {
        Root::new(
            version,
            Timestamp::from_unix_secs(2_000_000_000),
            [
                (threshold, public(root_keys)),
                (threshold, public(root_keys)),
                (1, public(&root_keys[..1])),
            ],
        )
        .unwrap()
    }

    fn signed(root: &Root, by: &[&SecretKey]) -> SignedRoot {
        let text = root.render().into_bytes();
        SignedRoot {
            root: root.clone(),
            signatures: by.iter().map(|key| key.sign(&text)).collect(),
            text,
        }
    }

    #[test]
    fn render_and_parse_agree_and_only_the_canonical_form_is_read() {
        let secret = keys(3);
        let root = root(1, &secret, 2);
        let text = root.render();
        assert_eq!(Root::parse(text.as_bytes()).unwrap(), root);
        let file = signed(&root, &[&secret[0], &secret[1]]).render();
        let parsed = SignedRoot::parse(&file).unwrap();
        assert_eq!(parsed.root, root);
        assert_eq!(parsed.check_self().unwrap().len(), 2);
        // Roles out of order, a key in no role, a threshold too high: each refused.
        let swapped = text.replace("role manifest", "role xmanifest");
        assert!(Root::parse(swapped.as_bytes()).is_err());
        let extra = SecretKey::generate().unwrap().public_key().to_base64();
        let unused = text.replacen("\nkey ", &format!("\nkey {extra}\nkey "), 1);
        assert!(Root::parse(unused.as_bytes()).is_err());
        // Keys or a role's keynums out of order: not the canonical form.
        let key_lines: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("key "))
            .collect();
        let swapped_keys = text
            .replacen(key_lines[0], "KEY0", 1)
            .replacen(key_lines[1], key_lines[0], 1)
            .replacen("KEY0", key_lines[1], 1);
        assert!(Root::parse(swapped_keys.as_bytes()).is_err());
        let role_line = text
            .lines()
            .find(|line| line.starts_with("role manifest"))
            .unwrap();
        let mut words: Vec<&str> = role_line.split(' ').collect();
        words.swap(3, 4);
        let unsorted = text.replacen(role_line, &words.join(" "), 1);
        assert!(Root::parse(unsorted.as_bytes()).is_err());
        let high = text.replacen("role root 2", "role root 4", 1);
        let error = Root::parse(high.as_bytes()).unwrap_err().to_string();
        assert!(
            error.contains("threshold 4 must be from 1 to the role's 3 keys"),
            "{error}"
        );
    }

    #[test]
    fn two_of_three_refuses_one_and_accepts_two() {
        let secret = keys(3);
        let root = root(1, &secret, 2);
        let message = b"a manifest";
        let one = [secret[0].sign(message)];
        let error = root.check(Role::Manifest, message, &one).unwrap_err();
        assert_eq!(error.valid, vec![*secret[0].public_key().keynum()]);
        assert!(
            error
                .to_string()
                .starts_with("signed by 1 of the 2 keys the manifest role requires")
        );
        // The same key twice is one key.
        let twice = [secret[0].sign(message), secret[0].sign(message)];
        assert!(root.check(Role::Manifest, message, &twice).is_err());
        let two = [secret[2].sign(message), secret[0].sign(message)];
        assert_eq!(root.check(Role::Manifest, message, &two).unwrap().len(), 2);
        // A signature over other bytes does not count.
        let wrong = [secret[0].sign(message), secret[1].sign(b"other")];
        let error = root.check(Role::Manifest, message, &wrong).unwrap_err();
        assert_eq!(error.invalid, vec![*secret[1].public_key().keynum()]);
    }

    #[test]
    fn a_new_root_needs_both_thresholds_and_the_next_version() {
        let old = keys(3);
        let new = keys(3);
        let trusted = root(1, &old, 2);
        let next = root(2, &new, 2);
        let good = signed(&next, &[&old[0], &old[1], &new[0], &new[2]]);
        good.check_follows(&trusted).unwrap();
        let only_new = signed(&next, &[&new[0], &new[1]]);
        let error = only_new.check_follows(&trusted).unwrap_err();
        assert!(
            error.starts_with("root version 2: by the trusted root: signed by 0 of the 2"),
            "{error}"
        );
        let only_old = signed(&next, &[&old[0], &old[1], &new[0]]);
        assert!(
            only_old
                .check_follows(&trusted)
                .unwrap_err()
                .contains("by itself")
        );
        let skip = signed(&root(3, &new, 2), &[&old[0], &old[1], &new[0], &new[1]]);
        assert_eq!(
            skip.check_follows(&trusted).unwrap_err(),
            "root version 3 does not follow the trusted version 1"
        );
    }

    /// `key`'s Ed25519 key under another keynum: a signify public key file anyone can
    /// write, since the keynum is not part of what the key signs.
    fn renumbered(key: &PublicKey, keynum: [u8; 8]) -> PublicKey {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut blob = engine.decode(key.to_base64()).unwrap();
        blob[2..10].copy_from_slice(&keynum);
        PublicKey::from_base64(&engine.encode(blob)).unwrap()
    }

    /// `signature` relabelled with `keynum`: the Ed25519 signature is unchanged.
    fn relabelled(signature: &Signature, keynum: [u8; 8]) -> Signature {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let text = signature.to_file_text("c");
        let line = text.lines().nth(1).unwrap();
        let mut blob = engine.decode(line).unwrap();
        blob[2..10].copy_from_slice(&keynum);
        let file = format!("untrusted comment: c\n{}\n", engine.encode(blob));
        Signature::parse(file.as_bytes()).unwrap()
    }

    #[test]
    fn one_key_listed_under_two_keynums_is_refused_and_never_counts_twice() {
        let secret = keys(2);
        let (a, b) = (secret[0].public_key(), secret[1].public_key());
        let twin = renumbered(&a, [0x42; 8]);
        assert_ne!(twin.keynum(), a.keynum());
        // A root that names a's key twice, under two keynums, as two of its three
        // manifest keys: a 2-of-3 role that a alone would meet.
        let made = Root::new(
            1,
            Timestamp::from_unix_secs(2_000_000_000),
            [
                (2, vec![a.clone(), twin.clone(), b.clone()]),
                (2, vec![a.clone(), twin.clone(), b.clone()]),
                (1, vec![b.clone()]),
            ],
        );
        let error = made.expect_err("a root naming one key twice was made");
        assert!(error.to_string().contains("listed twice"), "{error}");
        // The same text written by hand is refused on reading.
        let mut sorted = vec![a.clone(), twin.clone(), b.clone()];
        sorted.sort_by_key(|key| key.keynum().0);
        let root = Root {
            version: 1,
            expires: Some(Timestamp::from_unix_secs(2_000_000_000)),
            roles: [
                RoleKeys {
                    threshold: 2,
                    keys: sorted.iter().map(|key| *key.keynum()).collect(),
                },
                RoleKeys {
                    threshold: 2,
                    keys: sorted.iter().map(|key| *key.keynum()).collect(),
                },
                RoleKeys {
                    threshold: 1,
                    keys: vec![*b.keynum()],
                },
            ],
            keys: sorted,
        };
        let text = root.render();
        let error = Root::parse(text.as_bytes()).expect_err("parsed");
        assert!(error.to_string().contains("listed twice"), "{error}");
        // What such a root would let through: one key's signature under both keynums.
        let message = b"a manifest";
        let by_a = secret[0].sign(message);
        let forged = [by_a.clone(), relabelled(&by_a, [0x42; 8])];
        assert!(
            root.check(Role::Manifest, message, &forged).is_ok(),
            "the relabelled signature verifies: only refusing the root stops it"
        );
    }

    #[test]
    fn flat_keys_are_a_one_key_root() {
        let secret = keys(2);
        let root = Root::from_keys(public(&secret));
        let message = b"m";
        for role in Role::ALL {
            root.check(role, message, &[secret[1].sign(message)])
                .unwrap();
        }
        let stranger = SecretKey::generate().unwrap();
        let error = root
            .check(Role::Manifest, message, &[stranger.sign(message)])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "signature is by key {} which is not trusted",
                stranger.public_key().keynum()
            )
        );
    }
}
