//! A manifest delta: a new manifest told as changes to one the node already has.
//!
//! ```text
//! polstore-manifest-delta 1
//! s 4          skip the next 4 lines of the base
//! + LINE       add LINE (a manifest line, without its newline)
//! c 2998       copy the next 2998 lines of the base
//! ```
//!
//! Applying reads the base's lines once, front to back, and must use every one of them.
//! The result is not trusted for being a delta's: the head names the manifest's hash and
//! size, and the result must have both (then its signatures are checked as any
//! manifest's). A delta is made only between canonical manifests, whose entries are
//! sorted by path, so a one-file change is a few lines whatever the tree's size.

const MAGIC: &str = "polstore-manifest-delta 1";

/// Lines of `text` without their newlines (a manifest ends with one).
fn lines(text: &[u8]) -> Vec<&[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|byte| *byte == b'\n').collect()
}

/// The sort key of an entry line: its path.
fn path_of(line: &[u8]) -> &[u8] {
    if let Some(path) = line.strip_prefix(b"directory ") {
        return path;
    }
    let mut spaces = 0;
    for (index, byte) in line.iter().enumerate() {
        if *byte == b' ' {
            spaces += 1;
            if spaces == 3 {
                return &line[index + 1..];
            }
        }
    }
    line
}

/// The delta that turns `base` into `target`, both canonical manifests.
pub fn make(base: &[u8], target: &[u8]) -> Vec<u8> {
    let (base, target) = (lines(base), lines(target));
    let header = |lines: &[&[u8]]| {
        lines
            .iter()
            .position(|line| line.is_empty())
            .map_or(lines.len(), |blank| blank + 1)
    };
    let (base_header, target_header) = (header(&base), header(&target));
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b'\n');
    let mut pending: Option<(u8, usize)> = None;
    let mut op = |out: &mut Vec<u8>, kind: u8, count: usize, added: Option<&[u8]>| {
        if let Some(line) = added {
            flush(out, &mut pending);
            out.extend_from_slice(b"+ ");
            out.extend_from_slice(line);
            out.push(b'\n');
            return;
        }
        match &mut pending {
            Some((pending_kind, pending_count)) if *pending_kind == kind => {
                *pending_count += count;
            }
            _ => {
                flush(out, &mut pending);
                pending = Some((kind, count));
            }
        }
    };
    // The header always changes (serial, created): replaced whole.
    let same_header = base[..base_header] == target[..target_header];
    if same_header {
        op(&mut out, b'c', base_header, None);
    } else {
        op(&mut out, b's', base_header, None);
        for line in &target[..target_header] {
            op(&mut out, 0, 0, Some(line));
        }
    }
    let (mut left, mut right) = (base_header, target_header);
    while left < base.len() || right < target.len() {
        match (base.get(left), target.get(right)) {
            (Some(old), Some(new)) if old == new => {
                op(&mut out, b'c', 1, None);
                left += 1;
                right += 1;
            }
            (Some(old), Some(new)) if path_of(old) == path_of(new) => {
                op(&mut out, b's', 1, None);
                op(&mut out, 0, 0, Some(new));
                left += 1;
                right += 1;
            }
            (Some(old), new) if new.is_none_or(|new| path_of(old) < path_of(new)) => {
                op(&mut out, b's', 1, None);
                left += 1;
            }
            (_, Some(new)) => {
                op(&mut out, 0, 0, Some(new));
                right += 1;
            }
            (Some(_), None) | (None, None) => unreachable!("the arms above take these"),
        }
    }
    flush(&mut out, &mut pending);
    out
}

fn flush(out: &mut Vec<u8>, pending: &mut Option<(u8, usize)>) {
    if let Some((kind, count)) = pending.take() {
        out.push(kind);
        out.push(b' ');
        out.extend_from_slice(count.to_string().as_bytes());
        out.push(b'\n');
    }
}

/// Applies `delta` to `base`; the result is at most `limit` bytes.
pub fn apply(base: &[u8], delta: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let base = lines(base);
    let Some(body) = delta
        .strip_prefix(MAGIC.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"\n"))
    else {
        return Err(format!("not a manifest delta: expected '{MAGIC}' first"));
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    for (number, line) in lines(body).into_iter().enumerate() {
        let line_number = number + 2;
        let push = |out: &mut Vec<u8>, line: &[u8]| {
            if out.len() + line.len() + 1 > limit {
                return Err(format!("makes a manifest larger than {limit} bytes"));
            }
            out.extend_from_slice(line);
            out.push(b'\n');
            Ok(())
        };
        if let Some(added) = line.strip_prefix(b"+ ") {
            push(&mut out, added)?;
            continue;
        }
        let (kind, count) = match (line.first(), line.get(1), line.get(2..)) {
            (Some(kind @ (b'c' | b's')), Some(b' '), Some(count)) => (*kind, count),
            _ => {
                return Err(format!(
                    "line {line_number}: expected 'c N', 's N' or '+ LINE'"
                ));
            }
        };
        let count = std::str::from_utf8(count)
            .ok()
            .and_then(|count| count.parse::<usize>().ok())
            .ok_or_else(|| format!("line {line_number}: not a count"))?;
        let end = at
            .checked_add(count)
            .filter(|end| *end <= base.len())
            .ok_or_else(|| {
                format!(
                    "line {line_number}: goes past the base's {} lines",
                    base.len()
                )
            })?;
        if kind == b'c' {
            for line in &base[at..end] {
                push(&mut out, line)?;
            }
        }
        at = end;
    }
    if at != base.len() {
        return Err(format!(
            "leaves {} of the base's {} lines unused",
            base.len() - at,
            base.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "polstore-manifest 1\nserial 1\ncreated 2026-01-01T00:00:00Z\n\n\
        aa 0644 1 a\nbb 0644 1 b\ncc 0644 1 c\n";

    fn round_trip(base: &str, target: &str) -> Vec<u8> {
        let delta = make(base.as_bytes(), target.as_bytes());
        assert_eq!(
            apply(base.as_bytes(), &delta, 1 << 20).unwrap(),
            target.as_bytes(),
            "{}",
            String::from_utf8_lossy(&delta)
        );
        delta
    }

    #[test]
    fn changes_additions_removals_and_headers() {
        let changed = BASE
            .replace("serial 1", "serial 2")
            .replace("bb 0644 1 b", "bd 0644 2 b");
        let delta = round_trip(BASE, &changed);
        assert_eq!(
            String::from_utf8(delta).unwrap(),
            "polstore-manifest-delta 1\ns 4\n+ polstore-manifest 1\n+ serial 2\n\
             + created 2026-01-01T00:00:00Z\n+ \nc 1\ns 1\n+ bd 0644 2 b\nc 1\n"
        );
        round_trip(BASE, &BASE.replace("bb 0644 1 b\n", ""));
        round_trip(
            BASE,
            &BASE.replace("cc 0644 1 c\n", "cc 0644 1 c\ndd 0644 1 d\n"),
        );
        round_trip(
            BASE,
            &BASE.replace("aa 0644 1 a\n", "a0 0644 1 0\naa 0644 1 a\n"),
        );
        round_trip(
            BASE,
            &BASE
                .replace("polstore-manifest 1", "polstore-manifest 2")
                .replace("bb 0644 1 b\n", "directory b\n"),
        );
        round_trip(BASE, BASE);
    }

    #[test]
    fn a_bad_delta_is_refused() {
        let base = BASE.as_bytes();
        assert!(apply(base, b"junk\n", 1000).is_err());
        let past = apply(base, b"polstore-manifest-delta 1\nc 99\n", 1000).unwrap_err();
        assert_eq!(past, "line 2: goes past the base's 7 lines");
        let short = apply(base, b"polstore-manifest-delta 1\nc 6\n", 1000).unwrap_err();
        assert_eq!(short, "leaves 1 of the base's 7 lines unused");
        let big = apply(base, b"polstore-manifest-delta 1\nc 7\n", 10).unwrap_err();
        assert_eq!(big, "makes a manifest larger than 10 bytes");
        assert!(apply(base, b"polstore-manifest-delta 1\nc -1\n", 1000).is_err());
    }
}
