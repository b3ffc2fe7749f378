//! Relative paths inside a policy tree, and the rules every one of them must follow.
//!
//! A policy path is valid UTF-8, relative, made of `/`-separated names that are neither
//! empty, `.` nor `..`, and holds no control character. Every path that reaches the
//! store or a staging directory has been through [`validate`], which is what keeps a
//! hostile source from naming anything outside the tree.

/// Longest name of one path component, as on Linux file systems.
pub const NAME_BYTES_MAX: usize = 255;

/// Names that the manifest and its signature use at the top of a source tree. They are
/// never part of the policy tree itself.
pub const MANIFEST_NAME: &str = "polstore.manifest";
pub const SIGNATURE_NAME: &str = "polstore.manifest.sig";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("absolute path")]
    Absolute,
    #[error("'..' or '.' component")]
    DotComponent,
    #[error("empty component ('//' or trailing '/')")]
    EmptyComponent,
    #[error("control character in name")]
    ControlCharacter,
    #[error("name longer than {NAME_BYTES_MAX} bytes")]
    NameTooLong,
    #[error("path longer than {max} bytes")]
    PathTooLong { max: usize },
    #[error("deeper than {max} directories")]
    TooDeep { max: usize },
    #[error("name is not valid UTF-8")]
    NotUtf8,
}

/// Limits a path is checked against; they come from the store's configuration.
#[derive(Clone, Copy, Debug)]
pub struct PathLimits {
    pub path_bytes_max: usize,
    pub depth_max: usize,
}

/// Checks `path` against the rules in the module documentation.
pub fn validate(path: &str, limits: PathLimits) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path.len() > limits.path_bytes_max {
        return Err(PathError::PathTooLong {
            max: limits.path_bytes_max,
        });
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    let mut depth = 0;
    for name in path.split('/') {
        match name {
            "" => return Err(PathError::EmptyComponent),
            "." | ".." => return Err(PathError::DotComponent),
            _ if name.len() > NAME_BYTES_MAX => return Err(PathError::NameTooLong),
            _ => depth += 1,
        }
    }
    // A file at depth 1 sits in the tree's root directory: `depth - 1` directories deep.
    if depth - 1 > limits.depth_max {
        return Err(PathError::TooDeep {
            max: limits.depth_max,
        });
    }
    Ok(())
}

/// Every proper ancestor directory of `path`, outermost first: `a/b/c` gives `a`, `a/b`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(index, _)| &path[..index])
}

/// Shows a hostile path in one line of an error message: control characters escaped, long
/// paths cut.
pub fn display(path: &[u8]) -> String {
    const SHOWN_CHARS_MAX: usize = 200;
    let text = String::from_utf8_lossy(path);
    let mut shown: String = text
        .chars()
        .take(SHOWN_CHARS_MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > SHOWN_CHARS_MAX {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PathLimits = PathLimits {
        path_bytes_max: 1024,
        depth_max: 4,
    };

    #[test]
    fn accepts_ordinary_policy_paths() {
        for path in [
            "promises.cf",
            "lib/files.cf",
            "a b/c-d_e.cf",
            "x/y/z/w/file",
            "é/ü.cf",
        ] {
            assert_eq!(validate(path, LIMITS), Ok(()), "{path}");
        }
    }

    #[test]
    fn refuses_paths_that_could_escape_or_confuse() {
        let long_name = "n".repeat(256);
        let long_path = ["abc"; 300].join("/");
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::DotComponent),
            ("a/../../x", PathError::DotComponent),
            ("./a", PathError::DotComponent),
            ("a//b", PathError::EmptyComponent),
            ("a/", PathError::EmptyComponent),
            ("a\nb", PathError::ControlCharacter),
            ("a\u{7f}", PathError::ControlCharacter),
            ("a\u{85}", PathError::ControlCharacter),
            (long_name.as_str(), PathError::NameTooLong),
            (long_path.as_str(), PathError::PathTooLong { max: 1024 }),
            ("1/2/3/4/5/file", PathError::TooDeep { max: 4 }),
        ];
        for (path, expected) in cases {
            assert_eq!(validate(path, LIMITS), Err(expected), "{path:?}");
        }
    }

    #[test]
    fn ancestors_are_outermost_first() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("c").count(), 0);
    }

    #[test]
    fn display_escapes_control_characters() {
        assert_eq!(display(b"a\nb"), "a\\nb");
        assert_eq!(display(b"\xff"), "\u{fffd}");
    }
}
