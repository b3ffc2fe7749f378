//! Backward compatibility: a store written by an earlier polstore is read, verified and
//! extended by this one (in the spirit of redb's `tests/backward_compatibility.rs`).
//!
//! `tests/fixtures/store-v1` is a store of format 1 whose database records are all of
//! version 1, made by `bash tools/make-fixture` with the polstore of that format. The
//! values expected here are the generator's inputs (its policy text, serials, sources and
//! steps), not whatever polstore printed. How to make a fixture, and why an existing one is
//! never regenerated (a new format version gets a new fixture beside it):
//! `tests/fixtures/store-v1/README.md`.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use serde_json::Value;
use util::{Node, assert_ingest_refused, running_as_root, s, set_mode, tree_content};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1");
/// Where `tools/make-fixture` made the store: the sources recorded in its database name it.
const GENERATOR_ROOT: &str = "/tmp/polstore-fixture-v1";
/// The generation the fixture leaves active (after its `polstore rollback`).
const ACTIVE: u64 = 3;
/// The highest serial the fixture accepted (generation 5, rolled back from since).
const SERIAL_MAX: u64 = 4;
/// The user check in the fixture's checks directory.
const USER_CHECK: &str = "user check 10-promises-present";

/// A generation as the generator made it.
struct Generation {
    number: u64,
    serial: u64,
    state: &'static str,
    origin: &'static str,
    /// Relative to [`GENERATOR_ROOT`].
    source: &'static str,
    files: u64,
    pinned: bool,
}

const GENERATIONS: [Generation; 5] = [
    Generation {
        number: 1,
        serial: 0,
        state: "good",
        origin: "adopted",
        source: "node/inputs",
        files: 2,
        pinned: false,
    },
    Generation {
        number: 2,
        serial: 1,
        state: "good",
        origin: "ingested",
        source: "drop/serial-1",
        files: 2,
        pinned: true,
    },
    Generation {
        number: 3,
        serial: 2,
        state: "good",
        origin: "ingested",
        source: "drop/serial-2.tar.gz",
        files: 3,
        pinned: false,
    },
    Generation {
        number: 4,
        serial: 3,
        state: "failed",
        origin: "ingested",
        source: "drop/serial-3",
        files: 2,
        pinned: false,
    },
    Generation {
        number: 5,
        serial: 4,
        state: "good",
        origin: "ingested",
        source: "drop/serial-4",
        files: 2,
        pinned: false,
    },
];

/// `promises.cf` as the generator's `policy WHAT` writes it.
fn policy(what: &str) -> String {
    format!(
        "body common control\n{{\n  bundlesequence => {{ \"main\" }};\n  inputs => {{ \"lib/common.cf\" }};\n}}\nbundle agent main\n{{\n  reports:\n    \"{what}\";\n}}\n"
    )
}

/// The generator's `bin/hello.sh` of serial 2.
const HELLO: &str = "#!/bin/sh\necho fixture\n";

fn source(relative: &str) -> String {
    format!("{GENERATOR_ROOT}/{relative}")
}

/// Copies `from` into `to`, directories 0755 and files 0755 or 0644 by their executable
/// bit: a checkout's modes follow the umask, the store's must be exactly these.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    set_mode(to, 0o755);
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            assert!(kind.is_file(), "{} in the fixture", entry.path().display());
            fs::copy(entry.path(), &target).unwrap();
            let executable = entry.metadata().unwrap().permissions().mode() & 0o111 != 0;
            set_mode(&target, if executable { 0o755 } else { 0o644 });
        }
    }
}

/// A node holding a copy of the fixture: its store with `@ROOT@` in the configuration
/// replaced by the node's directory, its keys in place of the node's own, its user check,
/// an empty `staging/`, and the view pointing at the active generation's tree.
fn fixture_node() -> Node {
    let node = Node::new();
    let fixture = Path::new(FIXTURE);
    copy_tree(&fixture.join("store"), &node.store);
    fs::create_dir(node.store.join("staging")).unwrap();
    copy_tree(&fixture.join("keys"), node.public_key.parent().unwrap());
    set_mode(&node.secret_key, 0o600);
    copy_tree(&fixture.join("checks.d"), &node.checks);
    let config = fs::read_to_string(node.config_path()).unwrap();
    assert!(config.contains("@ROOT@"), "{config}");
    fs::write(node.config_path(), config.replace("@ROOT@", s(&node.root))).unwrap();
    std::os::unix::fs::symlink(node.generation_tree(ACTIVE), &node.view).unwrap();
    node
}

/// The key number of the fixture's public key, as polstore names it (hex): bytes 2..10 of
/// the key's base64 line.
fn fixture_key_number() -> String {
    let text = fs::read_to_string(Path::new(FIXTURE).join("keys/polstore.pub")).unwrap();
    let line = text.lines().nth(1).expect("a signify key has two lines");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .unwrap();
    bytes[2..10]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn assert_generation(json: &Value, expected: &Generation, key: &str) {
    let context = format!("generation {}: {json}", expected.number);
    assert_eq!(json["generation"], expected.number, "{context}");
    assert_eq!(json["serial"], expected.serial, "{context}");
    assert_eq!(json["state"], expected.state, "{context}");
    assert_eq!(json["origin"], expected.origin, "{context}");
    assert_eq!(json["source"], source(expected.source), "{context}");
    assert_eq!(json["files"], expected.files, "{context}");
    assert_eq!(json["pinned"], expected.pinned, "{context}");
    assert_eq!(json["active"], expected.number == ACTIVE, "{context}");
    if expected.origin == "adopted" {
        assert_eq!(json["signed_by"], Value::Null, "{context}");
    } else {
        assert_eq!(json["signed_by"], key, "{context}");
    }
    if expected.state == "failed" {
        assert_eq!(
            json["reason"], "/bin/false exited with status 1",
            "{context}"
        );
    } else {
        assert_eq!(json["reason"], Value::Null, "{context}");
    }
}

#[test]
fn a_format_1_store_is_read_verified_and_extended() {
    let node = fixture_node();
    let key = fixture_key_number();

    // status: the active generation, the serial floor, the last attempt, verify and update.
    let status = node.status();
    assert_generation(&status["active"], &GENERATIONS[2], &key);
    assert_eq!(status["serial_max"], SERIAL_MAX);
    assert_eq!(status["generations"], GENERATIONS.len());
    assert_eq!(status["last_attempt"]["attempt"], 8);
    assert_eq!(status["last_attempt"]["action"], "rollback");
    assert_eq!(status["last_attempt"]["outcome"], "switched");
    assert_eq!(status["last_attempt"]["generation"], ACTIVE);
    assert_eq!(status["last_verify"]["outcome"], "sound");
    assert_eq!(status["last_update"]["outcome"], "updated");
    // Made before the read-only view: the view points at the writable tree until the first
    // writer points it through `readonly/`, and status says so.
    assert_eq!(
        status["warnings"],
        serde_json::json!([
            format!(
                "the view {} points at generation {ACTIVE}'s writable tree {} (as an older polstore made it), not through {}",
                s(&node.view),
                s(&node.generation_tree(ACTIVE)),
                s(&node.store.join("readonly"))
            ),
            format!(
                "the view is not read-only: {} does not exist yet (an older polstore made the store; the next command that writes makes it); writes through the view reach the store",
                s(&node.store.join("readonly"))
            ),
        ])
    );
    assert_eq!(status["view_protection"]["state"], "missing");
    let text = node.run(&["status"]).success().stdout;
    assert!(
        text.contains(&format!("generation {ACTIVE}, serial 2, good")),
        "{text}"
    );

    // list: every generation, as made.
    let list = node.list();
    assert_eq!(list.len(), GENERATIONS.len(), "{list:?}");
    for (json, expected) in list.iter().zip(&GENERATIONS) {
        assert_generation(json, expected, &key);
    }
    let text = node.run(&["list"]).success().stdout;
    for expected in &GENERATIONS {
        assert!(
            text.contains(&source(expected.source)),
            "list lacks generation {}: {text}",
            expected.number
        );
    }

    // log: every attempt, in order, with the checks of the ingests.
    let log = node.log();
    /// Number, action, outcome, generation, serial.
    type Attempt<'a> = (u64, &'a str, &'a str, Option<u64>, Option<u64>);
    let attempts: Vec<Attempt> = log
        .iter()
        .map(|attempt| {
            (
                attempt["attempt"].as_u64().unwrap(),
                attempt["action"].as_str().unwrap(),
                attempt["outcome"].as_str().unwrap(),
                attempt["generation"].as_u64(),
                attempt["serial"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (1, "adopt", "accepted", Some(1), Some(0)),
            (2, "ingest", "accepted", Some(2), Some(1)),
            (3, "ingest", "accepted", Some(3), Some(2)),
            (4, "ingest", "rejected", None, None),
            (5, "ingest", "accepted", Some(4), Some(3)),
            (6, "ingest", "rolled-back", Some(4), Some(3)),
            (7, "ingest", "accepted", Some(5), Some(4)),
            (8, "rollback", "switched", Some(ACTIVE), Some(2)),
        ]
    );
    assert_eq!(log[3]["source"], source("drop/serial-1"));
    let names = |attempt: &Value| -> Vec<String> {
        attempt["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|check| check["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&log[1]),
        ["integrity", "freshness", "parse", USER_CHECK]
    );
    assert_eq!(names(&log[3]), ["integrity", "freshness"]);
    assert_eq!(log[3]["checks"][1]["passed"], false);
    let text = node.run(&["log"]).success().stdout;
    assert!(text.contains("rollback switched"), "{text}");

    // show and diff: file contents from the stored objects.
    let show =
        |generation: &str, path: &str| node.run(&["show", generation, path]).success().stdout;
    assert_eq!(show("1", "promises.cf"), policy("adopted"));
    assert_eq!(show("2", "lib/common.cf"), "# common, serial 1\n");
    assert_eq!(show("3", "promises.cf"), policy("serial 2"));
    assert_eq!(show("3", "bin/hello.sh"), HELLO);
    assert_eq!(show("5", "lib/common.cf"), "# common, serial 4\n");
    let diff = node.run(&["diff", "2", "3"]).success().stdout;
    assert_eq!(diff, "A bin/hello.sh\nM lib/common.cf\nM promises.cf\n");
    let diff = node.run(&["diff", "3", "5"]).success().stdout;
    assert_eq!(diff, "D bin/hello.sh\nM lib/common.cf\nM promises.cf\n");

    // verify: every generation checked and sound; the one finding is the older view at
    // the writable tree, through which writes reach the store (the first writer, or
    // `verify --repair`, points it through the read-only mount).
    let out = node.run(&["verify", "--json"]);
    assert_eq!(out.code, 4, "{out:#?}");
    let verify: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(verify["sound"], false, "{verify}");
    assert_eq!(
        verify["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|finding| finding["message"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        [format!(
            "the view {} points at generation {ACTIVE}'s writable tree {} (as an older polstore made it), not through {}",
            s(&node.view),
            s(&node.generation_tree(ACTIVE)),
            s(&node.store.join("readonly"))
        )]
    );
    assert_eq!(verify["active"], ACTIVE);
    let checked: Vec<(u64, &str, bool)> = verify["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|generation| {
            (
                generation["generation"].as_u64().unwrap(),
                generation["state"].as_str().unwrap(),
                generation["sound"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(u64, &str, bool)> = GENERATIONS
        .iter()
        .map(|generation| (generation.number, generation.state, true))
        .collect();
    assert_eq!(checked, expected);

    // The first writer makes `STORE/active`, the one switch, and points the view through
    // it for good.
    let out = node.run(&["gc"]).success();
    for note in [
        format!(
            "polstore: recovery: pointed {} at generation {ACTIVE}\n",
            s(&node.store.join("active"))
        ),
        format!(
            "polstore: recovery: pointed the view {} at {}\n",
            s(&node.view),
            s(&node.store.join("readonly/active"))
        ),
    ] {
        assert!(out.stderr.contains(&note), "{note}{out:#?}");
    }
    assert_eq!(
        fs::read_link(&node.view).unwrap(),
        node.store.join("readonly/active")
    );
    assert_eq!(node.viewed_generation(), Some(ACTIVE));

    // ingest: the serial floor read from the old state record refuses a replay of the
    // highest serial; the next serial, signed by the fixture's key, becomes generation 6.
    let replay = node.signed_tree(
        "serial-4-again",
        &[("promises.cf", &policy("serial 4 again"))],
        SERIAL_MAX,
    );
    assert_ingest_refused(
        &node,
        &replay,
        &format!("highest accepted serial {SERIAL_MAX}"),
    );
    let files = [
        ("promises.cf", policy("serial 5")),
        ("lib/common.cf", "# common, serial 2\n".to_string()),
        ("bin/hello.sh", HELLO.to_string()),
    ];
    let tree = node.tree(
        "serial-5",
        &files
            .iter()
            .map(|(path, content)| (*path, content.as_str()))
            .collect::<Vec<_>>(),
    );
    set_mode(&tree.join("bin/hello.sh"), 0o755);
    node.sign_tree(&tree, SERIAL_MAX + 1);
    let out = node.ingest(&tree).success();
    assert!(
        out.stdout
            .starts_with("generation 6 active: serial 5, 3 files"),
        "{out:#?}"
    );
    assert_eq!(node.viewed_generation(), Some(6));
    let view = tree_content(&node.view);
    let expected: Vec<(&str, u32, &[u8])> = vec![
        ("bin/hello.sh", 0o755, HELLO.as_bytes()),
        ("lib/common.cf", 0o644, b"# common, serial 2\n"),
        ("promises.cf", 0o644, files[0].1.as_bytes()),
    ];
    let found: Vec<(&str, u32, &[u8])> = view
        .iter()
        .map(|(path, (mode, content))| (path.as_str(), *mode, content.as_slice()))
        .collect();
    assert_eq!(found, expected);

    // The store the first writer upgraded verifies sound (which also clears the last
    // verify's finding from status).
    if running_as_root() {
        node.run(&["verify"]).success();
    }
    let status = node.status();
    assert_eq!(status["active"]["generation"], 6);
    // The first writer made `readonly/` and mounted it (as root; without the privilege to
    // mount, the view stays writable and status keeps saying so).
    if running_as_root() {
        assert_eq!(status["warnings"], Value::Array(Vec::new()));
        assert_eq!(status["view_protection"]["state"], "read-only");
    } else {
        assert_eq!(status["view_protection"]["state"], "missing");
    }
    assert_eq!(status["active"]["source"], s(&tree));
    assert_eq!(status["serial_max"], SERIAL_MAX + 1);
    let list = node.list();
    let numbers: Vec<u64> = list
        .iter()
        .map(|g| g["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    let log = node.log();
    let last = log.last().unwrap();
    assert_eq!(last["attempt"], 10, "{last}");
    assert_eq!(last["outcome"], "accepted");
    assert_eq!(last["generation"], 6);
    assert_eq!(names(last), ["integrity", "freshness", "parse", USER_CHECK]);

    // The old generations and the new one verify together.
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("sound; generation 6 is active"),
        "{out:#?}"
    );
}
