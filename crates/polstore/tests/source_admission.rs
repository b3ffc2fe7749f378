//! `candidate::source`: what a directory or tar source (plain, gzip or bzip2) yields, and
//! every refusal of the admission gate (type, name, mode, limits) and of the archive
//! reader.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use polstore::candidate::source::{self, Item, Source};
use polstore::config::LimitsConfig;
use polstore::error::{Check, Error, Rejection, Result};
use tar::{EntryType, Header};

/// An item with what both kinds of source give (a directory's stamps left out).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    File {
        path: String,
        mode: u32,
        content: Vec<u8>,
    },
    Manifest(Vec<u8>),
    Signature(Vec<u8>),
    EmptyDirectory(String),
}

/// Reads `source` through the gate; returns what the sink got, and whether every file
/// came with a stamp.
fn read(source: &Source, limits: &LimitsConfig) -> Result<(Vec<Seen>, bool)> {
    let mut seen = Vec::new();
    let mut all_stamped = true;
    source::read(source, limits, &mut |item| {
        seen.push(match item {
            Item::File {
                path,
                mode,
                content,
                stamp,
            } => {
                all_stamped &= stamp.is_some();
                Seen::File {
                    path,
                    mode,
                    content,
                }
            }
            Item::Known { path, .. } => panic!("{path}: no oracle was given"),
            Item::Manifest(bytes) => Seen::Manifest(bytes),
            Item::Signature(bytes) => Seen::Signature(bytes),
            Item::EmptyDirectory(path) => Seen::EmptyDirectory(path),
        });
        Ok(())
    })?;
    Ok((seen, all_stamped))
}

/// The source check's rejection of `source`; panics on anything else.
fn refusal(source: &Source, limits: &LimitsConfig) -> Rejection {
    match read(source, limits) {
        Err(Error::Rejected(rejection)) => {
            assert_eq!(rejection.check, Check::Source, "{rejection}");
            rejection
        }
        Err(error) => panic!("expected a rejection, got {error:?}"),
        Ok((items, _)) => panic!("expected a rejection, got {}", describe(&items)),
    }
}

/// The items' names, for a message (their content may be large).
fn describe(items: &[Seen]) -> String {
    let names: Vec<String> = items
        .iter()
        .map(|item| match item {
            Seen::File { path, content, .. } => format!("{path} ({} bytes)", content.len()),
            Seen::Manifest(_) => "the manifest".to_string(),
            Seen::Signature(_) => "the signature".to_string(),
            Seen::EmptyDirectory(path) => format!("{path}/ (empty)"),
        })
        .collect();
    names.join(", ")
}

/// Asserts the rejection names `path` (in its field and its message) and gives `reason`.
fn assert_refused(rejection: &Rejection, path: &str, reason: &str) {
    assert_eq!(rejection.path.as_deref(), Some(path), "{rejection}");
    assert_eq!(rejection.reason, reason, "{rejection}");
    assert_eq!(
        rejection.to_string(),
        format!("rejected by the source check: {path}: {reason}")
    );
}

fn limits() -> LimitsConfig {
    LimitsConfig::default()
}

/// A directory holding `files` (path, content, mode).
fn directory(files: &[(&str, &[u8], u32)]) -> (tempfile::TempDir, PathBuf) {
    let temporary = tempfile::tempdir().unwrap();
    let root = temporary.path().join("source");
    fs::create_dir(&root).unwrap();
    for (path, content, mode) in files {
        common::write_file(&root.join(path), content, *mode);
    }
    (temporary, root)
}

/// One entry of a hand-made tar archive. The name goes into the header as raw bytes, so
/// that names a careful writer would refuse (`..`, absolute) can be written.
struct TarEntry<'a> {
    name: &'a [u8],
    kind: EntryType,
    mode: u32,
    content: &'a [u8],
}

fn file<'a>(name: &'a str, content: &'a [u8], mode: u32) -> TarEntry<'a> {
    TarEntry {
        name: name.as_bytes(),
        kind: EntryType::Regular,
        mode,
        content,
    }
}

fn special(name: &str, kind: EntryType) -> TarEntry<'_> {
    TarEntry {
        name: name.as_bytes(),
        kind,
        mode: 0o644,
        content: b"",
    }
}

fn tar_bytes(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = Header::new_gnu();
        assert!(entry.name.len() <= 100, "names fit the old header");
        header.as_old_mut().name[..entry.name.len()].copy_from_slice(entry.name);
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_size(entry.content.len() as u64);
        header.set_mtime(0);
        match entry.kind {
            EntryType::Symlink | EntryType::Link => header.set_link_name("promises.cf").unwrap(),
            EntryType::Char | EntryType::Block => {
                header.set_device_major(1).unwrap();
                header.set_device_minor(3).unwrap();
            }
            _ => {}
        }
        header.set_cksum();
        builder.append(&header, entry.content).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn bzip2(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `bytes` compressed in `count` bzip2 streams one after the other, as `pbzip2` writes
/// them (and `bzip2 -c a b`): the cuts fall inside tar headers and file data.
fn bzip2_streams(bytes: &[u8], count: usize) -> Vec<u8> {
    let part = bytes.len().div_ceil(count);
    bytes.chunks(part).flat_map(bzip2).collect()
}

/// Writes `bytes` to an archive file and returns it as a source.
fn archive(bytes: &[u8]) -> (tempfile::TempDir, Source) {
    let temporary = tempfile::tempdir().unwrap();
    let path = temporary.path().join("candidate.tar");
    fs::write(&path, bytes).unwrap();
    (temporary, Source::Archive(path))
}

fn tar_refusal(entries: &[TarEntry], limits: &LimitsConfig) -> Rejection {
    let (_temporary, source) = archive(&tar_bytes(entries));
    refusal(&source, limits)
}

fn directory_refusal(root: &Path, limits: &LimitsConfig) -> Rejection {
    refusal(&Source::Directory(root.to_path_buf()), limits)
}

// --- The same files from every kind of source ---------------------------------------

#[test]
fn a_directory_a_tar_a_tar_gz_and_a_tar_bz2_with_the_same_files_give_the_same_items() {
    let files: &[(&str, &[u8], u32)] = &[
        ("promises.cf", b"body common control {}\n", 0o644),
        ("lib/a.cf", b"# a\n", 0o600),
        ("lib/deep/run.sh", b"#!/bin/sh\nexit 0\n", 0o755),
        ("empty.cf", b"", 0o644),
        ("polstore.manifest", b"not parsed by the source\n", 0o644),
        ("polstore.manifest.sig", b"nor is this\n", 0o644),
    ];
    let (_temporary, root) = directory(files);
    let (mut from_directory, stamped) = read(&Source::Directory(root), &limits()).unwrap();
    assert!(stamped, "a directory source's files carry their stamps");
    from_directory.sort();

    // In another order than the directory's, every other name with "./" before it.
    let names: Vec<String> = files
        .iter()
        .rev()
        .enumerate()
        .map(|(index, (path, _, _))| {
            if index % 2 == 0 {
                format!("./{path}")
            } else {
                path.to_string()
            }
        })
        .collect();
    let mut entries = vec![
        special("./", EntryType::Directory),
        special("lib/", EntryType::Directory),
        special("./lib/deep/", EntryType::Directory),
    ];
    for (name, (_, content, mode)) in names.iter().zip(files.iter().rev()) {
        entries.push(file(name, content, *mode));
    }
    let tar = tar_bytes(&entries);
    let in_streams = bzip2_streams(&tar, 3);
    assert_eq!(in_streams.windows(4).filter(|w| w == b"BZh9").count(), 3);
    for bytes in [tar.clone(), gzip(&tar), bzip2(&tar), in_streams] {
        let (_temporary, source) = archive(&bytes);
        let (mut from_archive, stamped) = read(&source, &limits()).unwrap();
        assert!(!stamped, "an archive's files have no stamps");
        from_archive.sort();
        assert_eq!(from_archive, from_directory);
    }

    let mut expected: Vec<Seen> = files
        .iter()
        .map(|(path, content, mode)| match *path {
            "polstore.manifest" => Seen::Manifest(content.to_vec()),
            "polstore.manifest.sig" => Seen::Signature(content.to_vec()),
            _ => Seen::File {
                path: path.to_string(),
                mode: *mode,
                content: content.to_vec(),
            },
        })
        .collect();
    expected.sort();
    assert_eq!(from_directory, expected);
}

// --- Refusals by type ----------------------------------------------------------------

#[test]
fn a_symlink_in_a_directory_source_is_refused() {
    let (_temporary, root) = directory(&[("promises.cf", b"p", 0o644)]);
    std::os::unix::fs::symlink("/etc/passwd", root.join("link.cf")).unwrap();
    assert_refused(
        &directory_refusal(&root, &limits()),
        "link.cf",
        "is a symbolic link; only regular files and directories are accepted",
    );
}

#[test]
fn a_symlink_to_a_directory_is_refused_not_followed() {
    let (_temporary, root) = directory(&[("promises.cf", b"p", 0o644)]);
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    assert_refused(
        &directory_refusal(&root, &limits()),
        "etc",
        "is a symbolic link; only regular files and directories are accepted",
    );
}

#[test]
fn a_fifo_in_a_directory_source_is_refused() {
    let (_temporary, root) = directory(&[("promises.cf", b"p", 0o644), ("lib/a.cf", b"a", 0o644)]);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("lib/pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    // Refused without being opened: a fifo with no writer would block the read.
    assert_refused(
        &directory_refusal(&root, &limits()),
        "lib/pipe",
        "is a fifo; only regular files and directories are accepted",
    );
}

#[test]
fn a_device_node_in_a_directory_source_is_refused() {
    if !common::root_or_skip("a_device_node_in_a_directory_source_is_refused") {
        return;
    }
    let (_temporary, root) = directory(&[("promises.cf", b"p", 0o644)]);
    for (name, kind) in [
        ("null", rustix::fs::FileType::CharacterDevice),
        ("disk", rustix::fs::FileType::BlockDevice),
    ] {
        let path = root.join(name);
        if let Err(error) = rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            kind,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 3),
        ) {
            // Root without CAP_MKNOD (some containers) cannot make them either.
            assert_eq!(error, rustix::io::Errno::PERM, "mknod {name}: {error}");
            eprintln!("a_device_node_in_a_directory_source_is_refused: skipped: mknod: {error}");
            return;
        }
        assert_refused(
            &directory_refusal(&root, &limits()),
            name,
            "is a device node; only regular files and directories are accepted",
        );
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn a_hard_linked_file_in_a_directory_source_is_refused() {
    let (_temporary, root) = directory(&[("a.cf", b"a", 0o644)]);
    fs::hard_link(root.join("a.cf"), root.join("b.cf")).unwrap();
    assert_refused(
        &directory_refusal(&root, &limits()),
        "a.cf",
        "is a hard link (2 links); only files with one link are accepted",
    );
}

#[test]
fn links_devices_and_fifos_in_a_tar_source_are_refused() {
    for (kind, what) in [
        (EntryType::Symlink, "symbolic link"),
        (EntryType::Link, "hard link"),
        (EntryType::Char, "device node"),
        (EntryType::Block, "device node"),
        (EntryType::Fifo, "fifo"),
    ] {
        let rejection = tar_refusal(
            &[
                file("promises.cf", b"p", 0o644),
                special("lib/odd.cf", kind),
            ],
            &limits(),
        );
        assert_refused(
            &rejection,
            "lib/odd.cf",
            &format!("is a {what}; only regular files and directories are accepted"),
        );
    }
}

#[test]
fn a_manifest_that_is_not_a_regular_file_is_refused() {
    let rejection = tar_refusal(
        &[
            file("promises.cf", b"p", 0o644),
            special("polstore.manifest", EntryType::Symlink),
        ],
        &limits(),
    );
    assert_refused(&rejection, "polstore.manifest", "must be a regular file");

    let (_temporary, root) = directory(&[("promises.cf", b"p", 0o644)]);
    std::os::unix::fs::symlink("/etc/passwd", root.join("polstore.manifest")).unwrap();
    assert_refused(
        &directory_refusal(&root, &limits()),
        "polstore.manifest",
        "is a symbolic link; expected a regular file",
    );
}

// --- Refusals by name ----------------------------------------------------------------

#[test]
fn names_that_leave_the_tree_are_refused_in_a_tar_source() {
    for (name, reason) in [
        ("../escape.cf", "'..' or '.' component"),
        ("lib/../../escape.cf", "'..' or '.' component"),
        ("lib/./a.cf", "'..' or '.' component"),
        ("/etc/passwd", "absolute path"),
        ("lib//a.cf", "empty component ('//' or trailing '/')"),
    ] {
        let rejection = tar_refusal(
            &[file("promises.cf", b"p", 0o644), file(name, b"x", 0o644)],
            &limits(),
        );
        assert_refused(&rejection, name, reason);
    }
}

#[test]
fn a_name_with_a_newline_is_refused_and_shown_escaped() {
    // The message stays one line: the newline is shown as \n.
    let rejection = tar_refusal(
        &[
            file("promises.cf", b"p", 0o644),
            file("bad\nname.cf", b"x", 0o644),
        ],
        &limits(),
    );
    assert_refused(&rejection, "bad\\nname.cf", "control character in name");
    assert!(!rejection.to_string().contains('\n'));

    let (_temporary, root) = directory(&[
        ("promises.cf", b"p", 0o644),
        ("lib/bad\nname.cf", b"x", 0o644),
    ]);
    assert_refused(
        &directory_refusal(&root, &limits()),
        "lib/bad\\nname.cf",
        "control character in name",
    );
}

#[test]
fn a_name_that_is_not_utf8_is_refused() {
    let (_temporary, root) = directory(&[("promises.cf", b"p", 0o644)]);
    let name = OsStr::from_bytes(b"bad\xffname.cf");
    common::write_file(&root.join(name), b"x", 0o644);
    assert_refused(
        &directory_refusal(&root, &limits()),
        "bad\u{fffd}name.cf",
        "name is not valid UTF-8",
    );
}

#[test]
fn paths_beyond_the_depth_and_length_limits_are_refused() {
    let limits = LimitsConfig {
        depth_max: 2,
        path_bytes_max: 20,
        ..limits()
    };
    let (_temporary, root) = directory(&[("a/b/c/deep.cf", b"x", 0o644)]);
    assert_refused(
        &directory_refusal(&root, &limits),
        "a/b/c/deep.cf",
        "deeper than 2 directories",
    );
    let long = "a-rather-long-name.cf.txt";
    let rejection = tar_refusal(&[file(long, b"x", 0o644)], &limits);
    assert_refused(&rejection, long, "path longer than 20 bytes");
}

#[test]
fn a_file_twice_or_a_file_that_is_also_a_directory_is_refused() {
    let rejection = tar_refusal(
        &[file("a.cf", b"1", 0o644), file("./a.cf", b"2", 0o644)],
        &limits(),
    );
    assert_refused(&rejection, "a.cf", "appears twice in the source");
    let rejection = tar_refusal(
        &[file("lib", b"1", 0o644), file("lib/a.cf", b"2", 0o644)],
        &limits(),
    );
    assert_refused(&rejection, "lib/a.cf", "is both a file and a directory");
}

// --- Refusals by mode ----------------------------------------------------------------

#[test]
fn setuid_setgid_sticky_and_writable_modes_are_refused() {
    for (mode, reason) in [
        (0o4755, "mode 4755 has a setuid, setgid or sticky bit"),
        (0o2755, "mode 2755 has a setuid, setgid or sticky bit"),
        (0o1644, "mode 1644 has a setuid, setgid or sticky bit"),
        (0o664, "mode 0664 is group or world writable"),
        (0o646, "mode 0646 is group or world writable"),
    ] {
        let (_temporary, root) = directory(&[
            ("promises.cf", b"p", 0o644),
            ("lib/tool.sh", b"#!/bin/sh\n", mode),
        ]);
        assert_refused(&directory_refusal(&root, &limits()), "lib/tool.sh", reason);
        let rejection = tar_refusal(
            &[
                file("promises.cf", b"p", 0o644),
                file("lib/tool.sh", b"#!/bin/sh\n", mode),
            ],
            &limits(),
        );
        assert_refused(&rejection, "lib/tool.sh", reason);
    }
}

// --- Refusals by limit ---------------------------------------------------------------

#[test]
fn more_files_than_files_max_is_refused() {
    let limits = LimitsConfig {
        files_max: 2,
        ..limits()
    };
    let files: &[(&str, &[u8], u32)] = &[
        ("a.cf", b"a", 0o644),
        ("b.cf", b"b", 0o644),
        ("c.cf", b"c", 0o644),
    ];
    let (_temporary, root) = directory(files);
    let entries: Vec<TarEntry> = files
        .iter()
        .map(|(path, content, mode)| file(path, content, *mode))
        .collect();
    for rejection in [
        directory_refusal(&root, &limits),
        tar_refusal(&entries, &limits),
    ] {
        assert_eq!(rejection.reason, "more than 2 files (limits.files_max)");
        // FIXME: the module documentation of candidate::source says "a refusal names the
        // entry and the rule", but the files_max refusal names no entry (path is None):
        // the file that crossed the limit (c.cf) is known to `Admission::file` and not
        // reported. This asserts today's behaviour.
        assert_eq!(rejection.path, None);
        assert_eq!(
            rejection.to_string(),
            "rejected by the source check: more than 2 files (limits.files_max)"
        );
    }
    // Exactly files_max files pass.
    let (_temporary, root) = directory(&files[..2]);
    read(&Source::Directory(root), &limits).unwrap();
}

#[test]
fn a_file_over_file_bytes_max_is_refused() {
    let limits = LimitsConfig {
        file_bytes_max: 10,
        ..limits()
    };
    let reason = "11 bytes is over the limit of 10 bytes per file (limits.file_bytes_max)";
    let (_temporary, root) = directory(&[
        ("ok.cf", b"0123456789", 0o644),
        ("lib/big.cf", b"0123456789A", 0o644),
    ]);
    assert_refused(&directory_refusal(&root, &limits), "lib/big.cf", reason);
    let rejection = tar_refusal(
        &[
            file("ok.cf", b"0123456789", 0o644),
            file("lib/big.cf", b"0123456789A", 0o644),
        ],
        &limits,
    );
    assert_refused(&rejection, "lib/big.cf", reason);
}

#[test]
fn more_bytes_than_tree_bytes_max_is_refused() {
    let limits = LimitsConfig {
        tree_bytes_max: 20,
        ..limits()
    };
    let (_temporary, root) = directory(&[
        ("a.cf", b"0123456789", 0o644),
        ("b.cf", b"0123456789", 0o644),
        ("c.cf", b"0", 0o644),
    ]);
    let entries = [
        file("a.cf", b"0123456789", 0o644),
        file("b.cf", b"0123456789", 0o644),
        file("c.cf", b"0", 0o644),
    ];
    for rejection in [
        directory_refusal(&root, &limits),
        tar_refusal(&entries, &limits),
    ] {
        assert_eq!(
            rejection.reason,
            "more than 20 bytes in all (limits.tree_bytes_max)"
        );
        // FIXME: as for files_max, the refusal names no entry although the module
        // documentation promises one; c.cf crossed the limit. Today's behaviour.
        assert_eq!(rejection.path, None);
    }
}

/// A mebibyte of zeros compressed by `compress`, `count` times over: as many streams (or
/// gzip members) one after the other, which both decoders read as one.
fn compressed_zeros(compress: fn(&[u8]) -> Vec<u8>, count: usize) -> Vec<u8> {
    compress(&vec![0; 1 << 20]).repeat(count)
}

#[test]
fn a_compressed_bomb_is_cut_at_the_limits_quickly() {
    // The fuzz target's limits: the decompressed stream is cut at about 34 MiB (the tree's
    // bytes, tar's overhead for files_max entries, a manifest and a signature).
    let limits = LimitsConfig {
        files_max: 64,
        file_bytes_max: 1 << 16,
        tree_bytes_max: 1 << 20,
        depth_max: 8,
        path_bytes_max: 256,
    };
    let policy = tar_bytes(&[file("promises.cf", b"p", 0o644)]);
    // promises.cf, then a directory whose header says a gibibyte of data follows (256 MiB
    // of zeros do): the tar reader skips data it is not asked for, so only the cap on
    // decompressed bytes stops it.
    let mut directory = Header::new_gnu();
    directory.set_path("lib/").unwrap();
    directory.set_entry_type(EntryType::Directory);
    directory.set_mode(0o755);
    directory.set_size(1 << 30);
    directory.set_cksum();
    let before_bomb = [&policy[..1024], directory.as_bytes()].concat();
    for (name, compress) in [("gzip", gzip as fn(&[u8]) -> Vec<u8>), ("bzip2", bzip2)] {
        for (shape, bytes, reason) in [
            (
                "a directory's data",
                [
                    compress(&before_bomb),
                    compressed_zeros(compress, 256),
                    compress(&[0; 1024]),
                ]
                .concat(),
                "archive is larger than the configured limits allow".to_string(),
            ),
            (
                "after the tar's end",
                [compress(&policy), compressed_zeros(compress, 256)].concat(),
                format!(
                    "more than {} bytes follow the end of the tar archive",
                    1 << 20
                ),
            ),
        ] {
            assert!(
                bytes.len() < 1 << 20,
                "{name}, {shape}: {} bytes",
                bytes.len()
            );
            let (_temporary, source) = archive(&bytes);
            let started = Instant::now();
            let rejection = refusal(&source, &limits);
            assert_eq!(rejection.reason, reason, "{name}, {shape}");
            assert_eq!(rejection.path, None, "{name}, {shape}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name}, {shape}: refusing the bomb took {:?}",
                started.elapsed()
            );
        }
    }
}

// --- Damaged archives ----------------------------------------------------------------

fn archive_refusal(bytes: &[u8]) -> Rejection {
    let (_temporary, source) = archive(bytes);
    let rejection = refusal(&source, &limits());
    assert_eq!(rejection.path, None, "{rejection}");
    rejection
}

#[test]
fn a_truncated_tar_gz_is_refused_as_truncated() {
    let big = common::noise(64 << 10, 1);
    let tar = tar_bytes(&[
        file("promises.cf", b"p", 0o644),
        file("lib/big.dat", &big, 0o644),
    ]);
    let compressed = gzip(&tar);
    for cut in [
        20,
        compressed.len() / 4,
        compressed.len() / 2,
        compressed.len() * 3 / 4,
    ] {
        let rejection = archive_refusal(&compressed[..cut]);
        assert_eq!(rejection.reason, "the archive is truncated", "cut at {cut}");
    }
}

#[test]
fn a_plain_tar_cut_at_an_entry_boundary_is_accepted_without_the_files_after_the_cut() {
    let tar = tar_bytes(&[
        file("promises.cf", b"p", 0o644),
        file("lib/later.cf", b"# cut off\n", 0o644),
    ]);
    // promises.cf's header and its one data block; no end-of-archive blocks.
    let (_temporary, source) = archive(&tar[..1024]);
    // FIXME: the cut is not detected. The tar reader takes the end of the input at a
    // header boundary for the end of the archive (it does not require the two zero
    // blocks), so a tarball truncated between entries is read as a complete, smaller
    // tree: lib/later.cf is silently missing. Without a manifest (trust.require_signature
    // = false) such a candidate is ingested as is. This asserts today's behaviour; it
    // should be refused as "the archive is truncated".
    let (items, _) = read(&source, &limits()).unwrap();
    assert_eq!(
        items,
        vec![Seen::File {
            path: "promises.cf".to_string(),
            mode: 0o644,
            content: b"p".to_vec(),
        }]
    );
}

#[test]
fn a_tar_gz_whose_gzip_trailer_is_cut_or_damaged_is_refused() {
    let tar = tar_bytes(&[file("promises.cf", &common::noise(4096, 6), 0o644)]);
    let compressed = gzip(&tar);
    // The tar's end-of-archive block comes before the gzip trailer (CRC-32 and length):
    // the reader goes on to the stream's end, so that the trailer is checked too.
    let rejection = archive_refusal(&compressed[..compressed.len() - 4]);
    assert_eq!(rejection.reason, "the archive is truncated");
    let mut damaged_crc = compressed.clone();
    let crc_at = compressed.len() - 8;
    damaged_crc[crc_at] ^= 0xff;
    let rejection = archive_refusal(&damaged_crc);
    assert_eq!(
        rejection.reason,
        "not a valid gzip stream: corrupt gzip stream does not have a matching checksum"
    );
}

#[test]
fn a_truncated_tar_bz2_is_refused_as_truncated() {
    let tar = tar_bytes(&[
        file("promises.cf", b"p", 0o644),
        file("lib/big.dat", &common::noise(64 << 10, 7), 0o644),
    ]);
    let compressed = bzip2(&tar);
    // Inside the header, the first block, the tar's end and the stream's end-of-stream
    // marker and checksum (its last 10 bytes, read only after the tar's end).
    for cut in [
        3,
        20,
        compressed.len() / 4,
        compressed.len() / 2,
        compressed.len() * 3 / 4,
        compressed.len() - 8,
        compressed.len() - 1,
    ] {
        let rejection = archive_refusal(&compressed[..cut]);
        assert_eq!(rejection.reason, "the archive is truncated", "cut at {cut}");
    }
    // A later stream cut short is as truncated as the first.
    let in_streams = bzip2_streams(&tar, 2);
    let rejection = archive_refusal(&in_streams[..in_streams.len() - 1]);
    assert_eq!(rejection.reason, "the archive is truncated");
}

#[test]
fn a_damaged_tar_bz2_is_refused_as_not_valid_bzip2() {
    let tar = tar_bytes(&[file("promises.cf", &common::noise(4096, 8), 0o644)]);
    let compressed = bzip2(&tar);
    let corrupt = "not a valid bzip2 stream: the compressed data is corrupt";
    let no_magic = "not a valid bzip2 stream: no bzip2 magic where a stream should start";
    // Every bit of the byte: the stream ends on a bit, not a byte, so its last byte holds
    // the CRC's last bits and up to 7 bits of padding that nothing checks.
    let flipped = |at: usize| {
        let mut bytes = compressed.clone();
        bytes[at] ^= 0xff;
        bytes
    };
    let mut after_garbage = compressed.clone();
    after_garbage.extend_from_slice(b"not another stream");
    let cases: &[(&str, Vec<u8>, &str)] = &[
        // "BZh", a block size, a block's magic, then its CRC: the data decodes, the CRC
        // does not match it.
        ("the first block's CRC", flipped(10), corrupt),
        (
            "the stream's CRC, after the tar's end",
            flipped(compressed.len() - 1),
            corrupt,
        ),
        ("the block's coding tables", flipped(40), corrupt),
        ("a block size that is no digit", flipped(3), no_magic),
        (
            "garbage after the magic",
            [b"BZh9".as_slice(), &common::noise(4096, 9)].concat(),
            corrupt,
        ),
        ("garbage after the stream's end", after_garbage, no_magic),
    ];
    for (case, bytes, reason) in cases {
        let rejection = archive_refusal(bytes);
        assert_eq!(rejection.reason, *reason, "{case}");
        assert_eq!(
            rejection.to_string(),
            format!("rejected by the source check: {reason}"),
            "{case}"
        );
    }
}

#[test]
fn a_truncated_plain_tar_is_refused_as_truncated() {
    let tar = tar_bytes(&[
        file("promises.cf", b"p", 0o644),
        file("lib/big.dat", &common::noise(8 << 10, 2), 0o644),
    ]);
    for cut in [512 + 100, tar.len() / 2] {
        let rejection = archive_refusal(&tar[..cut]);
        assert_eq!(rejection.reason, "the archive is truncated", "cut at {cut}");
    }
}

#[test]
fn garbage_after_a_gzip_magic_is_refused_as_not_valid_gzip() {
    let mut bytes = vec![0x1f, 0x8b];
    bytes.extend(common::noise(4096, 3));
    let rejection = archive_refusal(&bytes);
    assert!(
        rejection.reason.starts_with("not a valid gzip stream: "),
        "{rejection}"
    );

    // A valid gzip header followed by a damaged deflate stream.
    let mut damaged = gzip(&tar_bytes(&[file(
        "promises.cf",
        &common::noise(4096, 4),
        0o644,
    )]));
    let middle = damaged.len() / 2;
    for byte in &mut damaged[20..middle] {
        *byte ^= 0x5a;
    }
    let rejection = archive_refusal(&damaged);
    assert!(
        rejection.reason.starts_with("not a valid gzip stream: "),
        "{rejection}"
    );
}

#[test]
fn bytes_that_are_neither_gzip_nor_tar_are_refused_as_not_a_tar_archive() {
    let rejection = archive_refusal(&common::noise(4096, 5));
    assert!(
        rejection.reason.starts_with("not a valid tar archive: "),
        "{rejection}"
    );
}

#[test]
fn an_empty_source_is_refused() {
    assert_eq!(archive_refusal(b"").reason, "the source is empty");
    let (_temporary, root) = directory(&[]);
    fs::create_dir(root.join("lib")).unwrap();
    let rejection = directory_refusal(&root, &limits());
    assert_eq!(rejection.reason, "the source holds no policy files");
    assert_eq!(rejection.path, None);
    // A manifest alone is not a policy.
    let rejection = tar_refusal(&[file("polstore.manifest", b"m", 0o644)], &limits());
    assert_eq!(rejection.reason, "the source holds no policy files");
}

#[test]
fn a_directory_named_like_the_manifest_is_refused_from_a_directory_and_from_a_tar() {
    let (_temporary, root) = directory(&[
        ("promises.cf", b"p", 0o644),
        ("polstore.manifest/notes.cf", b"n", 0o644),
    ]);
    assert_refused(
        &directory_refusal(&root, &limits()),
        "polstore.manifest",
        "is a directory; expected a regular file",
    );
    // The same tree from a tar: with the directory entry, and without it (implied by a
    // file below it).
    let with_entry = tar_refusal(
        &[
            file("promises.cf", b"p", 0o644),
            special("polstore.manifest/", EntryType::Directory),
            file("polstore.manifest/notes.cf", b"n", 0o644),
        ],
        &limits(),
    );
    assert_refused(&with_entry, "polstore.manifest", "must be a regular file");
    let implied = tar_refusal(
        &[
            file("promises.cf", b"p", 0o644),
            file("polstore.manifest.sig/notes.cf", b"n", 0o644),
        ],
        &limits(),
    );
    assert_refused(&implied, "polstore.manifest.sig", "must be a regular file");
}

// --- A drop made of parts ([[fetch.parts]]) ------------------------------------------

fn part(file: &str, from: &str, to: &str) -> polstore::config::Part {
    polstore::config::Part {
        file: file.into(),
        from: from.into(),
        to: to.into(),
    }
}

/// A drop directory holding each archive of `archives` (name, bytes) and `envelope` files.
fn parts_drop(archives: &[(&str, Vec<u8>)], envelope: &[(&str, &[u8])]) -> tempfile::TempDir {
    let temporary = tempfile::tempdir().unwrap();
    for (name, bytes) in archives {
        fs::write(temporary.path().join(name), bytes).unwrap();
    }
    for (name, bytes) in envelope {
        fs::write(temporary.path().join(name), bytes).unwrap();
    }
    temporary
}

/// Rudder's shapes: the rules under `policies_next/`, the library under `ncf/`.
fn rudder_parts() -> Vec<polstore::config::Part> {
    vec![
        part("rudder.tar.bz2", "policies_next", "inputs"),
        part("library.tar.gz", "ncf", "ncf"),
    ]
}

#[test]
fn parts_put_each_archive_directory_under_its_place_with_the_envelope_beside_them() {
    let rules = bzip2(&tar_bytes(&[
        special("policies_next/", EntryType::Directory),
        file("policies_next/promises.cf", b"# rules\n", 0o644),
        file("./policies_next/rudder/run.cf", b"# run\n", 0o600),
        // A manifest inside an archive is a policy file like any other.
        file("policies_next/polstore.manifest", b"just a file\n", 0o644),
    ]));
    let library = gzip(&tar_bytes(&[
        special("ncf/", EntryType::Directory),
        file("ncf/common/lib.cf", b"# lib\n", 0o644),
        special("ncf/local/", EntryType::Directory),
    ]));
    let drop = parts_drop(
        &[("rudder.tar.bz2", rules), ("library.tar.gz", library)],
        &[
            ("polstore.manifest", b"the manifest\n"),
            ("polstore.manifest.sig", b"the signature\n"),
            ("etag-rudder", b"not part of the candidate\n"),
        ],
    );
    let source = Source::Parts {
        directory: drop.path().to_path_buf(),
        parts: rudder_parts(),
    };
    let (mut seen, stamped) = read(&source, &limits()).unwrap();
    assert!(!stamped, "files of archives carry no stamps");
    seen.sort();
    let expected_file = |path: &str, content: &[u8], mode| Seen::File {
        path: path.into(),
        mode,
        content: content.to_vec(),
    };
    let mut expected = vec![
        expected_file("inputs/promises.cf", b"# rules\n", 0o644),
        expected_file("inputs/rudder/run.cf", b"# run\n", 0o600),
        expected_file("inputs/polstore.manifest", b"just a file\n", 0o644),
        expected_file("ncf/common/lib.cf", b"# lib\n", 0o644),
        Seen::EmptyDirectory("ncf/local".into()),
        Seen::Manifest(b"the manifest\n".to_vec()),
        Seen::Signature(b"the signature\n".to_vec()),
    ];
    expected.sort();
    assert_eq!(seen, expected, "{}", describe(&seen));
}

#[test]
fn a_part_whose_archive_holds_nothing_under_from_still_gives_its_place() {
    let rules = tar_bytes(&[file("policies_next/promises.cf", b"# rules\n", 0o644)]);
    let library = tar_bytes(&[special("ncf/", EntryType::Directory)]);
    let drop = parts_drop(
        &[("rudder.tar.bz2", rules), ("library.tar.gz", library)],
        &[],
    );
    let source = Source::Parts {
        directory: drop.path().to_path_buf(),
        parts: rudder_parts(),
    };
    let (seen, _) = read(&source, &limits()).unwrap();
    assert!(
        seen.contains(&Seen::EmptyDirectory("ncf".into())),
        "{}",
        describe(&seen)
    );
}

#[test]
fn a_part_with_an_empty_from_takes_the_whole_archive() {
    let library = tar_bytes(&[file("common/lib.cf", b"# lib\n", 0o644)]);
    let drop = parts_drop(&[("library.tar", library)], &[]);
    let source = Source::Parts {
        directory: drop.path().to_path_buf(),
        parts: vec![part("library.tar", "", "ncf")],
    };
    let (seen, _) = read(&source, &limits()).unwrap();
    assert_eq!(
        seen,
        vec![Seen::File {
            path: "ncf/common/lib.cf".into(),
            mode: 0o644,
            content: b"# lib\n".to_vec()
        }]
    );
}

#[test]
fn an_entry_outside_the_part_directory_is_refused_naming_the_archive() {
    let rules = tar_bytes(&[
        file("policies_next/promises.cf", b"# rules\n", 0o644),
        file("policies_nextx/sneaky.cf", b"# no\n", 0o644),
    ]);
    let library = tar_bytes(&[file("ncf/common/lib.cf", b"# lib\n", 0o644)]);
    let drop = parts_drop(
        &[("rudder.tar.bz2", rules), ("library.tar.gz", library)],
        &[],
    );
    let rejection = refusal(
        &Source::Parts {
            directory: drop.path().to_path_buf(),
            parts: rudder_parts(),
        },
        &limits(),
    );
    assert_refused(
        &rejection,
        "policies_nextx/sneaky.cf",
        "lies outside policies_next/, the one directory taken from rudder.tar.bz2",
    );
}

#[test]
fn a_file_where_the_part_directory_should_be_is_refused() {
    let rules = tar_bytes(&[file("policies_next", b"# not a directory\n", 0o644)]);
    let drop = parts_drop(&[("rudder.tar.bz2", rules)], &[]);
    let rejection = refusal(
        &Source::Parts {
            directory: drop.path().to_path_buf(),
            parts: vec![part("rudder.tar.bz2", "policies_next", "inputs")],
        },
        &limits(),
    );
    assert_refused(&rejection, "policies_next", "must be a directory");
}

#[test]
fn a_damaged_part_is_refused_naming_its_archive() {
    let rules = bzip2(&tar_bytes(&[file(
        "policies_next/promises.cf",
        b"# rules\n",
        0o644,
    )]));
    let cut = rules[..rules.len() / 2].to_vec();
    let drop = parts_drop(&[("rudder.tar.bz2", cut)], &[]);
    let rejection = refusal(
        &Source::Parts {
            directory: drop.path().to_path_buf(),
            parts: vec![part("rudder.tar.bz2", "policies_next", "inputs")],
        },
        &limits(),
    );
    assert_eq!(rejection.path, None);
    assert_eq!(rejection.reason, "rudder.tar.bz2: the archive is truncated");
}

#[test]
fn the_limits_count_for_all_parts_together() {
    let rules = tar_bytes(&[
        file("policies_next/a.cf", b"1", 0o644),
        file("policies_next/b.cf", b"2", 0o644),
    ]);
    let library = tar_bytes(&[file("ncf/c.cf", b"3", 0o644), file("ncf/d.cf", b"4", 0o644)]);
    let drop = parts_drop(
        &[("rudder.tar.bz2", rules), ("library.tar.gz", library)],
        &[],
    );
    let mut limits = limits();
    limits.files_max = 3;
    let rejection = refusal(
        &Source::Parts {
            directory: drop.path().to_path_buf(),
            parts: rudder_parts(),
        },
        &limits,
    );
    assert_eq!(
        rejection.reason,
        "library.tar.gz: more than 3 files (limits.files_max)"
    );
}

#[test]
fn a_part_archive_that_is_a_symlink_or_missing_is_refused() {
    let drop = parts_drop(&[], &[]);
    let elsewhere = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), drop.path().join("rudder.tar.bz2")).unwrap();
    let rejection = refusal(
        &Source::Parts {
            directory: drop.path().to_path_buf(),
            parts: vec![part("rudder.tar.bz2", "policies_next", "inputs")],
        },
        &limits(),
    );
    assert!(
        rejection.reason.contains("/rudder.tar.bz2: ")
            && rejection.reason.contains("symbolic link"),
        "{rejection}"
    );
    fs::remove_file(drop.path().join("rudder.tar.bz2")).unwrap();
    let missing = read(
        &Source::Parts {
            directory: drop.path().to_path_buf(),
            parts: vec![part("rudder.tar.bz2", "policies_next", "inputs")],
        },
        &limits(),
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("rudder.tar.bz2") && missing.to_string().contains("not found"),
        "{missing}"
    );
}
