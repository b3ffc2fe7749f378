//! A local attacker, a careless admin and a failing disk (issue 9's classes): each test
//! does what one of them would and checks the refusal's message and exit code, and that
//! the active generation, the view and everything outside the store are unchanged.

mod util;

use std::fs;
use std::os::unix::fs::symlink;

use util::*;

fn candidate(node: &Node, serial: u64) -> std::path::PathBuf {
    node.signed_tree(
        &format!("gen{serial}"),
        &[("promises.cf", POLICY), ("lib/common.cf", "# next\n")],
        serial,
    )
}

// ---------------------------------------------------------------- configuration

#[test]
fn a_configuration_that_leaves_sections_and_keys_out_takes_their_defaults() {
    let node = Node::unsigned();
    // Only what has no default: the view. No [fetch], [checks], [agent], [limits],
    // [verify] or [trust] section at all.
    fs::write(
        node.config_path(),
        format!(
            "view = {}\n[trust]\nrequire_signature = false\n[checks]\ncf_promises = []\n[agent]\ncommand = []\n",
            toml_string(s(&node.view))
        ),
    )
    .unwrap();
    let tree = node.tree("minimal", &[("promises.cf", POLICY)]);
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(1));
    node.run(&["status"]).success();
    node.run(&["verify"]).success();
    fs::write(
        node.config_path(),
        format!("view = {}\n", toml_string(s(&node.view))),
    )
    .unwrap();
    node.run(&["status"]).success();
}

#[test]
fn a_relative_path_in_the_configuration_stops_every_command() {
    let node = Node::with_generation();
    for (section, key, value, named) in [
        ("checks", "dir", "\"checks.d\"", "checks.dir"),
        (
            "checks",
            "cf_promises",
            "[\"cf-promises\", \"-f\", \"{tree}/promises.cf\"]",
            "checks.cf_promises",
        ),
        ("agent", "command", "[\"cf-agent\"]", "agent.command"),
    ] {
        let config = fs::read_to_string(node.config_path()).unwrap();
        node.set_config(section, key, value);
        let tree = candidate(&node, 2);
        let out = assert_refused(&node, &["ingest", s(&tree)], 1, named);
        assert!(
            out.stderr.contains("must be an absolute path"),
            "{}",
            out.stderr
        );
        assert_refused(&node, &["status"], 1, named);
        fs::write(node.config_path(), config).unwrap();
        fs::remove_dir_all(&tree).unwrap();
    }
}

#[test]
fn a_checks_directory_named_but_missing_refuses_every_ingest() {
    let node = Node::with_generation();
    let missing = node.root.join("no-such-checks.d");
    node.set_config("checks", "dir", &toml_string(s(&missing)));
    let tree = candidate(&node, 2);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "user checks: the checks directory {} named in the configuration does not exist; generation 1 stays active",
            missing.display()
        ),
    );
}

// ---------------------------------------------------------------- who could have written it

#[test]
fn a_checks_directory_or_check_others_can_write_is_refused_not_run() {
    let node = Node::with_generation();
    let ran = node.root.join("check-ran");
    node.add_check("10-record", &format!("touch {}\nexit 0", s(&ran)));
    let check = node.checks.join("10-record");
    let tree = candidate(&node, 2);
    // World-writable directory: anyone could put a check there, which root would run.
    set_mode(&node.checks, 0o777);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "must belong to root and be writable by no one else (owner",
    );
    set_mode(&node.checks, 0o755);
    // A group-writable check.
    set_mode(&check, 0o775);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "user checks: {} must belong to root and be writable by no one else",
            check.display()
        ),
    );
    set_mode(&check, 0o755);
    // A symbolic link where a check is: not followed.
    let elsewhere = node.root.join("elsewhere-check");
    fs::write(&elsewhere, "#!/bin/sh\nexit 0\n").unwrap();
    set_mode(&elsewhere, 0o755);
    symlink(&elsewhere, node.checks.join("20-link")).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "20-link is not a regular file; a check must be one",
    );
    fs::remove_file(node.checks.join("20-link")).unwrap();
    // The checks directory itself a symbolic link: not followed.
    let real = node.root.join("real-checks.d");
    fs::rename(&node.checks, &real).unwrap();
    symlink(&real, &node.checks).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "is not a directory (a symbolic link is not followed)",
    );
    fs::remove_file(&node.checks).unwrap();
    fs::rename(&real, &node.checks).unwrap();
    assert!(!ran.exists(), "a refused check ran");
    // Put right, the same candidate goes through and the check runs.
    node.ingest(&tree).success();
    assert!(ran.exists());
    assert_eq!(node.active_generation(), Some(2));
}

// ---------------------------------------------------------------- inputs that real trees hold

#[test]
fn a_signed_serial_above_2_63_is_refused_and_blocks_nothing() {
    let node = Node::with_generation();
    // The server side refuses to make one...
    let tree = node.tree("huge", &[("promises.cf", POLICY)]);
    let out = node.run(&[
        "manifest",
        s(&tree),
        "--serial",
        "18446744073709551615",
        "--output",
        s(&tree.join("polstore.manifest")),
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("serial 18446744073709551615 is above 9223372036854775807"),
        "{}",
        out.stderr
    );
    // ...and a node refuses one made by hand and signed with the trusted key.
    let tree = node.signed_tree("top", &[("promises.cf", POLICY)], 5);
    let manifest = tree.join("polstore.manifest");
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replace("serial 5\n", "serial 18446744073709551615\n");
    fs::write(&manifest, text).unwrap();
    node.sign(&manifest);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        3,
        "rejected by the integrity check: polstore.manifest: manifest line 2: serial: 18446744073709551615 is above 9223372036854775807",
    );
    // The floor did not move: the next ordinary serial is accepted.
    node.ingest(&candidate(&node, 2)).success();
    assert_eq!(node.active_generation(), Some(2));
}
