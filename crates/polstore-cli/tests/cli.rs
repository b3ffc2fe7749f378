//! End-to-end flows of the polstore command line: init, keygen, manifest, sign, ingest, status, list, log, rollback, show, diff, adoption and the confirming agent run.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use util::{
    ABORTING_POLICY, Background, Gate, MARKER_POLICY, MISSING_BUNDLE_ERROR, MISSING_BUNDLE_POLICY,
    Node, POLICY, assert_refused, mode_of, s, set_mode, toml_string, tool, tree_content,
};

const GEN1: &[(&str, &str)] = &[
    ("promises.cf", POLICY),
    ("lib/common.cf", "# common, version 1\n"),
    ("services/a.cf", "# service a\n"),
];

const GEN2: &[(&str, &str)] = &[
    ("promises.cf", POLICY),
    ("lib/common.cf", "# common, version 2\n"),
    ("services/a.cf", "# service a\n"),
];

/// The policy files of a source tree: without the manifest and its signature.
fn policy_files(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut content = tree_content(dir);
    content.remove("polstore.manifest");
    content.remove("polstore.manifest.sig");
    content
}

fn is_timestamp(value: &Value) -> bool {
    let text = value.as_str().unwrap_or("");
    text.len() == 20
        && text.char_indices().all(|(index, c)| match index {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == 'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The key number `polstore keygen` printed for the node's key, from its public key file.
fn keynum(public_key: &Path) -> String {
    use base64::Engine as _;
    let text = fs::read_to_string(public_key).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(text.lines().nth(1).unwrap())
        .unwrap();
    blob[2..10]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn full_happy_path() {
    let node = Node::signed();
    assert_eq!(node.status()["active"], Value::Null);
    assert_eq!(node.view_target(), None);

    let gen1 = node.signed_tree("gen1", GEN1, 1);
    let out = node.ingest(&gen1).success();
    assert_eq!(
        out.stdout,
        "generation 1 active: serial 1, 3 files (3 written, 0 reused), no agent run configured\n"
    );
    let gen2 = node.signed_tree("gen2", GEN2, 2);
    let out = node.ingest(&gen2).success();
    assert!(
        out.stdout
            .starts_with("generation 2 active: serial 2, 3 files")
    );

    let list = node.list();
    assert_eq!(list.len(), 2);
    for (generation, entry) in (1u64..).zip(&list) {
        assert_eq!(entry["generation"], generation);
        assert_eq!(entry["serial"], generation);
        assert_eq!(entry["root"], s(&node.generation_tree(generation)));
        assert_eq!(entry["tree_on_disk"], true);
        assert_eq!(entry["state"], "good");
        assert_eq!(entry["active"], generation == 2);
        assert_eq!(entry["origin"], "ingested");
        assert_eq!(entry["files"], 3);
        assert_eq!(entry["signed_by"], keynum(&node.public_key).as_str());
        assert!(is_timestamp(&entry["created"]), "{entry}");
    }
    let status = node.status();
    assert_eq!(status["active"]["generation"], 2);
    assert_eq!(status["active"]["serial"], 2);
    assert_eq!(status["active"]["root"], s(&node.generation_tree(2)));
    assert_eq!(status["view"], s(&node.view));
    assert_eq!(status["view_target"], s(&node.view_fixed_target()));
    assert_eq!(status["active_link"], "generations/2/tree");
    assert_eq!(status["views"][0]["path"], s(&node.view));
    assert_eq!(status["views"][0]["name"], serde_json::Value::Null);
    assert_eq!(status["serial_max"], 2);
    assert_eq!(status["warnings"], Value::Array(vec![]));
    assert_eq!(node.viewed_generation().unwrap(), 2);
    assert_eq!(tree_content(&node.view), policy_files(&gen2));

    let out = node.run(&["diff", "1", "2"]).success();
    assert_eq!(out.stdout, "M lib/common.cf\n");
    let out = node.run(&["show", "2", "lib/common.cf"]).success();
    assert_eq!(out.stdout, "# common, version 2\n");
    let out = node.run(&["show", "1", "lib/common.cf"]).success();
    assert_eq!(out.stdout, "# common, version 1\n");

    let out = node.run(&["rollback"]).success();
    assert_eq!(out.stdout, "generation 1 active (serial 1), was 2\n");
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(node.viewed_generation().unwrap(), 1);
    assert_eq!(tree_content(&node.view), policy_files(&gen1));
    // A rollback does not reopen the door to replays.
    assert_eq!(node.status()["serial_max"], 2);

    let out = node.run(&["rollback", "2"]).success();
    assert_eq!(out.stdout, "generation 2 active (serial 2), was 1\n");
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(node.viewed_generation().unwrap(), 2);
    assert_eq!(tree_content(&node.view), policy_files(&gen2));

    // A third generation adds, removes and re-modes files.
    let gen3 = node.signed_tree(
        "gen3",
        &[
            ("promises.cf", POLICY),
            ("lib/common.cf", "# common, version 2\n"),
            ("services/b.cf", "# service b\n"),
        ],
        3,
    );
    set_mode(&gen3.join("lib/common.cf"), 0o600);
    node.sign_tree(&gen3, 3);
    node.ingest(&gen3).success();
    let out = node.run(&["diff", "2", "3"]).success();
    assert_eq!(
        out.stdout,
        "M lib/common.cf (mode 0644 -> 0600)\nD services/a.cf\nA services/b.cf\n"
    );
    assert_eq!(tree_content(&node.view), policy_files(&gen3));

    let log = node.log();
    let summary: Vec<(&str, &str, u64)> = log
        .iter()
        .map(|attempt| {
            (
                attempt["action"].as_str().unwrap(),
                attempt["outcome"].as_str().unwrap(),
                attempt["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("ingest", "accepted", 1),
            ("ingest", "accepted", 2),
            ("rollback", "switched", 1),
            ("rollback", "switched", 2),
            ("ingest", "accepted", 3),
        ]
    );
    let checks: Vec<&str> = log[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["integrity", "freshness", "parse"]);
}

#[test]
fn unchanged_files_are_linked_from_the_active_generation() {
    let node = Node::signed();
    node.ingest(&node.signed_tree("gen1", GEN1, 1)).success();
    let out = node.ingest(&node.signed_tree("gen2", GEN2, 2)).success();
    assert!(
        out.stdout.contains(", 3 files (1 written, 2 reused),"),
        "{}",
        out.stdout
    );
    let inode = |generation: u64, path: &str| {
        fs::metadata(node.generation_tree(generation).join(path))
            .unwrap()
            .ino()
    };
    assert_eq!(inode(1, "promises.cf"), inode(2, "promises.cf"));
    assert_eq!(inode(1, "services/a.cf"), inode(2, "services/a.cf"));
    assert_ne!(inode(1, "lib/common.cf"), inode(2, "lib/common.cf"));
    // Each generation still reads as its own manifest says.
    for generation in [1, 2] {
        util::assert_tree_matches_manifest(
            &node.generation_tree(generation),
            &node.generation_manifest(generation),
        );
    }
    // Identical content under two names in one candidate is written once.
    let out = node
        .ingest(&node.signed_tree(
            "gen3",
            &[
                ("promises.cf", POLICY),
                ("x/one.cf", "# same\n"),
                ("x/two.cf", "# same\n"),
            ],
            3,
        ))
        .success();
    assert!(
        out.stdout.contains(", 3 files (1 written, 2 reused),"),
        "{}",
        out.stdout
    );
}

#[test]
fn ingest_from_tar_gzip_and_standard_input() {
    let node = Node::signed();
    let tar = |dir: &Path, archive: &Path, flags: &str| {
        util::tool("tar", &[flags, s(archive), "-C", s(dir), "."]);
    };

    let gen1 = node.signed_tree("gen1", GEN1, 1);
    let archive = node.drop.join("gen1.tar");
    tar(&gen1, &archive, "-cf");
    let out = node.run(&["ingest", "--json", s(&archive)]).success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["generation"], 1);
    assert_eq!(report["serial"], 1);
    assert_eq!(report["files"], 3);
    assert_eq!(report["files_written"], 3);
    assert_eq!(report["agent"], "not-configured");
    assert_eq!(tree_content(&node.view), policy_files(&gen1));
    assert_eq!(node.status()["active"]["source"], s(&archive));

    let gen2 = node.signed_tree("gen2", GEN2, 2);
    let archive = node.drop.join("gen2.tar.gz");
    tar(&gen2, &archive, "-czf");
    node.run(&["ingest", s(&archive)]).success();
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(tree_content(&node.view), policy_files(&gen2));

    // Through a pipe, as `ssh server tar c ... | polstore ingest -` would deliver it; the
    // compression is told by the stream's first bytes.
    for (serial, flags) in [(3u64, "-cf"), (4, "-czf")] {
        let files = [
            ("promises.cf", POLICY),
            ("lib/common.cf", &*format!("# common, version {serial}\n")),
        ];
        let dir = node.signed_tree(&format!("gen{serial}"), &files, serial);
        let archive = node.drop.join(format!("gen{serial}.archive"));
        tar(&dir, &archive, flags);
        let bytes = fs::read(&archive).unwrap();
        let out = node.run_with(&["ingest", "-"], &[], Some(&bytes)).success();
        assert!(
            out.stdout.starts_with(&format!(
                "generation {serial} active: serial {serial}, 2 files"
            )),
            "{}",
            out.stdout
        );
        assert_eq!(tree_content(&node.view), policy_files(&dir));
        assert_eq!(node.status()["active"]["source"], "standard input");
    }
}

/// A signed manifest and its signature for `tree`, made beside it at `name.manifest` and
/// `name.manifest.sig` in the node's root.
fn manifest_beside(node: &Node, tree: &Path, name: &str, serial: u64) -> (PathBuf, PathBuf) {
    let manifest = node.root.join(format!("{name}.manifest"));
    let signature = node.root.join(format!("{name}.manifest.sig"));
    let serial = serial.to_string();
    node.run(&["manifest", s(tree), "--serial", &serial, "-o", s(&manifest)])
        .success();
    node.run(&[
        "sign",
        "--key",
        s(&node.secret_key),
        s(&manifest),
        "-o",
        s(&signature),
    ])
    .success();
    (manifest, signature)
}

#[test]
fn ingest_from_tar_bz2_as_rudder_serves_it() {
    // Rudder's HTTPS mode downloads its policies as .tar.bz2 (rules/rudder.tar.bz2,
    // policies-library-linux.tar.bz2); here made by the real tar and bzip2.
    let node = Node::signed();
    let bzip2_magic = b"BZh91AY&SY";

    // The signed manifest inside the archive.
    let gen1 = node.signed_tree("gen1", GEN1, 1);
    let archive = node.drop.join("gen1.tar.bz2");
    tool("tar", &["-cjf", s(&archive), "-C", s(&gen1), "."]);
    assert!(fs::read(&archive).unwrap().starts_with(bzip2_magic));
    let out = node.run(&["ingest", "--json", s(&archive)]).success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["generation"], 1);
    assert_eq!(report["serial"], 1);
    assert_eq!(report["files"], 3);
    assert_eq!(tree_content(&node.view), policy_files(&gen1));
    assert_eq!(node.status()["active"]["source"], s(&archive));

    // The manifest and signature beside it (--manifest, --signature), none inside.
    let gen2 = node.tree("gen2", GEN2);
    let (manifest, signature) = manifest_beside(&node, &gen2, "gen2", 2);
    let archive = node.drop.join("gen2.tar.bz2");
    tool("tar", &["-cjf", s(&archive), "-C", s(&gen2), "."]);
    let out = node
        .run(&[
            "ingest",
            s(&archive),
            "--manifest",
            s(&manifest),
            "--signature",
            s(&signature),
        ])
        .success();
    assert!(
        out.stdout
            .starts_with("generation 2 active: serial 2, 3 files"),
        "{}",
        out.stdout
    );
    assert_eq!(tree_content(&node.view), policy_files(&gen2));

    // Through a pipe; then in two bzip2 streams one after the other, as pbzip2 writes
    // them (`bzip2 -c A B` compresses each file to a stream of its own), cut inside a
    // file's data.
    for (serial, streams) in [(3u64, 1), (4, 2)] {
        let files = [
            ("promises.cf", POLICY),
            ("lib/common.cf", &*format!("# common, version {serial}\n")),
            ("lib/big.cf", &*"# padding\n".repeat(1000)),
        ];
        let dir = node.signed_tree(&format!("gen{serial}"), &files, serial);
        let archive = node.drop.join(format!("gen{serial}.archive"));
        if streams == 1 {
            tool("tar", &["-cjf", s(&archive), "-C", s(&dir), "."]);
        } else {
            let tar = node.root.join(format!("gen{serial}.tar"));
            tool("tar", &["-cf", s(&tar), "-C", s(&dir), "."]);
            let bytes = fs::read(&tar).unwrap();
            let (first, second) = (node.root.join("first"), node.root.join("second"));
            fs::write(&first, &bytes[..bytes.len() / 2]).unwrap();
            fs::write(&second, &bytes[bytes.len() / 2..]).unwrap();
            let script = r#"bzip2 -c "$1" "$2" > "$3""#;
            tool(
                "sh",
                &["-c", script, "sh", s(&first), s(&second), s(&archive)],
            );
        }
        let bytes = fs::read(&archive).unwrap();
        let found = bytes
            .windows(bzip2_magic.len())
            .filter(|window| window == bzip2_magic)
            .count();
        assert_eq!(found, streams);
        let out = node.run_with(&["ingest", "-"], &[], Some(&bytes)).success();
        assert!(
            out.stdout.starts_with(&format!(
                "generation {serial} active: serial {serial}, 3 files"
            )),
            "{}",
            out.stdout
        );
        assert_eq!(tree_content(&node.view), policy_files(&dir));
        assert_eq!(node.status()["active"]["source"], "standard input");
    }
}

#[test]
fn manifest_and_signature_given_beside_the_source() {
    let node = Node::signed();
    let tree = node.tree("tree", GEN1);
    let manifest = node.root.join("outside.manifest");
    let signature = node.root.join("outside.manifest.sig");
    node.run(&["manifest", s(&tree), "--serial", "7", "-o", s(&manifest)])
        .success();
    node.run(&[
        "sign",
        "--key",
        s(&node.secret_key),
        s(&manifest),
        "-o",
        s(&signature),
    ])
    .success();
    // Without them the tree is refused: it carries no manifest.
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        3,
        "polstore.manifest: missing: a signed manifest is required",
    );
    let out = node
        .run(&[
            "ingest",
            s(&tree),
            "--manifest",
            s(&manifest),
            "--signature",
            s(&signature),
        ])
        .success();
    assert!(
        out.stdout
            .starts_with("generation 1 active: serial 7, 3 files")
    );
    assert_eq!(tree_content(&node.view), policy_files(&tree));
    // The store keeps the manifest and signature it verified, beside the tree.
    let generation = node.store.join("generations/1");
    assert_eq!(
        fs::read(generation.join("polstore.manifest")).unwrap(),
        fs::read(&manifest).unwrap()
    );
    assert_eq!(
        fs::read(generation.join("polstore.manifest.sig")).unwrap(),
        fs::read(&signature).unwrap()
    );
    // `polstore manifest` prints to standard output without -o.
    let out = node
        .run(&[
            "manifest",
            s(&tree),
            "--serial",
            "7",
            "--source",
            "server 1",
        ])
        .success();
    let (header, body) = out.stdout.split_once("\n\n").unwrap();
    assert!(header.starts_with("polstore-manifest 1\nserial 7\ncreated "));
    assert!(header.ends_with("\nsource server 1"), "{header}");
    let written = fs::read_to_string(&manifest).unwrap();
    assert_eq!(body, written.split_once("\n\n").unwrap().1);
}

#[test]
fn unsigned_store_accepts_trees_without_a_manifest() {
    let node = Node::unsigned();
    let config = fs::read_to_string(node.config_path()).unwrap();
    assert!(config.contains("require_signature = false"));
    let out = node.ingest(&node.tree("gen1", GEN1)).success();
    assert!(
        out.stdout
            .starts_with("generation 1 active: serial 1, 3 files")
    );
    let out = node.ingest(&node.tree("gen2", GEN2)).success();
    assert!(
        out.stdout
            .starts_with("generation 2 active: serial 2, 3 files")
    );
    let status = node.status();
    assert_eq!(status["active"]["signed_by"], Value::Null);
    // The manifest polstore computed is kept and describes the tree.
    let manifest = node.generation_manifest(2);
    util::assert_tree_matches_manifest(&node.generation_tree(2), &manifest);
    assert_eq!(util::parse_manifest(&manifest).0, 2);
    // An unsigned manifest still sets the serial, and is still checked.
    let gen3 = node.tree("gen3", GEN1);
    node.run(&[
        "manifest",
        s(&gen3),
        "--serial",
        "10",
        "-o",
        s(&gen3.join("polstore.manifest")),
    ])
    .success();
    node.ingest(&gen3).success();
    assert_eq!(node.status()["active"]["serial"], 10);
}

#[test]
fn init_refuses_an_existing_view_directory_unless_adopting_it() {
    let node = Node::new();
    util::write_tree(
        &node.view,
        &[("promises.cf", POLICY), ("lib/old.cf", "# from before\n")],
    );
    set_mode(&node.view.join("lib/old.cf"), 0o600);
    let original = tree_content(&node.view);
    assert_refused(
        &node,
        &["init", "--view", s(&node.view)],
        1,
        "is a directory with policies; use --adopt to take it in as the first generation",
    );
    assert!(!node.store.exists());
    assert!(node.view.symlink_metadata().unwrap().is_dir());

    let out = node
        .run(&[
            "init",
            "--view",
            s(&node.view),
            "--trust",
            s(&node.public_key),
            "--adopt",
        ])
        .success();
    assert!(
        out.stdout.contains(&format!(
            "adopted {} as generation 1 (unsigned, not checked)",
            node.view.display()
        )),
        "{}",
        out.stdout
    );
    node.configure_for_tests();
    assert!(
        node.view
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(node.viewed_generation().unwrap(), 1);
    assert_eq!(tree_content(&node.view), original);
    let list = node.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["origin"], "adopted");
    assert_eq!(list[0]["serial"], 0);
    assert_eq!(list[0]["state"], "good");
    assert_eq!(list[0]["active"], true);
    assert_eq!(node.log()[0]["action"], "adopt");
    // No directory is left beside the view.
    let beside: Vec<_> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["inputs"]);

    // The first signed policy replaces the adopted one.
    node.ingest(&node.signed_tree("gen2", GEN1, 1)).success();
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(
        node.run(&["diff", "1", "2"]).success().stdout,
        "A lib/common.cf\nD lib/old.cf\nA services/a.cf\n"
    );
}

#[test]
fn init_on_a_fresh_node_s_empty_inputs_adopts_nothing_and_the_first_ingest_replaces_it() {
    for adopt in [false, true] {
        let node = Node::new();
        // As cf-key leaves it on a fresh install.
        fs::create_dir(&node.view).unwrap();
        set_mode(&node.view, 0o700);
        let mut args = vec![
            "init",
            "--view",
            s(&node.view),
            "--trust",
            s(&node.public_key),
        ];
        if adopt {
            args.push("--adopt");
        }
        let out = node.run(&args).success();
        let nothing = if adopt { "nothing to adopt: " } else { "" };
        assert!(
            out.stdout.contains(&format!(
                "{nothing}{} is an empty directory; the first ingest replaces it with the view\n",
                node.view.display()
            )),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains("adopted "), "{}", out.stdout);
        node.configure_for_tests();
        // Left as it was until then: init writes nothing outside the store.
        assert!(node.view.symlink_metadata().unwrap().is_dir());
        assert_eq!(mode_of(&node.view), 0o700);
        assert_eq!(fs::read_dir(&node.view).unwrap().count(), 0);
        assert!(!node.store.join("adopting").exists());
        assert_eq!(node.active_generation(), None);
        assert!(node.list().is_empty());
        assert!(node.log().is_empty());

        node.ingest(&node.serial_tree("gen1", 1)).success();
        assert_eq!(node.viewed_generation().unwrap(), 1);
        assert_eq!(node.list()[0]["origin"], "ingested");
        node.run(&["verify"]).success();
    }
}

#[test]
fn adopt_with_nothing_to_adopt_makes_a_store_the_first_ingest_fills() {
    // A fresh node whose inputs does not exist yet: the quick start's `init --adopt`
    // makes the store, and says nothing was adopted.
    let node = Node::new();
    let out = node
        .run(&[
            "init",
            "--view",
            s(&node.view),
            "--trust",
            s(&node.public_key),
            "--adopt",
        ])
        .success();
    assert!(
        out.stdout.ends_with(&format!(
            "nothing to adopt: {} does not exist; the first ingest puts the view there\n",
            node.view.display()
        )),
        "{}",
        out.stdout
    );
    node.configure_for_tests();
    assert!(node.list().is_empty());
    assert!(!node.store.join("adopting").exists());
    node.ingest(&node.serial_tree("gen1", 1)).success();
    assert_eq!(node.viewed_generation().unwrap(), 1);
    assert_eq!(node.list()[0]["origin"], "ingested");
}

#[test]
fn a_second_init_is_refused() {
    let node = Node::with_generation();
    let config = fs::read_to_string(node.config_path()).unwrap();
    assert_refused(
        &node,
        &["init", "--view", s(&node.view)],
        1,
        "already holds a polstore store; refusing to initialize it",
    );
    assert_eq!(fs::read_to_string(node.config_path()).unwrap(), config);
    assert_eq!(node.list().len(), 1);
}

#[test]
fn log_records_rejected_attempts_with_their_check() {
    let node = Node::with_generation();
    let tampered = node.signed_tree("tampered", GEN2, 2);
    fs::write(tampered.join("lib/common.cf"), "# common, version X\n").unwrap();
    assert_refused(&node, &["ingest", s(&tampered)], 3, "integrity check");

    let broken = node.signed_tree("broken", &[("promises.cf", "bundle agent main {\n")], 2);
    assert_refused(&node, &["ingest", s(&broken)], 3, "parse check");

    let log = node.log();
    assert_eq!(log.len(), 3);
    let tampered_attempt = &log[1];
    assert_eq!(tampered_attempt["action"], "ingest");
    assert_eq!(tampered_attempt["outcome"], "rejected");
    assert_eq!(tampered_attempt["source"], s(&tampered));
    assert_eq!(tampered_attempt["generation"], Value::Null);
    assert!(
        tampered_attempt["message"]
            .as_str()
            .unwrap()
            .starts_with("rejected by the integrity check: lib/common.cf: content does not match")
    );
    let checks = tampered_attempt["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["name"], "integrity");
    assert_eq!(checks[0]["passed"], false);

    let broken_attempt = &log[2];
    assert_eq!(broken_attempt["outcome"], "rejected");
    let checks: Vec<(&str, bool)> = broken_attempt["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            (
                check["name"].as_str().unwrap(),
                check["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [("integrity", true), ("freshness", true), ("parse", false)]
    );
    assert!(
        broken_attempt["checks"][2]["output"]
            .as_str()
            .unwrap()
            .contains("error:"),
        "cf-promises' output is kept: {broken_attempt}"
    );
    // status shows the last attempt; the text log and -n agree.
    assert_eq!(node.status()["last_attempt"], log[2]);
    let out = node.run(&["log", "-n", "1", "-v"]).success();
    assert!(out.stdout.starts_with("#3 "), "{}", out.stdout);
    assert!(out.stdout.contains("FAIL parse"), "{}", out.stdout);
}

#[test]
fn a_second_writer_does_not_get_the_lock() {
    let node = Node::with_generation();
    let gate = Gate::new(&node.root, "check");
    node.add_check("10-slow", &gate.script());
    let slow = node.signed_tree("slow", GEN2, 2);
    let holder = Background::spawn(&node, &["ingest", s(&slow)]);
    gate.wait_started(Duration::from_secs(30));
    let other = node.signed_tree("other", GEN1, 3);
    assert_refused(
        &node,
        &["--lock-timeout", "0", "ingest", s(&other)],
        1,
        &format!("is locked by pid {} (polstore ingest", holder.id()),
    );
    assert_refused(
        &node,
        &["--lock-timeout", "0", "rollback"],
        1,
        "gave up after 0 s",
    );
    // A writer that may wait gets the lock when the holder is done.
    fs::remove_file(node.checks.join("10-slow")).unwrap();
    let mut waiter = Background::spawn(&node, &["--lock-timeout", "60", "ingest", s(&other)]);
    waiter.wait_for_stderr("waiting for the store lock");
    gate.release();
    let waiter = waiter.finish();
    assert_eq!(waiter.code, 0, "{waiter:#?}");
    assert!(
        waiter.stderr.contains(&format!(
            "waiting for the store lock, held by pid {}",
            holder.id()
        )),
        "{}",
        waiter.stderr
    );
    let holder = holder.finish();
    assert_eq!(holder.code, 0, "{holder:?}");
    assert_eq!(node.active_generation(), Some(3));
    assert_eq!(node.list().len(), 3);
}

#[test]
fn help_and_usage() {
    for command in [
        "init", "keygen", "manifest", "sign", "ingest", "update", "verify", "gc", "pin", "unpin",
        "status", "list", "log", "rollback", "show", "diff",
    ] {
        let out = util::run_polstore(Path::new("/nonexistent"), &[command, "--help"], &[], None);
        assert_eq!(out.code, 0, "{command} --help: {out:#?}");
        assert!(
            out.stdout.contains(&format!("Usage: polstore {command}")),
            "{command} --help: {}",
            out.stdout
        );
    }
    let out = util::run_polstore(Path::new("/nonexistent"), &["--help"], &[], None);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .contains("Exit codes: 0 success, 1 error, 2 usage, 3 candidate")
    );
    for usage_error in [
        &["frobnicate"][..],
        &["ingest"],
        &["rollback", "latest"],
        &["manifest", "."],
    ] {
        let out = util::run_polstore(Path::new("/nonexistent"), usage_error, &[], None);
        assert_eq!(out.code, 2, "{usage_error:?}: {out:#?}");
        assert!(out.stderr.starts_with("error: "), "{:?}", out.stderr);
    }
    // A store that was never made is an error, not a usage error.
    let out = util::run_polstore(Path::new("/nonexistent"), &["status"], &[], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "polstore: /nonexistent is not a polstore store (no format file); create one with 'polstore init'\n"
    );
}

#[test]
fn status_reports_a_view_that_went_missing_and_the_next_writer_repairs_it() {
    let node = Node::with_generation();
    fs::remove_file(&node.view).unwrap();
    // A reader never changes anything: it says what is wrong.
    let out = node.run(&["status"]).success();
    assert!(
        out.stdout.contains(&format!(
            "WARNING      the view {} is missing\n",
            s(&node.view)
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("view         {} -> (missing)\n", s(&node.view))),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("recovery"), "{}", out.stderr);
    assert!(fs::symlink_metadata(&node.view).is_err());
    // The next writer's recovery puts it back.
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr.contains("polstore: recovery: pointed the view"),
        "{}",
        out.stderr
    );
    assert_eq!(node.viewed_generation().unwrap(), 1);
    // An empty directory in its place (cf-agent makes inputs again when it is missing)
    // holds nothing to lose: the next writer replaces it.
    fs::remove_file(&node.view).unwrap();
    fs::create_dir(&node.view).unwrap();
    node.run(&["gc"]).success();
    assert_eq!(node.viewed_generation().unwrap(), 1);
    // Someone put a directory with something in it in its place: polstore does not touch
    // it, and says what it is.
    fs::remove_file(&node.view).unwrap();
    fs::create_dir(&node.view).unwrap();
    fs::write(node.view.join("promises.cf"), POLICY).unwrap();
    let status = node.status();
    assert_eq!(status["view_type"], "directory");
    assert_eq!(status["view_target"], Value::Null);
    let out = node.run(&["status"]).success();
    assert!(
        out.stdout
            .contains(&format!("view         {} -> (directory)\n", s(&node.view))),
        "{}",
        out.stdout
    );
    // The mount is there, but the agent does not read through it.
    if util::running_as_root() {
        assert!(
            out.stdout.contains("protection   read-only: writes through the view fail, but the view does not point through the mount (see the warning)\n"),
            "{}",
            out.stdout
        );
    }
    assert_refused(
        &node,
        &["rollback"],
        1,
        "is not polstore's symlink; polstore will not replace what someone put there",
    );
    assert!(node.view.symlink_metadata().unwrap().is_dir());
    // Once it is moved away, the next writer restores the view.
    fs::remove_dir_all(&node.view).unwrap();
    node.run(&["gc"]).success();
    assert_eq!(node.viewed_generation().unwrap(), 1);
}

#[test]
fn agent_run_confirms_a_new_generation() {
    let node = Node::signed();
    let workdir = node.enable_agent();
    let marker = node.root.join("agent-was-here");
    let tree = node.signed_tree("gen1", &[("promises.cf", MARKER_POLICY)], 1);
    let out = node
        .run_with(
            &["ingest", s(&tree)],
            &[
                ("CFENGINE_TEST_OVERRIDE_WORKDIR", s(&workdir)),
                ("POLSTORE_MARKER", s(&marker)),
            ],
            None,
        )
        .success();
    assert!(
        out.stdout.ends_with(", agent run succeeded\n"),
        "{}",
        out.stdout
    );
    assert!(marker.exists(), "cf-agent did not run the new policy");
    let list = node.list();
    assert_eq!(list[0]["state"], "good");
    assert_eq!(list[0]["reason"], Value::Null);
}

#[test]
fn failing_agent_run_rolls_back() {
    let node = Node::signed();
    let workdir = node.enable_agent();
    let env = [("CFENGINE_TEST_OVERRIDE_WORKDIR", s(&workdir))];
    let gen1 = node.signed_tree("gen1", &[("promises.cf", POLICY)], 1);
    node.run_with(&["ingest", s(&gen1)], &env, None).success();

    let gen2 = node.signed_tree("gen2", &[("promises.cf", ABORTING_POLICY)], 2);
    let before = node.snapshot();
    let out = node.run_with(&["ingest", s(&gen2)], &env, None);
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "polstore: rejected by the agent run check: generation 2 failed: /usr/bin/cf-agent exited with status 6"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("; rolled back to generation 1"),
        "{}",
        out.stderr
    );
    // The view points back at generation 1, as before.
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.viewed_generation().unwrap(), 1);

    let list = node.list();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["generation"], 2);
    assert_eq!(list[1]["state"], "failed");
    assert_eq!(list[1]["active"], false);
    assert!(
        list[1]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with status 6"),
        "{}",
        list[1]
    );
    let log = node.log();
    let last = log.last().unwrap();
    assert_eq!(last["outcome"], "rolled-back");
    assert_eq!(last["generation"], 2);
    // Its serial stays used: the same manifest cannot come back.
    assert_eq!(node.status()["serial_max"], 2);
    // `rollback` without a target skips the failed generation.
    let out = node.run(&["rollback", "2"]).success();
    assert!(out.stdout.contains("generation 2 active"));
    let out = node.run(&["rollback"]).success();
    assert_eq!(out.stdout, "generation 1 active (serial 1), was 2\n");
}

#[test]
fn an_agent_run_that_falls_back_to_failsafe_fails_and_is_rolled_back() {
    let node = Node::signed();
    let workdir = node.enable_agent();
    // The parse check of a store configured before entry points: `cf-promises -f`, which
    // lets a bundlesequence naming a missing bundle through. The agent's own validation
    // (`cf-promises -c`) refuses it, and cf-agent runs failsafe.cf instead, exiting 0.
    node.set_config(
        "checks",
        "cf_promises",
        r#"["/usr/bin/cf-promises", "-f", "{tree}/promises.cf"]"#,
    );
    let env = [("CFENGINE_TEST_OVERRIDE_WORKDIR", s(&workdir))];
    let gen1 = node.signed_tree("gen1", &[("promises.cf", POLICY)], 1);
    node.run_with(&["ingest", s(&gen1)], &env, None).success();
    let failsafe = workdir.join("inputs/failsafe.cf");
    assert!(!failsafe.exists());

    let gen2 = node.signed_tree("gen2", &[("promises.cf", MISSING_BUNDLE_POLICY)], 2);
    let before = node.snapshot();
    let out = node.run_with(&["ingest", s(&gen2)], &env, None);
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "polstore: rejected by the agent run check: generation 2 failed: /usr/bin/cf-agent exited with status 0, but its own validation refused the policy and it fell back to failsafe.cf: {MISSING_BUNDLE_ERROR}; rolled back to generation 1\n"
        )
    );
    // cf-agent did go to failsafe: it wrote failsafe.cf into its inputs directory.
    assert!(failsafe.exists(), "cf-agent never ran failsafe.cf");
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.viewed_generation().unwrap(), 1);
    let list = node.list();
    assert_eq!(list[1]["generation"], 2);
    assert_eq!(list[1]["state"], "failed");
    assert!(
        list[1]["reason"]
            .as_str()
            .unwrap()
            .contains("fell back to failsafe.cf"),
        "{}",
        list[1]
    );
    assert_eq!(node.log().last().unwrap()["outcome"], "rolled-back");
}

#[test]
fn the_stock_masterfiles_pass_the_default_checks() {
    let node = Node::signed();
    // The default parse check: `cf-promises -c` on promises.cf and update.cf, cf-promises
    // found in the default bin_dirs.
    node.set_config("checks", "entry_points", r#"["promises.cf", "update.cf"]"#);
    let config = fs::read_to_string(node.config_path()).unwrap();
    assert!(
        config.contains("\ncf_promises = [\"cf-promises\", \"-c\", \"-f\", \"{tree}/{entry}\"]\n"),
        "{config}"
    );
    let tree = node.drop.join("masterfiles");
    tool("cp", &["-a", "/usr/share/cfengine3/masterfiles", s(&tree)]);
    node.sign_tree(&tree, 1);
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(1));
    let log = node.log();
    let checks = log.last().unwrap()["checks"].as_array().unwrap().clone();
    let parse = checks
        .iter()
        .find(|check| check["name"] == "parse")
        .unwrap();
    assert_eq!(
        parse["detail"],
        "/usr/bin/cf-promises accepted promises.cf, update.cf"
    );
    // verify runs the same check again, and finds the tree as it was signed: the check
    // wrote nothing into it.
    node.run(&["verify"]).success();
}

#[test]
fn cfengine_programs_named_bare_run_from_the_first_bin_dir_that_holds_them() {
    let node = Node::with_generation();
    let missing = node.root.join("no-such-bin");
    let fake = node.root.join("fake-bin");
    fs::create_dir(&fake).unwrap();
    set_mode(&fake, 0o755);
    let ran = node.root.join("fake-cf-promises-ran");
    let program = fake.join("cf-promises");
    fs::write(
        &program,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec /usr/bin/cf-promises \"$@\"\n",
            s(&ran)
        ),
    )
    .unwrap();
    set_mode(&program, 0o755);
    let bin_dirs = |dirs: &[&Path]| {
        let dirs: Vec<String> = dirs.iter().map(|dir| toml_string(s(dir))).collect();
        format!("[{}]", dirs.join(", "))
    };
    // A directory that does not exist is passed over; the first holding it is used.
    node.set_config(
        "cfengine",
        "bin_dirs",
        &bin_dirs(&[&missing, &fake, Path::new("/usr/bin")]),
    );
    node.ingest(&node.serial_tree("gen2", 2)).success();
    let arguments = fs::read_to_string(&ran).unwrap();
    assert!(
        arguments.starts_with("-c -f ") && arguments.ends_with("/tree/promises.cf\n"),
        "{arguments}"
    );
    let log = node.log();
    let checks = log.last().unwrap()["checks"].as_array().unwrap().clone();
    let parse = checks
        .iter()
        .find(|check| check["name"] == "parse")
        .unwrap();
    assert_eq!(
        parse["detail"],
        format!("{}/cf-promises accepted promises.cf", fake.display())
    );

    // Found nowhere: every ingest is refused, no candidate let through unchecked.
    node.set_config("cfengine", "bin_dirs", &bin_dirs(&[&missing]));
    assert_refused(
        &node,
        &["ingest", s(&node.serial_tree("gen3", 3))],
        1,
        &format!(
            "polstore: the parse check cannot run: cf-promises is in none of the directories of cfengine.bin_dirs ({}); generation 2 stays active\n",
            missing.display()
        ),
    );
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());
    // verify cannot give the parse check's verdict either, and says why.
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(
            "the parse check could not give a verdict on the active generation: the parse check cannot run: cf-promises is in none of the directories"
        ),
        "{out:#?}"
    );

    // An agent found nowhere could never confirm the generation: refused before the commit,
    // so the serial is not used up.
    node.set_config("cfengine", "bin_dirs", &bin_dirs(&[&fake]));
    node.set_config(
        "agent",
        "command",
        r#"["cf-agent", "-K", "-f", "{tree}/promises.cf"]"#,
    );
    let again = node.serial_tree("gen3-again", 3);
    let out = node.ingest(&again);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "polstore: the agent run cannot start: cf-agent is in none of the directories of cfengine.bin_dirs ({}); generation 2 stays active\n",
            fake.display()
        )
    );
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(node.viewed_generation().unwrap(), 2);
    assert_eq!(node.generations(), vec![1, 2]);
}

#[test]
fn failing_agent_run_without_confirm_stays_active() {
    let node = Node::signed();
    let workdir = node.enable_agent();
    node.set_config("agent", "confirm", "false");
    let env = [("CFENGINE_TEST_OVERRIDE_WORKDIR", s(&workdir))];
    node.run_with(
        &[
            "ingest",
            s(&node.signed_tree("gen1", &[("promises.cf", POLICY)], 1)),
        ],
        &env,
        None,
    )
    .success();
    let gen2 = node.signed_tree("gen2", &[("promises.cf", ABORTING_POLICY)], 2);
    let out = node.run_with(&["ingest", s(&gen2)], &env, None).success();
    assert!(
        out.stdout
            .contains("agent run FAILED but confirm is off, so it stays: /usr/bin/cf-agent exited with status 6"),
        "{}",
        out.stdout
    );
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(node.viewed_generation().unwrap(), 2);
    assert_eq!(node.list()[1]["state"], "good");
}

#[test]
fn a_closed_output_pipe_ends_every_command_quietly() {
    let node = Node::with_generation();
    // `polstore status | head -1`, `polstore verify | true`: the reader is gone before
    // polstore writes, so every write fails with EPIPE. That is not worth a message, nor
    // a panic, nor "internal failure".
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["list"],
        &["log"],
        &["verify"],
        &["show", "1", "promises.cf"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = std::process::Command::new(util::POLSTORE)
            .args(args)
            .env("POLSTORE_STORE", &node.store)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "",
            "{args:?} said something"
        );
    }
    // Nothing changed: the store is still sound.
    node.run(&["verify"]).success();
}

#[test]
fn readers_on_an_overwritten_database_say_it_is_damaged_in_one_line() {
    let node = Node::with_generation();
    let database = node.store.join("polstore.redb");
    // Half of the file overwritten, its header spared, as a careless `dd` would.
    let mut bytes = fs::read(&database).unwrap();
    let quarter = bytes.len() / 4;
    bytes[quarter..3 * quarter].fill(0xa5);
    fs::write(&database, &bytes).unwrap();
    let view_before = node.view_target();
    for args in [
        &["status"][..],
        &["list"],
        &["log"],
        &["show", "1", "promises.cf"],
        &["diff", "1", "1"],
    ] {
        // What reads only intact pages may still answer; what meets damage says so in one
        // line, never as a panic ("internal failure", exit 101).
        let out = node.run(args);
        match out.code {
            0 => assert_eq!(out.stderr, "", "{args:?}"),
            1 => {
                assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:#?}");
                assert!(
                    out.stderr.starts_with("polstore: database")
                        && out.stderr.contains("'polstore verify"),
                    "{args:?}: {}",
                    out.stderr
                );
            }
            _ => panic!("{args:?}: {out:#?}"),
        }
    }
    // `status` reads every kind of record: it meets the damage.
    assert_eq!(node.run(&["status"]).code, 1);
    // Readers changed nothing: the damaged bytes and the view are as they were.
    assert_eq!(fs::read(&database).unwrap(), bytes);
    assert_eq!(node.view_target(), view_before);
}

/// Only the active generation and one spare keep their tree on disk: `list` says which,
/// and a rollback to one without materializes it from the store.
#[test]
fn list_tells_which_trees_are_on_disk_and_a_rollback_materializes_one() {
    let node = Node::with_generation();
    for serial in 2..=3 {
        let tree = node.signed_tree(
            &format!("gen{serial}"),
            &[
                ("promises.cf", POLICY),
                ("lib/common.cf", &format!("# {serial}\n")),
            ],
            serial,
        );
        node.ingest(&tree).success();
    }
    // Generation 3 was built over generation 1's tree.
    let list = node.list();
    let on_disk: Vec<bool> = list
        .iter()
        .map(|entry| entry["tree_on_disk"].as_bool().unwrap())
        .collect();
    assert_eq!(on_disk, [false, true, true]);
    let text = node.run(&["list"]).success();
    assert!(
        text.stdout
            .lines()
            .nth(1)
            .is_some_and(|line| line.ends_with("(tree not on disk)")),
        "{text:#?}"
    );
    let out = node.run(&["rollback", "1"]).success();
    assert_eq!(out.stdout, "generation 1 active (serial 1), was 3\n");
    util::assert_tree_matches_manifest(&node.view, &node.generation_manifest(1));
    // Over the spare (generation 2's tree): 1 and 3 are on disk now.
    let on_disk: Vec<bool> = node
        .list()
        .iter()
        .map(|entry| entry["tree_on_disk"].as_bool().unwrap())
        .collect();
    assert_eq!(on_disk, [true, false, true]);
    node.run(&["verify"]).success();
}

/// A fresh node: no generation yet, and cf-agent or cf-key made the inputs directory again
/// (they do whenever it is missing). The first ingest replaces the empty directory by the
/// view; a directory with anything in it is refused before anything is committed.
#[test]
fn the_first_ingest_replaces_an_empty_inputs_directory_and_refuses_a_full_one() {
    let node = Node::signed();
    fs::create_dir(&node.view).unwrap();
    fs::write(node.view.join("promises.cf"), POLICY).unwrap();
    let tree = node.signed_tree("gen1", &[("promises.cf", POLICY)], 1);
    let outside = node.outside_the_store();
    let out = assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "is not polstore's symlink; polstore will not replace what someone put there",
    );
    assert_eq!(node.active_generation(), None, "{out:#?}");
    assert_eq!(node.generations(), Vec::<u64>::new());
    assert_eq!(node.outside_the_store(), outside);

    fs::remove_file(node.view.join("promises.cf")).unwrap();
    let out = node.ingest(&tree).success();
    assert!(out.stdout.starts_with("generation 1 active"), "{out:#?}");
    assert_eq!(node.viewed_generation(), Some(1));
    assert_eq!(
        fs::read_to_string(node.view.join("promises.cf")).unwrap(),
        POLICY
    );
    // Nothing is left beside the view.
    let siblings: Vec<_> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["inputs"]);
    node.run(&["verify"]).success();
}

/// An agent named by an absolute path that is not there could never confirm: refused
/// before the commit, like one found in no bin_dirs, so the serial is not used up.
#[test]
fn an_agent_program_that_is_not_there_refuses_before_the_commit() {
    let node = Node::with_generation();
    let missing = node.root.join("no-such-cf-agent");
    node.set_config(
        "agent",
        "command",
        &format!(r#"["{}", "-f", "{{tree}}/promises.cf"]"#, s(&missing)),
    );
    let tree = node.serial_tree("gen2", 2);
    let outside = node.outside_the_store();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "polstore: the agent run cannot start: {}: No such file or directory (os error 2); generation 1 stays active\n",
            s(&missing)
        ),
    );
    assert_eq!(node.generations(), vec![1]);
    assert_eq!(node.outside_the_store(), outside);
    // Fixed, the same serial goes through: it was never used up.
    node.set_config("agent", "command", "[]");
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(2));
}

/// `update` run again on a drop that still holds a policy whose generation failed says so
/// every time, with the exit code of a refusal, and status keeps warning: a timer never
/// turns a failure into "unchanged".
#[test]
fn update_on_a_drop_still_holding_a_failed_policy_says_so_every_time() {
    let node = Node::with_generation();
    let drop = node.signed_tree("drop", &[("promises.cf", POLICY), ("lib/x.cf", "# 2\n")], 2);
    node.set_config("fetch", "drop", &util::toml_string(s(&drop)));
    node.set_config("agent", "command", r#"["/bin/false"]"#);
    let out = node.run(&["update"]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(
        out.stderr.ends_with("; rolled back to generation 1\n"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    node.set_config("agent", "command", "[]");
    for _ in 0..2 {
        let out = node.run(&["update"]);
        assert_eq!(out.code, 3, "{out:#?}");
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.starts_with(
                "polstore: the drop still holds serial 2, whose generation 2 failed: /bin/false exited with status 1"
            ),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.ends_with("; generation 1 stays active\n"),
            "{}",
            out.stderr
        );
        let status = node.status();
        assert_eq!(status["active"]["generation"], 1);
        assert_eq!(status["last_update"]["outcome"], "failed", "{status:#}");
        assert!(
            status["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|warning| warning.as_str().unwrap().starts_with("the last update")),
            "{status:#}"
        );
    }
}

#[test]
fn an_agent_program_that_is_not_executable_refuses_before_the_commit() {
    let node = Node::with_generation();
    let program = node.root.join("cf-agent-not-executable");
    fs::write(&program, "#!/bin/sh\nexit 0\n").unwrap();
    set_mode(&program, 0o644);
    node.set_config("agent", "command", &format!(r#"["{}"]"#, s(&program)));
    let before = node.snapshot();
    assert_refused(
        &node,
        &["ingest", s(&node.serial_tree("gen2", 2))],
        1,
        &format!(
            "polstore: the agent run cannot start: {} is not an executable file; generation 1 stays active\n",
            s(&program)
        ),
    );
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.generations(), vec![1]);
}
