//! A head: the repository's short-lived, signed pointer from a node (or group) name to
//! the newest manifest published for it.
//!
//! ```text
//! polstore-head 1
//! node web
//! serial 1764120000
//! manifest BLAKE3-HEX SIZE
//! root 2
//! created 2026-11-26T03:00:00Z
//! expires 2026-11-27T03:00:00Z
//! ```
//!
//! A head file is a signed file (`format::signatures`): the head role's signatures, then
//! this text, at most [`HEAD_FILE_BYTES_MAX`] bytes. `root` is the version of the root
//! whose head keys signed it: a node that trusts an older root follows the chain up to it
//! first. Canonical: exactly these lines in this order.

use crate::format::manifest::Hash;
use crate::format::timestamp::Timestamp;

const MAGIC: &str = "polstore-head 1";
/// The largest head file read, signatures included.
pub const HEAD_FILE_BYTES_MAX: usize = 16 << 10;
/// The longest node name.
pub const NODE_BYTES_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub node: String,
    pub serial: u64,
    pub manifest: Hash,
    pub manifest_size: u64,
    pub root: u64,
    pub created: Timestamp,
    pub expires: Timestamp,
}

/// A node name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`; it is a file name
/// in the repository and a component of a URL.
pub fn check_node(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= NODE_BYTES_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "node name {:?} must be 1 to {NODE_BYTES_MAX} of A-Z a-z 0-9 . _ - and not start with '.'",
            crate::format::text::one_line(name, 80)
        ))
    }
}

impl Head {
    pub fn render(&self) -> String {
        format!(
            "{MAGIC}\nnode {}\nserial {}\nmanifest {} {}\nroot {}\ncreated {}\nexpires {}\n",
            self.node,
            self.serial,
            self.manifest.to_hex(),
            self.manifest_size,
            self.root,
            self.created,
            self.expires
        )
    }

    pub fn parse(bytes: &[u8]) -> Result<Head, String> {
        if bytes.len() > HEAD_FILE_BYTES_MAX {
            return Err(format!("larger than {HEAD_FILE_BYTES_MAX} bytes"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let mut lines = text.split('\n');
        let mut field = |name: &str| -> Result<&str, String> {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name))
                .and_then(|line| line.strip_prefix(' '))
                .ok_or_else(|| format!("expected '{name} ...'"))
        };
        if lines_magic(text) != Some(MAGIC) {
            return Err(format!("expected '{MAGIC}' first"));
        }
        let _ = field("polstore-head")?;
        let node = field("node")?.to_string();
        check_node(&node)?;
        let number = |text: &str, what: &str| {
            text.parse::<u64>()
                .map_err(|_| format!("{what}: not a decimal number"))
        };
        let serial = number(field("serial")?, "serial")?;
        let (hash, size) = field("manifest")?
            .split_once(' ')
            .ok_or("manifest: expected HASH SIZE")?;
        let manifest = Hash::from_hex(hash).ok_or("manifest: not a blake3 hash")?;
        let manifest_size = number(size, "manifest size")?;
        let root = number(field("root")?, "root")?;
        let time = |text: &str| Timestamp::parse(text).map_err(|error| error.to_string());
        let created = time(field("created")?)?;
        let expires = time(field("expires")?)?;
        let head = Head {
            node,
            serial,
            manifest,
            manifest_size,
            root,
            created,
            expires,
        };
        if head.render().as_bytes() != bytes {
            return Err("not in canonical form".into());
        }
        Ok(head)
    }
}

fn lines_magic(text: &str) -> Option<&str> {
    text.split('\n').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse_agree() {
        let head = Head {
            node: "web-01".into(),
            serial: 7,
            manifest: Hash::of(b"m"),
            manifest_size: 1,
            root: 2,
            created: Timestamp::from_unix_secs(1_700_000_000),
            expires: Timestamp::from_unix_secs(1_700_086_400),
        };
        let text = head.render();
        assert_eq!(Head::parse(text.as_bytes()).unwrap(), head);
        assert!(Head::parse(format!("{text}x").as_bytes()).is_err());
        assert!(Head::parse(text.replace("serial 7", "serial 07").as_bytes()).is_err());
        assert!(check_node("../x").is_err());
        assert!(check_node(".hidden").is_err());
        assert!(check_node("a/b").is_err());
    }
}
