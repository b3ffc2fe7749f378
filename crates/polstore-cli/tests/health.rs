//! Node health: `verify` finds each kind of damage and names the generation and file;
//! `verify --repair` puts it right from verified data; `update`, `gc`, `pin` and the
//! systemd units work as the README says. Every check runs the real cf-promises.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::*;

/// Generation 2 shares `lib/common.cf` with generation 1 and changes `promises.cf`.
fn node_with_two_generations() -> Node {
    let node = Node::with_generation();
    let tree = node.signed_tree(
        "gen2",
        &[
            ("promises.cf", &POLICY.replace("hello", "hello again")),
            ("lib/common.cf", "# common\n"),
            ("lib/extra.cf", "# extra\n"),
        ],
        2,
    );
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(2));
    node
}

fn verify_json(node: &Node, args: &[&str]) -> (Out, Value) {
    let out = node.run(args);
    let json = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|error| panic!("{args:?} --json did not print JSON ({error}): {out:#?}"));
    (out, json)
}

/// `verify` exits 4 with one `polstore:` line on standard error, lists a finding naming
/// `generation` (when given) and containing `fragment`, and changes nothing.
fn assert_detected(node: &Node, generation: Option<u64>, fragment: &str) -> Value {
    let before = fs::read_link(&node.view).ok();
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "verify should report damage: {out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(
        out.stderr.starts_with("polstore: verify found "),
        "{out:#?}"
    );
    let expected = match generation {
        Some(generation) => format!("DAMAGED  generation {generation}: "),
        None => "DAMAGED  ".to_string(),
    };
    assert!(
        out.stdout
            .lines()
            .any(|line| line.starts_with(&expected) && line.contains(fragment)),
        "no finding {expected}...{fragment} in {out:#?}"
    );
    let (out, json) = verify_json(node, &["verify", "--json"]);
    assert_eq!(out.code, 4);
    assert_eq!(json["sound"], false);
    assert_eq!(
        fs::read_link(&node.view).ok(),
        before,
        "verify changed the view"
    );
    json
}

/// `verify --repair` exits 0, then `verify` passes and the view is byte-identical to
/// the active generation's manifest.
fn assert_repaired(node: &Node) -> Out {
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code, 0, "verify --repair failed: {out:#?}");
    assert!(
        out.stdout.contains("REPAIRED") || out.stdout.contains("ALARM"),
        "{out:#?}"
    );
    let again = node.run(&["verify"]);
    assert_eq!(again.code, 0, "verify after repair: {again:#?}");
    assert!(
        again.stdout.lines().last().unwrap().starts_with("sound"),
        "{again:#?}"
    );
    let active = node.active_generation().expect("a generation is active");
    assert_eq!(node.viewed_generation(), Some(active));
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(active));
    out
}

#[test]
fn a_sound_store_verifies_and_status_shows_it() {
    let node = node_with_two_generations();
    let out = node.run(&["verify"]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:#?}");
    assert!(
        lines[0].starts_with("  generation     1  good") && lines[0].ends_with("2 files  sound")
    );
    assert!(
        lines[1].starts_with("* generation     2  good") && lines[1].ends_with("3 files  sound")
    );
    assert_eq!(lines[2], "sound; generation 2 is active");
    let (_, json) = verify_json(&node, &["verify", "--json"]);
    assert_eq!(json["sound"], true);
    assert_eq!(json["findings"], Value::Array(vec![]));
    let status = node.status();
    assert_eq!(status["last_verify"]["outcome"], "sound");
    assert_eq!(status["last_update"], Value::Null);
}

#[test]
fn a_flipped_byte_is_found_and_repaired() {
    let node = node_with_two_generations();
    let file = node.generation_tree(2).join("promises.cf");
    let mut bytes = fs::read(&file).unwrap();
    bytes[10] ^= 0x20;
    fs::write(&file, bytes).unwrap();
    let json = assert_detected(&node, Some(2), "promises.cf: content does not match");
    assert_eq!(json["findings"][0]["kind"], "content");
    assert_eq!(json["findings"][0]["generation"], 2);
    assert_eq!(json["findings"][0]["path"], "promises.cf");
    assert_eq!(json["generations"][0]["sound"], true);
    assert_eq!(json["generations"][1]["sound"], false);
    assert_eq!(json["generations"][1]["active"], true);
    let out = assert_repaired(&node);
    assert!(
        out.stdout
            .contains("re-materialized the directory of generation 2")
    );
}

#[test]
fn a_file_shared_by_generations_is_found_in_each() {
    let node = node_with_two_generations();
    // Hard-linked between generations 1 and 2: one write damages both.
    let file = node.generation_tree(1).join("lib/common.cf");
    let mut bytes = fs::read(&file).unwrap();
    bytes[0] = b'!';
    fs::write(&file, &bytes).unwrap();
    assert_detected(&node, Some(1), "lib/common.cf: content does not match");
    assert_detected(&node, Some(2), "lib/common.cf: content does not match");
    assert_repaired(&node);
    assert_tree_matches_manifest(&node.generation_tree(1), &node.generation_manifest(1));
}

#[test]
fn a_deleted_file_is_found_and_repaired() {
    let node = node_with_two_generations();
    fs::remove_file(active_tree(&node).join("lib/extra.cf")).unwrap();
    assert_detected(&node, Some(2), "lib/extra.cf: is missing");
    assert_repaired(&node);
}

#[test]
fn an_extra_file_is_found_and_removed() {
    let node = node_with_two_generations();
    write_tree(
        &active_tree(&node),
        &[("lib/evil.cf", "bundle agent evil {}\n")],
    );
    assert_detected(&node, Some(2), "lib/evil.cf: file not in the manifest");
    assert_repaired(&node);
    assert!(!node.view.join("lib/evil.cf").exists());
}

#[test]
fn a_group_writable_file_or_directory_is_found_and_repaired() {
    let node = node_with_two_generations();
    let file = active_tree(&node).join("lib/extra.cf");
    set_mode(&file, 0o664);
    assert_detected(
        &node,
        Some(2),
        "lib/extra.cf: has mode 0664, the manifest says 0644",
    );
    assert_repaired(&node);
    let directory = active_tree(&node).join("lib");
    set_mode(&directory, 0o777);
    assert_detected(&node, Some(2), "lib: directory is group- or world-writable");
    assert_repaired(&node);
    assert_eq!(mode_of(&node.view.join("lib")) & 0o022, 0);
}

#[test]
fn a_view_replaced_by_a_directory_is_moved_aside_and_restored() {
    let node = node_with_two_generations();
    fs::remove_file(&node.view).unwrap();
    write_tree(&node.view, &[("promises.cf", "# someone's copy\n")]);
    // Writers refuse to work around it, saying what to do.
    let tree = node.signed_tree("gen3", &[("promises.cf", POLICY)], 3);
    let out = node.ingest(&tree);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("run 'polstore verify --repair'"),
        "{out:#?}"
    );
    assert_detected(&node, None, "is a directory, not polstore's symlink");
    let out = assert_repaired(&node);
    assert!(out.stdout.contains("moved aside to"), "{out:#?}");
    let displaced: Vec<PathBuf> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.to_string_lossy()
                .contains(".inputs.polstore-displaced-")
        })
        .collect();
    assert_eq!(displaced.len(), 1, "the old directory is kept aside");
    assert_eq!(
        fs::read_to_string(displaced[0].join("promises.cf")).unwrap(),
        "# someone's copy\n"
    );
}

#[test]
fn a_view_pointed_elsewhere_is_pointed_back() {
    let node = node_with_two_generations();
    fs::remove_file(&node.view).unwrap();
    std::os::unix::fs::symlink(node.generation_tree(1), &node.view).unwrap();
    assert_detected(&node, None, "points at");
    assert_repaired(&node);
    assert_eq!(node.viewed_generation(), Some(2));
}

#[test]
fn a_damaged_database_is_rebuilt_and_lost_files_come_from_the_drop_place() {
    let node = node_with_two_generations();
    node.set_config("fetch", "drop", &toml_string(s(&node.drop.join("gen2"))));
    // Bytes overwritten inside the database file: every copy of one object's content...
    let database = node.store.join("polstore.redb");
    let mut bytes = fs::read(&database).unwrap();
    let marker = b"# extra\n";
    let mut overwritten = 0;
    for start in 0..bytes.len() - marker.len() {
        if &bytes[start..start + marker.len()] == marker {
            bytes[start..start + marker.len()].fill(0xa5);
            overwritten += 1;
        }
    }
    assert!(
        overwritten > 0,
        "the object's content is in the database file"
    );
    fs::write(&database, bytes).unwrap();
    // ...and the same file in generation 2, so only the drop place holds a good copy.
    fs::write(active_tree(&node).join("lib/extra.cf"), "# tampered\n").unwrap();
    let json = assert_detected(&node, None, "the database is damaged");
    assert_eq!(json["findings"][0]["kind"], "database");
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|finding| finding["generation"] == 2 && finding["path"] == "lib/extra.cf"),
        "{json:#}"
    );
    let out = assert_repaired(&node);
    assert!(
        out.stdout
            .contains("rebuilt the database from 2 generation directories"),
        "{out:#?}"
    );
    assert!(
        out.stdout
            .contains("restored 1 objects from the drop place"),
        "{out:#?}"
    );
    assert!(node.store.join("polstore.redb.damaged").exists());
    // The rebuilt store keeps the replay protection and the history of states.
    let list = node.list();
    assert_eq!(list.len(), 2);
    assert_eq!(node.status()["serial_max"], 2);
    let replay = node.signed_tree("replay", &[("promises.cf", POLICY)], 2);
    assert_ingest_refused(
        &node,
        &replay,
        "serial 2 is equal to the highest accepted serial 2",
    );
}

#[test]
fn a_policy_that_stops_parsing_is_replaced_by_the_newest_that_parses() {
    let node = Node::with_generation();
    // Generation 2 reads a file outside the tree; deleting that file breaks parsing,
    // though not one byte of the generation changed.
    let outside = node.root.join("site.cf");
    fs::write(
        &outside,
        "bundle common site\n{\n  vars:\n    \"name\" string => \"x\";\n}\n",
    )
    .unwrap();
    let policy = POLICY.replace(
        "bundlesequence => { \"main\" };",
        &format!(
            "bundlesequence => {{ \"main\" }};\n  inputs => {{ \"{}\" }};",
            s(&outside)
        ),
    );
    let tree = node.signed_tree("gen2", &[("promises.cf", &policy)], 2);
    node.ingest(&tree).success();
    fs::remove_file(&outside).unwrap();
    assert_detected(
        &node,
        Some(2),
        "the active generation no longer parses: promises.cf: cf-promises exited with status 1: error: Can't stat file",
    );
    let out = assert_repaired(&node);
    assert!(
        out.stdout
            .contains("ALARM    ACTIVATED generation 1 in place of generation 2"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("polstore: ALARM: ACTIVATED generation 1"),
        "{out:#?}"
    );
    assert_eq!(node.active_generation(), Some(1));
    let failed = &node.list()[1];
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no longer parses")
    );
}

/// A fetch command that copies `server` into the drop place, as rsync would.
fn configure_fetch(node: &Node, server: &Path) -> PathBuf {
    let drop = node.root.join("incoming");
    node.set_config(
        "fetch",
        "command",
        &format!(
            r#"["/bin/sh", "-c", "rm -rf {{drop}} && cp -a {} {{drop}} && echo force={{force}} >> {}"]"#,
            s(server),
            s(&node.root.join("fetch.log"))
        ),
    );
    node.set_config("fetch", "drop", &toml_string(s(&drop)));
    drop
}

#[test]
fn every_generation_damaged_is_repaired_from_a_fresh_fetch() {
    let node = node_with_two_generations();
    let server = node.drop.join("gen2");
    let drop = configure_fetch(&node, &server);
    // The database is gone, and the one file every generation shares is damaged (it is
    // one inode), so no local copy of it is left anywhere.
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    fs::write(node.generation_tree(1).join("lib/common.cf"), "# rotten\n").unwrap();
    assert!(!drop.exists());
    assert_detected(&node, Some(1), "lib/common.cf: content does not match");
    assert_detected(&node, Some(2), "lib/common.cf: content does not match");
    let out = assert_repaired(&node);
    assert!(out.stdout.contains("fetched a fresh copy"), "{out:#?}");
    assert_eq!(
        fs::read_to_string(node.root.join("fetch.log")).unwrap(),
        "force=1\n"
    );
    assert_eq!(node.active_generation(), Some(2));
    assert_tree_matches_manifest(&node.generation_tree(1), &node.generation_manifest(1));
}

#[test]
fn a_generation_beyond_repair_is_removed_and_never_activated() {
    let node = node_with_two_generations();
    // Generation 1's promises.cf exists nowhere else, and there is no drop place.
    fs::write(node.generation_tree(1).join("promises.cf"), "# rotten\n").unwrap();
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout
            .contains("ALARM    generation 1 cannot be repaired"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("ALARM    removed generation 1"),
        "{out:#?}"
    );
    assert_eq!(node.generations(), [2]);
    node.run(&["verify"]).success();
}

#[test]
fn update_ingests_new_serials_and_skips_unchanged_ones() {
    let node = Node::with_generation();
    let server = node.signed_tree("server", &[("promises.cf", POLICY)], 2);
    configure_fetch(&node, &server);
    let out = node.run(&["update"]).success();
    assert!(
        out.stdout.starts_with("generation 2 active: serial 2"),
        "{out:#?}"
    );
    let out = node.run(&["update", "--json"]).success();
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["outcome"], "unchanged");
    assert_eq!(json["serial"], 2);
    assert_eq!(
        node.list().len(),
        2,
        "an unchanged serial makes no generation"
    );
    assert_eq!(node.status()["last_update"]["outcome"], "unchanged");
    // The same serial with other content is a replay, refused.
    fs::write(
        server.join("promises.cf"),
        POLICY.replace("hello", "changed"),
    )
    .unwrap();
    node.sign_tree(&server, 2);
    let out = assert_refused(&node, &["update"], 3, "serial 2 is equal to the highest");
    assert!(
        out.stderr.ends_with("; generation 2 stays active\n"),
        "{out:#?}"
    );
    assert_eq!(node.status()["last_update"]["outcome"], "rejected");
    let status = node.run(&["status"]).success();
    assert!(
        status.stdout.contains("WARNING      the last update"),
        "{status:#?}"
    );
    node.sign_tree(&server, 3);
    node.run(&["update"]).success();
    assert_eq!(node.active_generation(), Some(3));
}

#[test]
fn update_force_verifies_the_fresh_copy_and_repairs_the_store() {
    let node = Node::with_generation();
    configure_fetch(&node, &node.drop.join("gen1"));
    fs::write(active_tree(&node).join("lib/common.cf"), "# rotten\n").unwrap();
    let out = node.run(&["update"]).success();
    assert!(out.stdout.starts_with("unchanged"), "{out:#?}");
    let out = node.run(&["update", "--force"]).success();
    assert!(
        out.stdout.contains("DAMAGED  generation 1: lib/common.cf"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("REPAIRED"), "{out:#?}");
    assert_eq!(
        fs::read_to_string(node.root.join("fetch.log")).unwrap(),
        "force=0\nforce=1\n"
    );
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(1));
    // A fresh copy that does not match its own signed manifest is refused.
    fs::write(
        node.drop.join("gen1/lib/common.cf"),
        "# tampered on the server\n",
    )
    .unwrap();
    assert_refused(&node, &["update", "--force"], 3, "lib/common.cf");
}

#[test]
fn update_refusals_leave_the_active_generation() {
    let node = Node::with_generation();
    assert_refused(&node, &["update"], 1, "fetch.drop is not configured");
    node.set_config("fetch", "drop", &toml_string(s(&node.root.join("nothing"))));
    assert_refused(&node, &["update"], 1, "nothing at the drop place");
    node.set_config(
        "fetch",
        "command",
        r#"["/bin/sh", "-c", "echo 'server unreachable' >&2; exit 7"]"#,
    );
    assert_refused(
        &node,
        &["update"],
        1,
        "the fetch command /bin/sh exited with status 7: server unreachable",
    );
    assert_eq!(node.status()["last_update"]["outcome"], "failed");
}

fn ingest_serial(node: &Node, name: &str, serial: u64) {
    node.ingest(&node.serial_tree(name, serial)).success();
}

fn set_keep(node: &Node, keep: u32) {
    let text = fs::read_to_string(node.config_path()).unwrap();
    assert!(text.contains("\nkeep = 10\n"));
    fs::write(
        node.config_path(),
        text.replace("\nkeep = 10\n", &format!("\nkeep = {keep}\n")),
    )
    .unwrap();
}

fn generation_dirs(node: &Node) -> Vec<u64> {
    let mut numbers: Vec<u64> = fs::read_dir(node.store.join("generations"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

#[test]
fn gc_keeps_the_newest_the_pinned_and_the_last_good_one() {
    let node = Node::signed();
    set_keep(&node, 3);
    for serial in 1..=4 {
        ingest_serial(&node, &format!("t{serial}"), serial);
    }
    node.run(&["pin", "2"]).success();
    for serial in 5..=10 {
        ingest_serial(&node, &format!("t{serial}"), serial);
    }
    // No ingest collects: gc is off the update path, and its timer runs it.
    assert_eq!(node.generations(), (1..=10).collect::<Vec<u64>>());
    node.run(&["gc"]).success();
    assert_eq!(node.generations(), [2, 8, 9, 10]);
    assert_eq!(generation_dirs(&node), [2, 8, 9, 10]);
    assert_eq!(node.list()[0]["pinned"], true);
    // After a rollback to 8, gc keeps 8 (active), 2 (the last good one before it, even
    // unpinned) and the newest one.
    node.run(&["rollback", "8"]).success();
    node.run(&["unpin", "2"]).success();
    let out = node.run(&["gc", "--keep", "1", "--json"]).success();
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["removed"], serde_json::json!([9]));
    assert_eq!(node.generations(), [2, 8, 10]);
    assert_eq!(generation_dirs(&node), [2, 8, 10]);
    node.run(&["verify"]).success();
    // Every object still referenced is there; the others are gone.
    let show = node.run(&["show", "10", "lib/n.cf"]).success();
    assert_eq!(show.stdout, "# 10\n");
    assert_refused(&node, &["pin", "9"], 1, "generation 9 does not exist");
}

#[test]
fn gc_keeps_a_generation_a_running_process_is_using() {
    let node = Node::signed();
    for serial in 1..=3 {
        ingest_serial(&node, &format!("t{serial}"), serial);
    }
    // Generation 2's tree is the spare the next update would recycle; a process in it
    // keeps it where it is: the update builds its tree anew, and gc keeps generation 2.
    let mut user = Command::new("sleep")
        .arg("30")
        .current_dir(node.generation_tree(2).join("lib"))
        .spawn()
        .unwrap();
    ingest_serial(&node, "t4", 4);
    assert_tree_matches_manifest(&node.generation_tree(2), &node.generation_manifest(2));
    let out = node.run(&["gc", "--keep", "1"]).success();
    user.kill().unwrap();
    user.wait().unwrap();
    assert!(
        out.stdout
            .contains("kept generation(s) 2: a running process is using them"),
        "{out:#?}"
    );
    assert_eq!(node.generations(), [2, 3, 4]);
    node.run(&["gc", "--keep", "1"]).success();
    assert_eq!(node.generations(), [3, 4]);
    node.run(&["verify"]).success();
}

#[test]
fn the_database_does_not_grow_over_hundreds_of_ingests() {
    let node = Node::unsigned();
    set_keep(&node, 3);
    // Parsing is the same work each time; leave it out to keep the test short.
    node.set_config("checks", "cf_promises", "[]");
    let tree = node.root.join("tree");
    let filler = "x".repeat(20_000);
    for index in 0..40 {
        write_tree(
            &tree,
            &[(&format!("f{index}.cf"), &format!("{filler}{index}"))],
        );
    }
    let database = node.store.join("polstore.redb");
    let mut sizes = Vec::new();
    for round in 0..200 {
        let changing = format!("# round {round} {}\n", "y".repeat(round * 97 % 30_000));
        write_tree(&tree, &[("changing.cf", &changing)]);
        node.ingest(&tree).success();
        // As the verify timer runs gc, here after every few ingests.
        if round % 4 == 3 {
            node.run(&["gc"]).success();
        }
        sizes.push(fs::metadata(&database).unwrap().len());
    }
    node.run(&["gc"]).success();
    assert_eq!(node.generations().len(), 3);
    // The file grows for a while when redb doubles an allocation, and the space freed is
    // used again: bounded, not growing with the number of ingests.
    let settled = sizes[20];
    let largest = *sizes.iter().max().unwrap();
    let last = &sizes[180..];
    assert!(
        largest <= settled * 3 && last.iter().all(|size| *size <= settled * 3 / 2),
        "the database grew from {settled} bytes: {sizes:?}"
    );
}

/// The value of `Key=` in a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in unit"))
        .to_string()
}

#[test]
fn the_systemd_units_are_valid_and_run_what_they_document() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/systemd");
    let node = Node::with_generation();
    configure_fetch(&node, &node.drop.join("gen1"));
    let checked = node.root.join("units");
    fs::create_dir_all(&checked).unwrap();
    for name in [
        "polstore-mount.service",
        "polstore-update.service",
        "polstore-update.timer",
        "polstore-verify.service",
        "polstore-verify.timer",
    ] {
        let text = fs::read_to_string(units.join(name)).unwrap();
        // The installed path of the binary is this build's.
        fs::write(
            checked.join(name),
            text.replace("/usr/local/bin/polstore", POLSTORE),
        )
        .unwrap();
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipping systemd-analyze verify: systemd-analyze is not installed (tools/setup installs it)"
        );
    } else {
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .args(
                fs::read_dir(&checked)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            )
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Each service's command, run as systemd would (split on spaces, its environment,
    // but this node's store), does its job.
    // As at boot: nothing mounted yet. Mounting needs root.
    let mut services = vec![];
    if running_as_root() {
        node.run(&["unmount"]).success();
        services.push(("polstore-mount.service", "ExecStart", "mounted"));
    } else {
        eprintln!("not running polstore-mount.service: mounting needs root");
    }
    services.extend([
        ("polstore-update.service", "ExecStart", "unchanged"),
        ("polstore-verify.service", "ExecStart", "sound"),
        (
            "polstore-verify.service",
            "ExecStartPost",
            "nothing to remove",
        ),
    ]);
    for (service, key, expected) in services {
        let text = fs::read_to_string(checked.join(service)).unwrap();
        let command = unit_value(&text, key);
        let environment = unit_value(&text, "Environment");
        assert_eq!(environment, "POLSTORE_STORE=/var/lib/polstore");
        let argv: Vec<&str> = command.split(' ').collect();
        let output = Command::new(argv[0])
            .args(&argv[1..])
            .env("POLSTORE_STORE", &node.store)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{service}: {output:?}");
        assert!(
            stdout.lines().last().unwrap().starts_with(expected),
            "{service}: {stdout}"
        );
    }
    // The cron example runs the same commands.
    let cron = fs::read_to_string(units.join("polstore.cron")).unwrap();
    assert!(cron.contains("/usr/local/bin/polstore update"));
    assert!(cron.contains("/usr/local/bin/polstore verify --repair"));
    assert!(cron.contains("/usr/local/bin/polstore gc"));
    let status = node.status();
    assert_eq!(status["last_verify"]["outcome"], "sound");
    assert_eq!(status["last_update"]["outcome"], "unchanged");
    assert!(
        fs::metadata(units.join("install"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
}

#[test]
fn a_pinned_generation_beyond_repair_is_kept_failed_and_rollback_refuses_it() {
    let node = node_with_two_generations();
    node.run(&["pin", "1"]).success();
    fs::write(node.generation_tree(1).join("promises.cf"), "# rotten\n").unwrap();
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(
        out.code, 4,
        "damage is left, so the store is not sound: {out:#?}"
    );
    assert!(
        out.stdout
            .contains("ALARM    kept generation 1, damaged beyond repair, because it is pinned"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("LEFT     generation 1: promises.cf"),
        "{out:#?}"
    );
    assert_eq!(node.list()[0]["state"], "failed");
    assert_eq!(node.active_generation(), Some(2));
    assert_refused(
        &node,
        &["rollback", "1"],
        1,
        "refusing to activate generation 1, whose directory does not match its manifest: generation 1: promises.cf",
    );
}

#[test]
fn a_database_rebuild_refuses_when_no_manifest_verifies_against_the_trusted_keys() {
    let node = node_with_two_generations();
    // The operator rotated the key but the node kept only generations signed by the old.
    let other = node.root.join("keys/other.pub");
    node.run(&[
        "keygen",
        "--public",
        s(&other),
        "--secret",
        s(&node.root.join("keys/other.sec")),
    ])
    .success();
    node.set_config("trust", "keys", &format!("[{}]", toml_string(s(&other))));
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(
        out.stderr.contains(
            "no generation directory has a manifest that verifies against the trusted keys"
        ),
        "{out:#?}"
    );
    assert_eq!(generation_dirs(&node), [1, 2], "nothing was removed");
    assert_eq!(node.viewed_generation(), Some(2));
}

#[test]
fn a_parse_check_that_cannot_run_is_reported_but_changes_nothing() {
    let node = node_with_two_generations();
    node.set_config(
        "checks",
        "cf_promises",
        r#"["/nonexistent/cf-promises", "{tree}"]"#,
    );
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout
            .contains("the parse check could not give a verdict on the active generation"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("ALARM"), "{out:#?}");
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(node.list()[1]["state"], "good");
}

#[test]
fn a_file_given_to_another_owner_is_found_and_repaired() {
    if !running_as_root() {
        eprintln!("skipping: changing a file's owner needs root");
        return;
    }
    let node = node_with_two_generations();
    let file = active_tree(&node).join("lib/extra.cf");
    let status = Command::new("chown")
        .arg("65534")
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    assert_detected(&node, Some(2), "lib/extra.cf: is owned by uid 65534");
    assert_repaired(&node);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(node.view.join("lib/extra.cf")).unwrap().uid(),
        0
    );
}

#[test]
fn an_update_never_links_a_file_edited_in_the_active_generation() {
    let node = Node::with_generation();
    // Same size, other bytes: only a changed modification time tells.
    fs::write(active_tree(&node).join("lib/common.cf"), "# COMMON\n").unwrap();
    let tree = node.signed_tree(
        "gen2",
        &[
            ("promises.cf", POLICY),
            ("lib/common.cf", "# common\n"),
            ("new.cf", "# new\n"),
        ],
        2,
    );
    let out = node.ingest(&tree).success();
    assert!(out.stdout.contains("(2 written, 1 reused)"), "{out:#?}");
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(2));
    // The edited generation is still reported, and repaired.
    assert_detected(&node, Some(1), "lib/common.cf: content does not match");
    assert_repaired(&node);
}

/// A signed drop directory is built from its manifest: content the store holds comes from
/// the store, verified, and only new content is read from the drop.
#[test]
fn a_drop_directory_ingested_again_gets_verified_content_even_if_the_store_copy_was_edited() {
    let node = Node::with_generation();
    let drop = node.drop.join("gen1");
    // The same drop directory, one file changed: only that file is read and written; the
    // unchanged one is linked from the active generation.
    fs::write(drop.join("promises.cf"), POLICY.replace("hello", "hello 2")).unwrap();
    node.sign_tree(&drop, 2);
    let out = node.ingest(&drop).success();
    assert!(out.stdout.contains("(1 written, 1 reused)"), "{out:#?}");
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(2));
    // A copy in the store edited behind polstore's back is not used: the new generation is
    // built over generation 1's tree, whose copy is intact.
    fs::write(active_tree(&node).join("lib/common.cf"), "# COMMON\n").unwrap();
    fs::write(drop.join("promises.cf"), POLICY.replace("hello", "hello 3")).unwrap();
    node.sign_tree(&drop, 3);
    node.ingest(&drop).success();
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(3));
    // Nor is a drop file changed after signing, when the store holds what the manifest
    // names: the generation gets the manifest's content, never the drop's bytes.
    fs::write(drop.join("promises.cf"), POLICY.replace("hello", "hello 4")).unwrap();
    node.sign_tree(&drop, 4);
    fs::write(drop.join("lib/common.cf"), "# c0mmon\n").unwrap();
    node.ingest(&drop).success();
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(4));
    assert_ne!(
        fs::read_to_string(node.view.join("lib/common.cf")).unwrap(),
        "# c0mmon\n"
    );
    // A changed file whose new content does not match the manifest is refused.
    fs::write(drop.join("promises.cf"), POLICY.replace("hello", "hello 5")).unwrap();
    node.sign_tree(&drop, 5);
    fs::write(drop.join("promises.cf"), POLICY.replace("hello", "hello 6")).unwrap();
    assert_ingest_refused(
        &node,
        &drop,
        "promises.cf: content does not match the manifest",
    );
    assert_eq!(node.active_generation(), Some(4));
}

/// A byte of a stored object rotten inside the database file: verify reads each object
/// once, through redb's page checksums, and finds it; repair rebuilds the database from the
/// trees on disk, and the store is sound again.
#[test]
fn a_rotten_object_in_the_database_is_found_and_repaired() {
    let node = Node::with_generation();
    let unique = "# a content only the database and one tree hold, long enough to find\n";
    let tree = node.signed_tree(
        "gen2",
        &[("promises.cf", POLICY), ("lib/common.cf", unique)],
        2,
    );
    node.ingest(&tree).success();
    let database = node.store.join("polstore.redb");
    let mut bytes = fs::read(&database).unwrap();
    let at = bytes
        .windows(unique.len())
        .position(|window| window == unique.as_bytes())
        .expect("the object's bytes are in the database file");
    bytes[at + 10] ^= 0x20;
    fs::write(&database, &bytes).unwrap();
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(out.stdout.contains("the database is damaged"), "{out:#?}");
    node.run(&["verify", "--repair"]).success();
    node.run(&["verify"]).success();
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(
        fs::read_to_string(node.view.join("lib/common.cf")).unwrap(),
        unique
    );
}

/// The active generation's tree at its writable path in the store: the view is read-only,
/// so damage (bit rot, an editor, another owner) is simulated here.
fn active_tree(node: &Node) -> PathBuf {
    node.generation_tree(node.active_generation().expect("a generation is active"))
}

#[test]
fn a_drop_refused_as_damaged_in_transit_is_fetched_whole_again_next_time() {
    let node = Node::with_generation();
    let server = node.serial_tree("server", 2);
    let drop = node.root.join("incoming");
    // A transport with a cache: it keeps what the drop holds unless told to fetch
    // everything again (as an etag or an unchanged head would).
    node.set_config(
        "fetch",
        "command",
        &format!(
            r#"["/bin/sh", "-c", "echo force={{force}} >> {log}; if [ {{force}} = 1 ] || [ ! -d {{drop}} ]; then rm -rf {{drop}} && cp -a {server} {{drop}}; fi"]"#,
            log = s(&node.root.join("fetch.log")),
            server = s(&server),
        ),
    );
    node.set_config("fetch", "drop", &toml_string(s(&drop)));
    // What an earlier fetch left, damaged on its way.
    let status = Command::new("cp")
        .args(["-a", s(&server), s(&drop)])
        .status()
        .unwrap();
    assert!(status.success());
    fs::write(drop.join("lib/n.cf"), "# 2, cut sho").unwrap();
    assert_refused(
        &node,
        &["update"],
        3,
        "rejected by the integrity check: lib/n.cf",
    );
    assert_eq!(node.active_generation(), Some(1));
    // The next update tells the transport to fetch everything again.
    let out = node.run(&["update"]).success();
    assert!(out.stdout.contains("generation 2"), "{out:#?}");
    assert_eq!(node.active_generation(), Some(2));
    let out = node.run(&["update"]).success();
    assert!(out.stdout.starts_with("unchanged"), "{out:#?}");
    assert_eq!(
        fs::read_to_string(node.root.join("fetch.log")).unwrap(),
        "force=0\nforce=1\nforce=0\n"
    );
}

#[test]
fn no_ingest_collects_and_status_says_when_gc_is_behind() {
    let node = Node::signed();
    set_keep(&node, 1);
    for serial in 1..=3 {
        let out = node
            .ingest(&node.serial_tree(&format!("t{serial}"), serial))
            .success();
        assert!(!out.stderr.contains("gc"), "{out:#?}");
    }
    assert_eq!(node.generations(), [1, 2, 3]);
    let warning = "3 generations kept, more than twice keep = 1: no ingest collects them; run 'polstore gc' (its timer: polstore-verify.service)";
    let out = node.run(&["status"]).success();
    assert!(
        out.stdout.contains(&format!("WARNING      {warning}")),
        "{out:#?}"
    );
    assert!(
        node.status()["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line == warning)
    );
    node.run(&["gc"]).success();
    assert_eq!(node.generations(), [2, 3]);
    let out = node.run(&["status"]).success();
    assert!(!out.stdout.contains("WARNING"), "{out:#?}");
}

// ------------------------------------------------ spare trees (review of store/slot.rs)

/// What cf-agent leaves in inputs when the view is writable (`protect_view = false`, or
/// no mount privilege: `cfengine_writer` names it) is in that generation's tree. Once that
/// generation's tree is the spare, the next update is built over it: the new generation
/// must hold exactly its manifest, not what the spare had beyond its own.
#[test]
fn an_update_over_the_spare_tree_does_not_carry_what_cf_agent_left_in_it() {
    let node = Node::with_generation();
    // cf-agent validated generation 1 through a writable view while it was active.
    fs::write(
        node.generation_tree(1).join("cf_promises_validated"),
        "{\"timestamp\":1700000000}\n",
    )
    .unwrap();
    ingest_serial(&node, "t2", 2);
    // Built over generation 1's tree, the spare.
    ingest_serial(&node, "t3", 3);
    assert!(
        !node.generation_tree(1).exists(),
        "generation 1's tree was the spare"
    );
    assert_tree_matches_manifest(&node.generation_tree(3), &node.generation_manifest(3));
}

/// A rollback to a kept generation without its tree materializes it over the spare. A
/// file the spare's generation had beyond its manifest (cf-agent's, as above) must not make
/// the target "not match its manifest": the target itself was never touched.
#[test]
fn a_rollback_is_not_refused_for_what_cf_agent_left_in_another_generations_tree() {
    let node = Node::with_generation();
    ingest_serial(&node, "t2", 2);
    // cf-agent validated generation 2 through a writable view while it was active.
    fs::write(
        node.generation_tree(2).join("cf_promises_validated"),
        "{\"timestamp\":1700000000}\n",
    )
    .unwrap();
    // Built over generation 1's tree: generation 1 is kept without one, 2 is the spare.
    ingest_serial(&node, "t3", 3);
    assert!(!node.generation_tree(1).exists());
    let out = node.run(&["rollback", "1"]);
    assert_eq!(out.code, 0, "rollback to generation 1 refused: {out:#?}");
    assert_eq!(node.active_generation(), Some(1));
    assert_tree_matches_manifest(&node.generation_tree(1), &node.generation_manifest(1));
}

/// A name added to a directory changes its modification time, but `tar x`, `rsync -a` and
/// `cp -a` (or `touch -r`) put a directory's time back afterwards. A file added to the
/// active tree's `lib/` through a writable view that way is not in generation 1's
/// manifest; once that tree is the spare, the next update over it must not carry the file
/// into the new, active generation (`Reconcile::walk` does not list a directory whose
/// time is not after `settled`).
#[test]
fn an_update_over_the_spare_tree_does_not_carry_a_file_added_where_the_directory_time_was_put_back()
{
    let node = Node::with_generation();
    let lib = node.generation_tree(1).join("lib");
    fs::write(lib.join("extra.cf"), "# not signed by anyone\n").unwrap();
    // As `rsync -a` or `tar x` leave a directory they wrote into.
    tool("touch", &["-m", "-r", s(&lib.join("common.cf")), s(&lib)]);
    ingest_serial(&node, "t2", 2);
    // Built over generation 1's tree, the spare; lib/ is in the new manifest too.
    ingest_serial(&node, "t3", 3);
    assert!(
        !node.generation_tree(1).exists(),
        "generation 1's tree was the spare"
    );
    assert_eq!(node.active_generation(), Some(3));
    assert!(
        !node.generation_tree(3).join("lib/extra.cf").exists(),
        "an unsigned file the spare held is in the active generation 3"
    );
    assert_tree_matches_manifest(&node.generation_tree(3), &node.generation_manifest(3));
}

/// `verify` hashes the trees' files while redb checks the database
/// (`HashCache::warmed`): every regular file of every tree, each read whole into memory
/// (`fs::read`), on every core, whatever its size and whether a manifest names it. A big
/// file in a tree (what a writer left through a writable view) is damage to report as an
/// extra file, never something to read: `check_tree` itself hashes only files of their
/// manifest entry's size, within `[limits]`.
#[test]
fn verify_does_not_read_a_big_file_no_manifest_names_into_memory() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: no /usr/bin/time");
        return;
    }
    let node = Node::with_generation();
    // Sparse: 1 GiB that costs nothing on disk.
    let big = fs::File::create(node.generation_tree(1).join("big.log")).unwrap();
    big.set_len(1 << 30).unwrap();
    drop(big);
    let output = Command::new("/usr/bin/time")
        .args(["-f", "maxrss-kib %M", POLSTORE, "verify"])
        .env("POLSTORE_STORE", &node.store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("big.log"), "{stdout}{stderr}");
    let kib: u64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("maxrss-kib "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maximum resident size: {stderr}"));
    assert!(
        kib < 256 * 1024,
        "verify grew to {} MiB to report a file no manifest names",
        kib / 1024
    );
}

/// A directory of the spare tree replaced by a symlink (damage `verify` reports, by a
/// writer through a writable view, or anyone with root): an update over that tree must
/// never write or remove through it, outside the store.
#[test]
fn an_update_over_a_damaged_spare_tree_never_writes_through_a_symlink_in_it() {
    let node = Node::with_generation();
    ingest_serial(&node, "t2", 2);
    // Generation 1 is the spare; its `lib/` is now a symlink to a directory outside.
    let outside = node.root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("common.cf"), "# not polstore's\n").unwrap();
    let lib = node.generation_tree(1).join("lib");
    fs::remove_dir_all(&lib).unwrap();
    std::os::unix::fs::symlink(&outside, &lib).unwrap();
    let tree = node.signed_tree(
        "t3",
        &[("promises.cf", POLICY), ("lib/new.cf", "# new\n")],
        3,
    );
    let _ = node.ingest(&tree);
    let mut left: Vec<String> = fs::read_dir(&outside)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["common.cf"],
        "the update wrote or removed files outside the store"
    );
    if node.active_generation() == Some(3) {
        assert!(
            fs::symlink_metadata(node.generation_tree(3).join("lib"))
                .unwrap()
                .is_dir(),
            "generation 3's lib/ is a symlink out of the store"
        );
    }
}

/// A database lost: `verify --repair` rebuilds it from the generation directories. A kept
/// generation without its tree on disk had its content only in the database: with no
/// source holding it, it is found beyond repair and says so, never left as "good"; pinned,
/// it is kept, marked failed, and a rollback to it is refused; unpinned, the next repair
/// removes it, and the store is sound.
#[test]
fn a_lost_database_does_not_lose_the_kept_generations_without_a_tree() {
    let node = Node::with_generation();
    ingest_serial(&node, "t2", 2);
    ingest_serial(&node, "t3", 3);
    // Generation 1 (POLICY and lib/common.cf, serial 1) is kept, without its tree.
    assert_eq!(node.generations(), [1, 2, 3]);
    assert!(!node.generation_tree(1).exists());
    node.run(&["pin", "1"]).success();
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(
            "ALARM    kept generation 1, damaged beyond repair, because it is pinned; marked failed"
        ),
        "{out:#?}"
    );
    assert_eq!(node.generations(), [1, 2, 3], "{out:#?}");
    assert_eq!(node.active_generation(), Some(3));
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(3));
    let out = node.run(&["rollback", "1"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert_eq!(node.active_generation(), Some(3));
    node.run(&["unpin", "1"]).success();
    node.run(&["verify", "--repair"]).success();
    assert_eq!(node.generations(), [2, 3]);
    node.run(&["verify"]).success();
}
