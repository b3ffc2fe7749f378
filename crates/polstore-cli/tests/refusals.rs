//! Every refusal path: each bad candidate is refused with its exit code and message, and leaves the active generation and the view untouched.

mod util;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use util::{
    MISSING_BUNDLE_ERROR, MISSING_BUNDLE_POLICY, Node, POLICY, UPDATE_POLICY,
    assert_ingest_refused, assert_ingest_refused_with, assert_refused,
    assert_tree_matches_manifest, python_tar, s, set_mode, tool,
};

/// The files of every candidate in the data-driven tests below.
const FILES: &[(&str, &str)] = &[
    ("promises.cf", POLICY),
    ("lib/common.cf", "# common, version 2\n"),
    ("services/main.cf", "# main\n"),
];

/// One bad candidate: a tree of [`FILES`] signed with serial 2, then spoiled by `spoil`.
struct Case {
    name: &'static str,
    spoil: fn(&Node, &Path),
    fragment: &'static str,
}

/// Ingests each case's candidate into a node whose generation 1 is active, and asserts
/// the refusal (exit 3, message, nothing changed). The same node serves every case: a
/// refusal must leave it as it was.
fn refuse_each(node: &Node, cases: &[Case]) {
    for (index, case) in cases.iter().enumerate() {
        eprintln!("case: {}", case.name);
        let dir = node.signed_tree(&format!("{index}-{}", case.name), FILES, 2);
        (case.spoil)(node, &dir);
        assert_ingest_refused(node, &dir, case.fragment);
    }
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(node.status()["serial_max"], 1);
}

fn manifest_of(dir: &Path) -> String {
    fs::read_to_string(dir.join("polstore.manifest")).unwrap()
}

/// Replaces the manifest's text by `edit` of it and signs the result with the trusted key,
/// so that only the manifest's content can be what refuses it.
fn edit_manifest(node: &Node, dir: &Path, edit: impl FnOnce(String) -> String) {
    let manifest = dir.join("polstore.manifest");
    fs::write(&manifest, edit(manifest_of(dir))).unwrap();
    node.sign(&manifest);
}

/// The manifest's header and its entry lines.
fn split_manifest(text: &str) -> (String, Vec<String>) {
    let (header, body) = text.split_once("\n\n").unwrap();
    (
        header.to_string(),
        body.lines().map(str::to_string).collect(),
    )
}

fn join_manifest(header: &str, entries: &[String]) -> String {
    format!("{header}\n\n{}\n", entries.join("\n"))
}

fn signature_of(dir: &Path) -> std::path::PathBuf {
    dir.join("polstore.manifest.sig")
}

#[test]
fn signature_refusals() {
    let node = Node::with_generation();
    refuse_each(
        &node,
        &[
            Case {
                name: "signature-missing",
                spoil: |_, dir| fs::remove_file(signature_of(dir)).unwrap(),
                fragment: "rejected by the integrity check: polstore.manifest.sig: missing: a signature by a trusted key is required",
            },
            Case {
                name: "manifest-missing",
                spoil: |_, dir| {
                    fs::remove_file(signature_of(dir)).unwrap();
                    fs::remove_file(dir.join("polstore.manifest")).unwrap();
                },
                fragment: "rejected by the integrity check: polstore.manifest: missing: a signed manifest is required",
            },
            Case {
                name: "untrusted-key",
                spoil: |node, dir| {
                    let other = node.root.join("untrusted");
                    let (public, secret) =
                        (other.with_extension("pub"), other.with_extension("sec"));
                    node.run(&["keygen", "--public", s(&public), "--secret", s(&secret)])
                        .success();
                    node.run(&[
                        "sign",
                        "--key",
                        s(&secret),
                        s(&dir.join("polstore.manifest")),
                    ])
                    .success();
                },
                fragment: "which is not trusted",
            },
            Case {
                name: "signature-of-another-manifest",
                spoil: |node, dir| {
                    let other = node.signed_tree("other-manifest", FILES, 3);
                    fs::copy(signature_of(&other), signature_of(dir)).unwrap();
                },
                fragment: "polstore.manifest.sig: signature does not verify with key",
            },
            Case {
                name: "truncated-signature",
                spoil: |_, dir| {
                    let text = fs::read(signature_of(dir)).unwrap();
                    fs::write(signature_of(dir), &text[..text.len() - 30]).unwrap();
                },
                fragment: "polstore.manifest.sig: missing newline after the base64 line",
            },
            Case {
                name: "malformed-signature",
                spoil: |_, dir| {
                    let text = fs::read_to_string(signature_of(dir)).unwrap();
                    let comment = text.lines().next().unwrap();
                    fs::write(signature_of(dir), format!("{comment}\nnot*base64*at*all\n"))
                        .unwrap();
                },
                fragment: "polstore.manifest.sig: malformed base64",
            },
            Case {
                name: "signature-of-wrong-length",
                spoil: |_, dir| {
                    let text = fs::read_to_string(signature_of(dir)).unwrap();
                    let comment = text.lines().next().unwrap();
                    fs::write(signature_of(dir), format!("{comment}\nRWQAAAAA\n")).unwrap();
                },
                fragment: "wrong length for a signify signature: expected 74 bytes, found 6",
            },
        ],
    );
}

#[test]
fn weak_public_key_is_refused_by_init() {
    use base64::Engine as _;
    let node = Node::new();
    // The identity point (y = 1): a canonical encoding of a point of small order, which
    // would verify forged signatures.
    let mut blob = b"Ed".to_vec();
    blob.extend_from_slice(&[7; 8]);
    let mut point = [0u8; 32];
    point[0] = 1;
    blob.extend_from_slice(&point);
    let weak = node.root.join("weak.pub");
    fs::write(
        &weak,
        format!(
            "untrusted comment: weak key\n{}\n",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        ),
    )
    .unwrap();
    assert_refused(
        &node,
        &["init", "--view", s(&node.view), "--trust", s(&weak)],
        1,
        "weak (small-order) public key refused",
    );
    assert!(!node.store.exists(), "a refused init created the store");
    assert!(!node.view.exists());
}

#[test]
fn files_must_match_the_manifest() {
    let node = Node::with_generation();
    refuse_each(
        &node,
        &[
            Case {
                name: "content-changed",
                // Same size, other bytes.
                spoil: |_, dir| fs::write(dir.join("services/main.cf"), "# MAIN\n").unwrap(),
                fragment: "rejected by the integrity check: services/main.cf: content does not match the manifest",
            },
            Case {
                name: "size-changed",
                spoil: |_, dir| fs::write(dir.join("services/main.cf"), "# main!\n").unwrap(),
                fragment: "services/main.cf: size 8 differs from the manifest's 7",
            },
            Case {
                name: "file-missing",
                spoil: |_, dir| fs::remove_file(dir.join("lib/common.cf")).unwrap(),
                fragment: "lib/common.cf: listed in the manifest but missing from the source",
            },
            Case {
                name: "file-extra",
                spoil: |_, dir| util::write_tree(dir, &[("lib/extra.cf", "# extra\n")]),
                fragment: "lib/extra.cf: not listed in the manifest",
            },
            Case {
                name: "mode-differs",
                spoil: |_, dir| set_mode(&dir.join("lib/common.cf"), 0o755),
                fragment: "lib/common.cf: mode 0755 differs from the manifest's 0644",
            },
        ],
    );
}

#[test]
fn malformed_manifests() {
    let node = Node::with_generation();
    refuse_each(
        &node,
        &[
            Case {
                name: "unsorted",
                spoil: |node, dir| {
                    edit_manifest(node, dir, |text| {
                        let (header, mut entries) = split_manifest(&text);
                        entries.swap(0, 1);
                        join_manifest(&header, &entries)
                    })
                },
                fragment: "not sorted after the previous path",
            },
            Case {
                name: "duplicate",
                spoil: |node, dir| {
                    edit_manifest(node, dir, |text| {
                        let (header, mut entries) = split_manifest(&text);
                        entries.insert(1, entries[0].clone());
                        join_manifest(&header, &entries)
                    })
                },
                fragment: "lib/common.cf: listed twice",
            },
            Case {
                name: "crlf",
                spoil: |node, dir| edit_manifest(node, dir, |text| text.replace('\n', "\r\n")),
                fragment: "manifest line 1: carriage return (CRLF line ends are not allowed)",
            },
            Case {
                name: "unknown-version",
                spoil: |node, dir| {
                    edit_manifest(node, dir, |text| {
                        text.replacen("polstore-manifest 1\n", "polstore-manifest 3\n", 1)
                    })
                },
                fragment: "unsupported manifest version \"3\"",
            },
            Case {
                name: "trailing-garbage",
                spoil: |node, dir| edit_manifest(node, dir, |text| text + "garbage\n"),
                fragment: "expected '<blake3 hex> <mode> <size> <path>'",
            },
            Case {
                name: "no-final-newline",
                spoil: |node, dir| edit_manifest(node, dir, |text| text + "x"),
                fragment: "manifest does not end with a newline",
            },
            Case {
                name: "huge-serial",
                spoil: |node, dir| {
                    edit_manifest(node, dir, |text| {
                        // u64::MAX + 1.
                        text.replacen("serial 2\n", "serial 18446744073709551616\n", 1)
                    })
                },
                fragment: "manifest line 2: serial: number out of range",
            },
            Case {
                name: "serial-with-leading-zero",
                spoil: |node, dir| {
                    edit_manifest(node, dir, |text| {
                        text.replacen("serial 2\n", "serial 02\n", 1)
                    })
                },
                fragment: "manifest line 2: serial: leading zero",
            },
            Case {
                name: "three-digit-mode",
                spoil: |node, dir| edit_manifest(node, dir, |text| text.replace(" 0644 ", " 644 ")),
                fragment: "mode: expected four octal digits such as 0644",
            },
        ],
    );
}

#[test]
fn freshness_refusals() {
    let node = Node::with_generation();
    node.ingest(&node.signed_tree("serial-3", FILES, 3))
        .success();
    assert_eq!(node.active_generation(), Some(2));
    let second = &[("promises.cf", POLICY), ("other.cf", "# other\n")];

    // A copy of an older, genuinely signed policy comes back.
    let replay = node.signed_tree("serial-2", second, 2);
    assert_ingest_refused(
        &node,
        &replay,
        "rejected by the freshness check: serial 2 is older than the highest accepted serial 3 (replay or downgrade)",
    );
    // So does the very manifest that made generation 1.
    assert_ingest_refused(
        &node,
        &node.drop.join("gen1"),
        "serial 1 is older than the highest accepted serial 3",
    );
    let same_serial = node.signed_tree("serial-3-again", second, 3);
    assert_ingest_refused(
        &node,
        &same_serial,
        "serial 3 is equal to the highest accepted serial 3 (replay or downgrade)",
    );

    let expired = node.signed_tree("expired", second, 4);
    edit_manifest(&node, &expired, |text| {
        let (head, rest) = text.split_once("\n\n").unwrap();
        format!("{head}\nexpires 2020-01-01T00:00:00Z\n\n{rest}")
    });
    assert_ingest_refused(
        &node,
        &expired,
        "rejected by the freshness check: manifest expired at 2020-01-01T00:00:00Z",
    );

    let future = node.signed_tree("future", second, 5);
    edit_manifest(&node, &future, |text| {
        let created = text.lines().nth(2).unwrap().to_string();
        assert!(created.starts_with("created "), "{text}");
        text.replacen(&created, "created 9999-12-31T23:59:59Z", 1)
    });
    assert_ingest_refused(
        &node,
        &future,
        "manifest created 9999-12-31T23:59:59Z is in the future",
    );

    // `polstore manifest --expires-in 0` makes a manifest that has expired by the time it
    // is ingested.
    let now_expired = node.tree("expires-now", second);
    let manifest = now_expired.join("polstore.manifest");
    node.run(&[
        "manifest",
        s(&now_expired),
        "--serial",
        "6",
        "--expires-in",
        "0",
        "-o",
        s(&manifest),
    ])
    .success();
    node.sign(&manifest);
    assert_ingest_refused(&node, &now_expired, "manifest expired at");

    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(node.status()["serial_max"], 3);
}

#[test]
fn parse_check_refusal_names_the_file_and_line() {
    let node = Node::with_generation();
    let broken = POLICY.replace("\"hello\";", "\"hello\"");
    let dir = node.signed_tree(
        "broken",
        &[("promises.cf", &broken), ("lib/common.cf", "# ok\n")],
        2,
    );
    let out = assert_ingest_refused(
        &node,
        &dir,
        "rejected by the parse check: promises.cf: cf-promises exited with status 1: promises.cf:9:",
    );
    assert!(
        out.stderr.contains(": promises.cf:9:"),
        "the message names the file relative to the tree: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("staging"), "{}", out.stderr);
}

#[test]
fn parse_check_refuses_what_the_agent_s_own_validation_refuses() {
    let node = Node::with_generation();
    // The default entry points: promises.cf, and update.cf, which cf-execd runs first to
    // fetch new policy.
    node.set_config("checks", "entry_points", r#"["promises.cf", "update.cf"]"#);
    let good_update = ("update.cf", UPDATE_POLICY);
    let lib = ("lib/common.cf", "# common\n");

    // A bundlesequence naming a bundle nowhere defined: `cf-promises -f` lets it
    // through, the agent's own `cf-promises -c` does not (cf-agent would fall back to
    // failsafe.cf, and exit 0).
    let missing_bundle = node.signed_tree(
        "missing-bundle",
        &[("promises.cf", MISSING_BUNDLE_POLICY), good_update, lib],
        2,
    );
    tool(
        "/usr/bin/cf-promises",
        &["-f", s(&missing_bundle.join("promises.cf"))],
    );
    assert_ingest_refused(
        &node,
        &missing_bundle,
        &format!(
            "rejected by the parse check: promises.cf: cf-promises exited with status 1: {MISSING_BUNDLE_ERROR}; generation 1 stays active"
        ),
    );

    // update.cf broken, promises.cf fine: accepted, the node could never fetch a fix.
    let broken_update = node.signed_tree(
        "broken-update",
        &[
            ("promises.cf", POLICY),
            (
                "update.cf",
                &UPDATE_POLICY.replace("\"updating\";", "\"updating\""),
            ),
            lib,
        ],
        2,
    );
    let out = assert_ingest_refused(
        &node,
        &broken_update,
        "rejected by the parse check: update.cf: cf-promises exited with status 1: update.cf:9:",
    );
    assert!(out.stderr.contains("error: syntax error"), "{}", out.stderr);
    assert!(!out.stderr.contains("staging"), "{}", out.stderr);

    // update.cf naming a missing bundle.
    let update_missing_bundle = node.signed_tree(
        "update-missing-bundle",
        &[
            ("promises.cf", POLICY),
            ("update.cf", MISSING_BUNDLE_POLICY),
            lib,
        ],
        2,
    );
    assert_ingest_refused(
        &node,
        &update_missing_bundle,
        &format!(
            "rejected by the parse check: update.cf: cf-promises exited with status 1: {MISSING_BUNDLE_ERROR}"
        ),
    );

    // No update.cf at all.
    let no_update = node.signed_tree("no-update", &[("promises.cf", POLICY), lib], 2);
    assert_ingest_refused(
        &node,
        &no_update,
        "rejected by the parse check: update.cf: missing; the agent starts from each of checks.entry_points; generation 1 stays active",
    );
    // Nor as a directory of that name.
    let update_directory = node.signed_tree(
        "update-directory",
        &[("promises.cf", POLICY), ("update.cf/x.cf", "# x\n"), lib],
        2,
    );
    assert_ingest_refused(
        &node,
        &update_directory,
        "rejected by the parse check: update.cf: missing;",
    );
    assert_eq!(node.status()["serial_max"], 1);

    // Both entry points sound: accepted, and the check left the tree as signed.
    let sound = node.signed_tree("sound", &[("promises.cf", POLICY), good_update, lib], 2);
    node.ingest(&sound).success();
    assert_eq!(node.active_generation(), Some(2));
    assert_tree_matches_manifest(&node.generation_tree(2), &node.generation_manifest(2));
    let log = node.log();
    let parse = log.last().unwrap()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == "parse")
        .unwrap()
        .clone();
    assert_eq!(parse["passed"], true);
    assert_eq!(
        parse["detail"],
        "/usr/bin/cf-promises accepted promises.cf, update.cf"
    );
}

#[test]
fn user_check_exiting_non_zero() {
    let node = Node::with_generation();
    // The check sees the candidate's tree, serial and generation number.
    node.add_check(
        "50-no-todo",
        r#"echo "checking $POLSTORE_TREE serial $POLSTORE_SERIAL generation $POLSTORE_GENERATION"
test "$POLSTORE_SERIAL" = 2 && test "$POLSTORE_GENERATION" = 2 || { echo "bad environment"; exit 2; }
if grep -rq TODO "$POLSTORE_TREE"; then echo "found a TODO in the policy"; exit 1; fi"#,
    );
    let dir = node.signed_tree(
        "todo",
        &[("promises.cf", POLICY), ("lib/common.cf", "# TODO\n")],
        2,
    );
    assert_ingest_refused(
        &node,
        &dir,
        "rejected by the user check 50-no-todo: exited with status 1: found a TODO in the policy",
    );
    // A non-executable file or a dot file in the checks directory is not a check.
    fs::write(node.checks.join("60-not-executable"), "#!/bin/sh\nexit 1\n").unwrap();
    node.add_check(".70-hidden", "exit 1");
    let clean = node.signed_tree(
        "clean",
        &[("promises.cf", POLICY), ("lib/common.cf", "# done\n")],
        2,
    );
    node.ingest(&clean).success();
    assert_eq!(node.active_generation(), Some(2));
}

#[test]
fn user_check_timing_out() {
    let node = Node::with_generation();
    node.set_config("checks", "timeout_secs", "1");
    node.add_check("20-slow", "echo starting\nsleep 30");
    let dir = node.signed_tree("slow", FILES, 2);
    let started = Instant::now();
    assert_ingest_refused(
        &node,
        &dir,
        "rejected by the user check 20-slow: timed out after 1 s and was killed",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timed-out check held the ingest for {:?}",
        started.elapsed()
    );
}

#[test]
fn directory_source_refusals() {
    let node = Node::with_generation();
    refuse_each(
        &node,
        &[
            Case {
                name: "symlink",
                spoil: |_, dir| {
                    std::os::unix::fs::symlink("/etc/passwd", dir.join("lib/passwd.cf")).unwrap()
                },
                fragment: "rejected by the source check: lib/passwd.cf: is a symbolic link; only regular files and directories are accepted",
            },
            Case {
                name: "symlinked-directory",
                spoil: |_, dir| std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap(),
                fragment: "etc: is a symbolic link",
            },
            Case {
                name: "hardlink",
                spoil: |node, dir| {
                    let outside = node.root.join("outside.cf");
                    fs::write(&outside, "# outside\n").unwrap();
                    fs::hard_link(&outside, dir.join("lib/hard.cf")).unwrap();
                },
                fragment: "lib/hard.cf: is a hard link (2 links); only files with one link are accepted",
            },
            Case {
                name: "fifo",
                spoil: |_, dir| {
                    tool("mkfifo", &[dir.join("lib/pipe.cf")]);
                },
                fragment: "lib/pipe.cf: is a fifo; only regular files and directories are accepted",
            },
            Case {
                name: "setuid",
                spoil: |_, dir| set_mode(&dir.join("lib/common.cf"), 0o4755),
                fragment: "lib/common.cf: mode 4755 has a setuid, setgid or sticky bit",
            },
            Case {
                name: "group-writable",
                spoil: |_, dir| set_mode(&dir.join("lib/common.cf"), 0o664),
                fragment: "lib/common.cf: mode 0664 is group or world writable",
            },
            Case {
                name: "world-writable-directory-entry",
                spoil: |_, dir| set_mode(&dir.join("services/main.cf"), 0o646),
                fragment: "services/main.cf: mode 0646 is group or world writable",
            },
        ],
    );
}

/// A tar at `<drop>/<name>` of `entries` after a valid policy file, compressed as its
/// name says.
fn bad_tar(node: &Node, name: &str, entries: serde_json::Value) -> std::path::PathBuf {
    let path = node.drop.join(name);
    let mut all = vec![json!({"name": "promises.cf", "kind": "file", "data": POLICY})];
    all.extend(entries.as_array().unwrap().iter().cloned());
    python_tar(&path, json!(all));
    path
}

#[test]
fn archive_refusals() {
    let node = Node::with_generation();
    // From `<store>/staging/candidate/tree`, four `..` reach the test's temp dir.
    let escape = node.root.join("escape");
    let absolute = node.root.join("absolute-escape");
    let cases = [
        (
            "dotdot.tar",
            json!([{"name": "../../../../escape", "kind": "file", "data": "x"}]),
            "rejected by the source check: ../../../../escape: '..' or '.' component",
        ),
        (
            "dotdot-inside.tar.gz",
            json!([{"name": "lib/../../escape", "kind": "file", "data": "x"}]),
            "lib/../../escape: '..' or '.' component",
        ),
        (
            "dotdot-inside.tar.bz2",
            json!([{"name": "lib/../../escape", "kind": "file", "data": "x"}]),
            "lib/../../escape: '..' or '.' component",
        ),
        (
            "absolute.tar",
            json!([{"name": s(&absolute), "kind": "file", "data": "x"}]),
            ": absolute path",
        ),
        (
            "symlink.tar",
            json!([{"name": "lib/passwd.cf", "kind": "symlink", "target": "/etc/passwd"}]),
            "lib/passwd.cf: is a symbolic link; only regular files and directories are accepted",
        ),
        (
            "hardlink.tar",
            json!([{"name": "lib/shadow.cf", "kind": "hardlink", "target": "/etc/shadow"}]),
            "lib/shadow.cf: is a hard link; only regular files and directories are accepted",
        ),
        (
            "device.tar",
            json!([{"name": "lib/null.cf", "kind": "char"}]),
            "lib/null.cf: is a device node; only regular files and directories are accepted",
        ),
        (
            "fifo.tar",
            json!([{"name": "lib/pipe.cf", "kind": "fifo"}]),
            "lib/pipe.cf: is a fifo",
        ),
        (
            "setuid.tar",
            json!([{"name": "lib/run.sh", "kind": "file", "data": "x", "mode": 0o4755}]),
            "lib/run.sh: mode 4755 has a setuid, setgid or sticky bit",
        ),
        (
            "twice.tar",
            json!([{"name": "./promises.cf", "kind": "file", "data": POLICY}]),
            "promises.cf: appears twice in the source",
        ),
    ];
    for (name, entries, fragment) in cases {
        eprintln!("case: {name}");
        let tar = bad_tar(&node, name, entries);
        assert_ingest_refused(&node, &tar, fragment);
    }

    // Truncated in the middle of a file's data.
    let whole = bad_tar(
        &node,
        "whole.tar",
        json!([{"name": "lib/common.cf", "kind": "file", "data": "#".repeat(2000)}]),
    );
    let bytes = fs::read(&whole).unwrap();
    let truncated = node.drop.join("truncated.tar");
    // promises.cf's header and data take 1024 bytes; cut inside lib/common.cf's data.
    fs::write(&truncated, &bytes[..1024 + 512 + 700]).unwrap();
    assert_ingest_refused(
        &node,
        &truncated,
        "rejected by the source check: the archive is truncated",
    );
    // Cut inside the next header instead.
    fs::write(&truncated, &bytes[..1024 + 200]).unwrap();
    assert_ingest_refused(&node, &truncated, "the archive is truncated");
    // The same archive compressed, cut in the middle of the gzip stream.
    let gzipped = node.drop.join("truncated.tar.gz");
    let compressed = std::process::Command::new("gzip")
        .args(["-c", "-1", s(&whole)])
        .output()
        .unwrap()
        .stdout;
    fs::write(&gzipped, &compressed[..compressed.len() / 2]).unwrap();
    assert_ingest_refused(&node, &gzipped, "the archive is truncated");
    // And with bzip2: cut in the middle, and in the stream's end, which comes after the
    // tar's end-of-archive blocks.
    let bzipped = node.drop.join("truncated.tar.bz2");
    let compressed = std::process::Command::new("bzip2")
        .args(["-c", "-9", s(&whole)])
        .output()
        .unwrap()
        .stdout;
    assert!(compressed.starts_with(b"BZh9"));
    for cut in [compressed.len() / 2, compressed.len() - 2] {
        fs::write(&bzipped, &compressed[..cut]).unwrap();
        assert_ingest_refused(
            &node,
            &bzipped,
            "rejected by the source check: the archive is truncated",
        );
    }
    // Damaged: the block's CRC (after "BZh9" and the block's magic) no longer matches its
    // data, or the stream's CRC no longer matches the blocks'. The stream ends on a bit,
    // not a byte: its last byte holds the CRC's last bits, then up to 7 bits of padding.
    let damaged = node.drop.join("damaged.tar.bz2");
    for at in [10, compressed.len() - 1] {
        let mut bytes = compressed.clone();
        bytes[at] ^= 0xff;
        fs::write(&damaged, &bytes).unwrap();
        assert_ingest_refused(
            &node,
            &damaged,
            "rejected by the source check: not a valid bzip2 stream: the compressed data is corrupt",
        );
    }

    let not_tar = node.drop.join("not-a.tar");
    fs::write(&not_tar, "this is not a tar archive\n".repeat(40)).unwrap();
    assert_ingest_refused(&node, &not_tar, "not a valid tar archive");

    // A broken header full of terminal escapes: the message quotes it, escaped.
    let mut header = [0u8; 512];
    let name = b"\x1b]0;owned\x07\x1b[2Jname";
    header[..name.len()].copy_from_slice(name);
    header[148..156].copy_from_slice(b"\x1b[31mxyz");
    let hostile = node.drop.join("hostile.tar");
    fs::write(&hostile, [header, [0; 512]].concat()).unwrap();
    let out = assert_ingest_refused(&node, &hostile, "not a valid tar archive");
    assert!(!out.stderr.contains(['\x1b', '\x07']), "{:?}", out.stderr);
    assert!(out.stderr.contains("\\u{1b}]0;owned"), "{:?}", out.stderr);

    let not_gzip = node.drop.join("not-a.tar.gz");
    fs::write(&not_gzip, b"\x1f\x8b\x08\x00garbage that does not inflate").unwrap();
    assert_ingest_refused(&node, &not_gzip, "not a valid gzip stream");
    let not_bzip2 = node.drop.join("not-a.tar.bz2");
    fs::write(&not_bzip2, b"BZh9 garbage that does not decompress").unwrap();
    assert_ingest_refused(
        &node,
        &not_bzip2,
        "not a valid bzip2 stream: the compressed data is corrupt",
    );

    // Nothing was written outside the store.
    assert!(!escape.exists());
    assert!(!absolute.exists());
    assert!(!node.root.parent().unwrap().join("escape").exists());
    let mut stack = vec![node.root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            assert_ne!(
                entry.file_name(),
                "escape",
                "found {}",
                entry.path().display()
            );
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

#[test]
fn standard_input_refusals() {
    let node = Node::with_generation();
    assert_ingest_refused_with(
        &node,
        &["ingest", "-"],
        Some(b""),
        "rejected by the source check: the source is empty",
    );
    assert_ingest_refused_with(
        &node,
        &["ingest", "-"],
        Some("no tar here\n".repeat(100).as_bytes()),
        "not a valid tar archive",
    );
    // A valid archive that holds no policy file at all.
    let empty = node.drop.join("empty.tar");
    python_tar(&empty, json!([{"name": "lib", "kind": "dir"}]));
    assert_ingest_refused_with(
        &node,
        &["ingest", "-"],
        Some(&fs::read(&empty).unwrap()),
        "the source holds no policy files",
    );
}

#[test]
fn limit_refusals() {
    let node = Node::with_generation();
    node.set_config("limits", "files_max", "3");
    node.set_config("limits", "file_bytes_max", "1000");
    node.set_config("limits", "depth_max", "2");

    let too_many = node.signed_tree(
        "too-many",
        &[
            ("promises.cf", POLICY),
            ("a.cf", "#\n"),
            ("b.cf", "#\n"),
            ("c.cf", "#\n"),
        ],
        2,
    );
    assert_ingest_refused(
        &node,
        &too_many,
        "rejected by the source check: more than 3 files (limits.files_max)",
    );

    let big = "#".repeat(2000);
    let too_big = node.signed_tree("too-big", &[("promises.cf", POLICY), ("big.cf", &big)], 2);
    assert_ingest_refused(
        &node,
        &too_big,
        "big.cf: 2000 bytes is over the limit of 1000 bytes per file (limits.file_bytes_max)",
    );

    let too_deep = node.signed_tree(
        "too-deep",
        &[("promises.cf", POLICY), ("a/b/c/deep.cf", "#\n")],
        2,
    );
    assert_ingest_refused(&node, &too_deep, "a/b/c/deep.cf: deeper than 2 directories");

    // At the limits exactly, the candidate is accepted.
    let at_limits = node.signed_tree(
        "at-limits",
        &[
            ("promises.cf", POLICY),
            ("a/b/ok.cf", "#\n"),
            ("max.cf", &"#".repeat(1000)),
        ],
        2,
    );
    node.ingest(&at_limits).success();
    assert_eq!(node.active_generation(), Some(2));
}

#[test]
fn gzip_bomb_is_refused_quickly() {
    let node = Node::with_generation();
    let size: u64 = 200 << 20;
    let bomb = node.drop.join("bomb.tar.gz");
    python_tar(
        &bomb,
        json!([{"name": "zeros.cf", "kind": "zeros", "size": size}]),
    );
    assert!(fs::metadata(&bomb).unwrap().len() < 4 << 20);
    let started = Instant::now();
    assert_ingest_refused(
        &node,
        &bomb,
        &format!(
            "zeros.cf: {size} bytes is over the limit of {} bytes per file (limits.file_bytes_max)",
            32 << 20
        ),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusing the bomb took {:?}",
        started.elapsed()
    );
}

#[test]
fn bzip2_bomb_is_refused_quickly() {
    let node = Node::with_generation();
    // A file of 200 MiB of zeros, as gzip's bomb above: refused by its header.
    let size: u64 = 200 << 20;
    let in_a_file = node.drop.join("bomb.tar.bz2");
    python_tar(
        &in_a_file,
        json!([{"name": "zeros.cf", "kind": "zeros", "size": size}]),
    );
    assert!(fs::metadata(&in_a_file).unwrap().len() < 1 << 20);
    // A tree that passes every check, followed by a gibibyte of zeros in 1024 bzip2
    // streams of a mebibyte each: refused after the first mebibyte past the tar's end.
    let zeros = node.root.join("zeros");
    fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let stream = std::process::Command::new("bzip2")
        .args(["-c", "-9", s(&zeros)])
        .output()
        .unwrap()
        .stdout;
    let tree = node.signed_tree("gen2", FILES, 2);
    let good = node.drop.join("good.tar.bz2");
    tool("tar", &["-cjf", s(&good), "-C", s(&tree), "."]);
    let after_the_end = node.drop.join("after-the-end.tar.bz2");
    let bytes = [fs::read(&good).unwrap(), stream.repeat(1 << 10)].concat();
    assert!(bytes.len() < 1 << 20);
    fs::write(&after_the_end, bytes).unwrap();
    for (bomb, fragment) in [
        (
            &in_a_file,
            format!(
                "zeros.cf: {size} bytes is over the limit of {} bytes per file (limits.file_bytes_max)",
                32 << 20
            ),
        ),
        (
            &after_the_end,
            format!(
                "rejected by the source check: more than {} bytes follow the end of the tar archive",
                1 << 20
            ),
        ),
    ] {
        let started = Instant::now();
        assert_ingest_refused(&node, bomb, &fragment);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refusing {} took {:?}",
            bomb.display(),
            started.elapsed()
        );
    }
    assert_eq!(node.status()["serial_max"], 1);
    // Without the zeros, the same tree is accepted.
    node.ingest(&good).success();
    assert_eq!(node.active_generation(), Some(2));
}

#[test]
fn unsigned_store_still_checks_what_it_is_given() {
    let node = Node::unsigned();
    node.ingest(&node.tree("gen1", FILES)).success();
    assert_eq!(node.active_generation(), Some(1));
    // A signature that is present must verify, even when none is required; this store
    // trusts no key at all.
    let signed = node.signed_tree("signed", FILES, 2);
    assert_ingest_refused(&node, &signed, "polstore.manifest.sig: signature is by key");
    // An unsigned manifest must still match the files.
    let unsigned = node.signed_tree("unsigned", FILES, 2);
    fs::remove_file(signature_of(&unsigned)).unwrap();
    fs::write(unsigned.join("services/main.cf"), "# MAIN\n").unwrap();
    assert_ingest_refused(
        &node,
        &unsigned,
        "services/main.cf: content does not match the manifest",
    );
    // And a tree without a manifest is still checked by cf-promises.
    let broken = node.tree("broken", &[("promises.cf", "bundle agent {\n")]);
    assert_ingest_refused(&node, &broken, "rejected by the parse check");
}

#[test]
fn operator_command_refusals() {
    let node = Node::signed();
    assert_refused(
        &node,
        &["rollback"],
        1,
        "nothing to roll back: the store has no active generation",
    );
    node.ingest(&node.signed_tree("gen1", FILES, 1)).success();
    let cases: &[(&[&str], &str)] = &[
        (
            &["rollback"],
            "no good generation before the active generation 1 to roll back to",
        ),
        (&["rollback", "1"], "generation 1 is already active"),
        (
            &["rollback", "9"],
            "generation 9 does not exist (see 'polstore list')",
        ),
        (&["show", "9", "promises.cf"], "generation 9 does not exist"),
        (
            &["show", "1", "nothing.cf"],
            "generation 1 has no file nothing.cf",
        ),
        (&["diff", "1", "9"], "generation 9 does not exist"),
        (
            &[
                "keygen",
                "--public",
                "/nonexistent/k.pub",
                "--secret",
                "/nonexistent/k.sec",
            ],
            "cannot create /nonexistent/k.sec",
        ),
    ];
    for (args, fragment) in cases {
        eprintln!("case: {args:?}");
        assert_refused(&node, args, 1, fragment);
    }
    // keygen never overwrites a key.
    let secret = fs::read(&node.secret_key).unwrap();
    assert_refused(
        &node,
        &[
            "keygen",
            "--public",
            s(&node.root.join("new.pub")),
            "--secret",
            s(&node.secret_key),
        ],
        1,
        "cannot create",
    );
    assert_eq!(fs::read(&node.secret_key).unwrap(), secret);
    // A manifest or signature given beside the source must exist.
    let tree = node.tree("tree", FILES);
    assert_refused(
        &node,
        &[
            "ingest",
            s(&tree),
            "--manifest",
            s(&node.root.join("missing.manifest")),
        ],
        1,
        "cannot read",
    );
}

#[test]
fn a_typo_in_the_configuration_stops_every_writer() {
    let node = Node::with_generation();
    let config = fs::read_to_string(node.config_path()).unwrap();
    let view = node.view_target();
    node.set_config("agent", "confirn", "true");
    let tree = node.signed_tree("gen2", FILES, 2);
    assert_refused(&node, &["ingest", s(&tree)], 1, "unknown field `confirn`");
    assert_refused(&node, &["rollback"], 1, "unknown field `confirn`");
    fs::write(node.config_path(), config).unwrap();
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(node.view_target(), view);
    node.ingest(&tree).success();
}

#[test]
fn hostile_names_are_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let node = Node::with_generation();
    refuse_each(
        &node,
        &[
            Case {
                name: "newline",
                spoil: |_, dir| fs::write(dir.join("lib/a\nb.cf"), "#\n").unwrap(),
                fragment: "rejected by the source check: lib/a\\nb.cf: control character in name",
            },
            Case {
                name: "terminal-escape",
                spoil: |_, dir| fs::write(dir.join("lib/\x1b[31mred.cf"), "#\n").unwrap(),
                fragment: "control character in name",
            },
            Case {
                name: "invalid-utf8",
                spoil: |_, dir| {
                    fs::write(dir.join(OsStr::from_bytes(b"lib/\xff\xfe.cf")), "#\n").unwrap()
                },
                fragment: "name is not valid UTF-8",
            },
            Case {
                name: "long-path",
                spoil: |_, dir| {
                    let mut path = dir.to_path_buf();
                    for _ in 0..5 {
                        path.push("d".repeat(250));
                    }
                    fs::create_dir_all(&path).unwrap();
                    fs::write(path.join("x.cf"), "#\n").unwrap();
                },
                fragment: "path longer than 1024 bytes",
            },
            Case {
                name: "setgid",
                spoil: |_, dir| set_mode(&dir.join("lib/common.cf"), 0o2755),
                fragment: "lib/common.cf: mode 2755 has a setuid, setgid or sticky bit",
            },
            Case {
                name: "sticky",
                spoil: |_, dir| set_mode(&dir.join("lib/common.cf"), 0o1644),
                fragment: "lib/common.cf: mode 1644 has a setuid, setgid or sticky bit",
            },
        ],
    );
}

/// A ustar header for a regular file `name` whose size field says `size`.
fn tar_header(name: &[u8], size: u64) -> [u8; 512] {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name);
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// `data` padded to whole 512-byte blocks.
fn blocks(data: &[u8]) -> Vec<u8> {
    let mut padded = data.to_vec();
    padded.resize(data.len().div_ceil(512) * 512, 0);
    padded
}

#[test]
fn tar_headers_that_lie_are_refused() {
    let node = Node::with_generation();
    let policy = POLICY.as_bytes();
    let good = [
        tar_header(b"promises.cf", policy.len() as u64).to_vec(),
        blocks(policy),
    ]
    .concat();
    let end = vec![0u8; 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            // Says 100 kB, holds 10 bytes, then ends.
            "size-too-large.tar",
            [
                good.clone(),
                tar_header(b"lib/a.cf", 100_000).to_vec(),
                blocks(b"0123456789"),
            ]
            .concat(),
            "the archive is truncated",
        ),
        (
            // Says 10 bytes, holds 2 kB: the rest is read as headers, and is not one.
            "size-too-small.tar",
            [
                good.clone(),
                tar_header(b"lib/a.cf", 10).to_vec(),
                blocks(&[b'A'; 2048]),
                end.clone(),
            ]
            .concat(),
            "not a valid tar archive",
        ),
        (
            // A size far over the per-file limit: refused before a byte of it is read.
            "size-huge.tar",
            [
                good.clone(),
                tar_header(b"lib/a.cf", 8_000_000_000).to_vec(),
                end.clone(),
            ]
            .concat(),
            "is over the limit of 33554432 bytes per file",
        ),
        (
            "newline-name.tar",
            [
                good.clone(),
                tar_header(b"lib/a\nb.cf", 2).to_vec(),
                blocks(b"#\n"),
                end.clone(),
            ]
            .concat(),
            "lib/a\\nb.cf: control character in name",
        ),
        (
            "invalid-utf8-name.tar",
            [
                good.clone(),
                tar_header(b"lib/\xff.cf", 2).to_vec(),
                blocks(b"#\n"),
                end.clone(),
            ]
            .concat(),
            "name is not valid UTF-8",
        ),
        (
            "deep.tar",
            [
                good.clone(),
                tar_header(
                    "a/".repeat(40)
                        .as_bytes()
                        .iter()
                        .chain(b"x.cf")
                        .copied()
                        .collect::<Vec<_>>()
                        .as_slice(),
                    2,
                )
                .to_vec(),
                blocks(b"#\n"),
                end.clone(),
            ]
            .concat(),
            "deeper than 32 directories",
        ),
    ];
    for (name, bytes, fragment) in cases {
        eprintln!("case: {name}");
        let path = node.drop.join(name);
        fs::write(&path, bytes).unwrap();
        assert_ingest_refused(&node, &path, fragment);
    }
    // The well-formed part alone is a valid archive: what refused them was the lie.
    let path = node.drop.join("honest.tar");
    fs::write(&path, [good, end].concat()).unwrap();
    assert_ingest_refused(
        &node,
        &path,
        "rejected by the integrity check: polstore.manifest: missing",
    );
}

// ------------------------------------- a signed drop staged from its manifest (review)

/// store-format.md § Manifest: "a version 1 manifest does not describe [empty
/// directories], and the source's are left out of the generation" (and the mkmanifest
/// script of § Producing a manifest writes version 1). A signed drop directory with a
/// version 1 manifest and an empty directory was accepted before the listing
/// (`ListedFiles::check_listing`) replaced the walk; it still must be.
#[test]
fn a_version_1_manifest_over_a_drop_with_an_empty_directory_is_accepted() {
    let node = Node::with_generation();
    let dir = node.signed_tree("v1", FILES, 2);
    assert!(manifest_of(&dir).starts_with("polstore-manifest 1\n"));
    // An empty directory the version 1 manifest cannot describe (a fresh checkout's
    // `templates/`, a `modules/` the hub keeps empty).
    fs::create_dir(dir.join("templates")).unwrap();
    let out = node.ingest(&dir);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(node.active_generation(), Some(2));
}

/// A signed drop directory with many subdirectories side by side (a Rudder node's
/// `inputs/` holds one per technique): listing it must not hold a descriptor open per
/// subdirectory, or the default soft limit of open files (1024 under systemd) refuses a
/// tree the walk accepted.
#[test]
fn a_signed_drop_with_a_thousand_directories_side_by_side_is_accepted_with_1024_descriptors() {
    let node = Node::with_generation();
    let dir = node.tree("wide", &[("promises.cf", POLICY)]);
    for index in 0..1100 {
        let sub = dir.join(format!("techniques/t{index:04}"));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("main.cf"), format!("# technique {index}\n")).unwrap();
        set_mode(&sub.join("main.cf"), 0o644);
    }
    node.sign_tree(&dir, 2);
    let output = std::process::Command::new("prlimit")
        .arg("--nofile=1024")
        .arg(util::POLSTORE)
        .args(["ingest", s(&dir)])
        .env("POLSTORE_STORE", &node.store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(node.active_generation(), Some(2));
}

/// A file of the spare tree changed behind polstore's back (same size) after its generation
/// was settled is not kept by an update over it (its time is later). A candidate refused
/// before it placed that path must not change that: `TreeBuilder::reverse` keeps every
/// file the refused candidate did not place if its time is before `started` (when the
/// tree was taken, not when its generation was settled), and `slot::place` then renews
/// the manifest's time, so the changed file passes for polstore's from then on and the
/// next update over the spare puts it into the active generation.
#[test]
fn a_refused_candidate_does_not_make_a_file_changed_in_the_spare_tree_pass_for_polstores() {
    let node = Node::with_generation();
    let second = node.signed_tree(
        "second",
        &[("promises.cf", POLICY), ("lib/common.cf", "# second\n")],
        2,
    );
    node.ingest(&second).success();
    // Generation 1's tree is the spare; its lib/common.cf changed since (same size).
    let common = node.generation_tree(1).join("lib/common.cf");
    fs::write(&common, "# COMMON\n").unwrap();
    // Refused when the drop is listed, before any path is placed.
    let refused = node.signed_tree(
        "refused",
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
        3,
    );
    fs::write(refused.join("unlisted.cf"), "# unlisted\n").unwrap();
    assert_ingest_refused(&node, &refused, "not listed in the manifest");
    assert!(
        node.generation_tree(1).exists(),
        "the spare tree was put back"
    );
    // Generation 1's content again, built over its tree.
    let third = node.signed_tree(
        "third",
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
        3,
    );
    node.ingest(&third).success();
    assert_eq!(node.active_generation(), Some(3));
    assert_eq!(
        fs::read_to_string(node.generation_tree(3).join("lib/common.cf")).unwrap(),
        "# common\n",
        "the active generation holds a file no one signed"
    );
}

/// A candidate refused after its checks ran puts the spare tree back as its generation's
/// `tree/`. With one view the checks run on the candidate's tree itself, writable; a
/// refused candidate must not leave the spare generation's tree different from its
/// manifest (`TreeBuilder::reverse` trusts every file modified up to now).
#[test]
fn a_refused_candidate_puts_the_spare_tree_back_exactly_as_its_manifest_says() {
    let node = Node::with_generation();
    let second = node.signed_tree(
        "second",
        &[("promises.cf", POLICY), ("lib/common.cf", "# second\n")],
        2,
    );
    node.ingest(&second).success();
    // Generation 1's tree is the spare. A check that rewrites a file of the candidate
    // (same size), then refuses it.
    node.add_check(
        "50-rewrites",
        r#"sed -i 's/# common/# COMMON/' "$POLSTORE_TREE/lib/common.cf"; exit 1"#,
    );
    let third = node.signed_tree(
        "third",
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
        3,
    );
    assert_ingest_refused(&node, &third, "rejected by the user check 50-rewrites");
    assert_eq!(node.active_generation(), Some(2));
    assert!(
        node.generation_tree(1).exists(),
        "the spare tree was put back"
    );
    assert_tree_matches_manifest(&node.generation_tree(1), &node.generation_manifest(1));
}
