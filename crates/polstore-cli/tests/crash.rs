//! Crash safety: an ingest killed with SIGKILL at a random moment leaves the old or the new generation active, whole, and the store usable.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use util::{Node, POLICY, s, tree_content};

const FILES: usize = 200;
const ITERATIONS: u64 = 200;

/// The files of version `version` of the policy: a quarter of them change from one
/// version to the next, the rest stay (and are linked from the active generation).
fn files(version: u64) -> Vec<(String, String)> {
    let mut files = vec![("promises.cf".to_string(), POLICY.to_string())];
    for index in 0..FILES {
        let content = if index % 4 == 0 {
            format!(
                "# file {index}, version {version}\n{}\n",
                "x".repeat(index * 7)
            )
        } else {
            format!("# file {index}\n{}\n", "y".repeat(index * 5))
        };
        files.push((format!("dir{:02}/file{index:03}.cf", index % 20), content));
    }
    files
}

/// Turns the tree at `<drop>/tree` into version `serial` (writing only what changed) and
/// signs it.
fn candidate(node: &Node, serial: u64) -> PathBuf {
    let tree = node.drop.join("tree");
    let files: Vec<(String, String)> = files(serial)
        .into_iter()
        .filter(|(path, content)| {
            fs::read(tree.join(path)).ok() != Some(content.clone().into_bytes())
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, content)| (path.as_str(), content.as_str()))
        .collect();
    util::write_tree(&tree, &borrowed);
    node.sign_tree(&tree, serial);
    tree
}

/// The policy files of version `serial`, as the view must show them.
fn expected_view(serial: u64) -> BTreeMap<String, (u32, Vec<u8>)> {
    files(serial)
        .into_iter()
        .map(|(path, content)| (path, (0o644, content.into_bytes())))
        .collect()
}

/// splitmix64: a deterministic delay for each iteration.
fn pseudo_random(seed: u64) -> u64 {
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Checks the store after whatever happened: exactly one active generation, one of
/// `allowed` (generation, serial); the view on it; its tree exactly as its manifest says;
/// staging empty; no generation directory the store does not list. Returns the active
/// generation.
fn assert_consistent(node: &Node, allowed: &[(u64, u64)]) -> u64 {
    // The next writer's open recovers (readers never do); `gc` is the lightest writer.
    node.run(&["gc"]).success();
    let status = node.status();
    let active = status["active"]["generation"]
        .as_u64()
        .expect("a generation is active");
    let serial = status["active"]["serial"].as_u64().unwrap();
    assert!(
        allowed.contains(&(active, serial)),
        "active generation {active} (serial {serial}) is none of {allowed:?}"
    );
    let list = node.list();
    let active_entries: Vec<u64> = list
        .iter()
        .filter(|entry| entry["active"] == true)
        .map(|entry| entry["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(active_entries, [active]);
    assert_eq!(node.viewed_generation().unwrap(), active);

    let manifest = node.generation_manifest(active);
    assert_eq!(util::parse_manifest(&manifest).0, serial);
    util::assert_tree_matches_manifest(&node.generation_tree(active), &manifest);

    assert_eq!(node.staging_leftovers(), Vec::<String>::new());
    let listed: BTreeSet<String> = list
        .iter()
        .map(|entry| entry["generation"].to_string())
        .collect();
    let on_disk: BTreeSet<String> = fs::read_dir(node.store.join("generations"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(on_disk, listed);
    active
}

#[test]
fn ingest_killed_at_random_moments() {
    let node = Node::signed();
    node.ingest(&candidate(&node, 1)).success();

    // How long an uninterrupted update takes: the range the kills are spread over.
    let update = candidate(&node, 2);
    let started = Instant::now();
    node.ingest(&update).success();
    let mut measured = vec![started.elapsed()];
    let mut duration = measured[0];
    let mut generation = assert_consistent(&node, &[(2, 2)]);
    let mut serial = 2;

    let mut killed_before_commit = 0;
    let mut finished_or_committed = 0;
    for iteration in 0..ITERATIONS {
        let new_serial = serial + 1;
        let tree = candidate(&node, new_serial);
        // Uniform over the whole ingest on even iterations; on odd ones over its last
        // quarter, where the rename, the commit and the view switch happen.
        let fraction = (pseudo_random(iteration) % 1000) as f64 / 1000.0;
        let fraction = if iteration % 2 == 0 {
            fraction
        } else {
            0.75 + fraction / 4.0
        };
        let delay = duration.mul_f64(fraction);
        let mut child = node
            .command(&["ingest", s(&tree)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let exit = child.wait().unwrap();
        assert!(
            exit.success() || exit.signal() == Some(9),
            "the ingest failed on its own: {exit:?}"
        );
        // Even before any recovery, the agent finds a whole generation at the view.
        let shown = node
            .viewed_generation()
            .expect("the view shows a generation");
        assert!(
            shown == generation || shown == generation + 1,
            "the view shows generation {shown}"
        );
        assert!(node.view.join("promises.cf").is_file());

        let allowed = [(generation, serial), (generation + 1, new_serial)];
        let active = if exit.success() {
            // It finished before the kill.
            assert_consistent(&node, &allowed[1..])
        } else {
            assert_consistent(&node, &allowed)
        };
        if active == generation {
            killed_before_commit += 1;
        } else {
            finished_or_committed += 1;
            assert_eq!(tree_content(&node.view), expected_view(new_serial));
        }

        // The store takes the next update.
        let retry_serial = new_serial + 1;
        let retry = candidate(&node, retry_serial);
        let started = Instant::now();
        node.ingest(&retry).success();
        // Every uninterrupted update is measured: the range is their mean duration.
        measured.push(started.elapsed());
        duration = measured.iter().sum::<Duration>() / measured.len() as u32;
        generation = assert_consistent(&node, &[(active + 1, retry_serial)]);
        serial = retry_serial;
        assert_eq!(tree_content(&node.view), expected_view(retry_serial));
        // Now and then, the whole store: every object and generation directory.
        if iteration % 25 == 24 {
            let out = node.run(&["verify"]);
            assert_eq!(out.code, 0, "verify after iteration {iteration}: {out:#?}");
        }
    }
    eprintln!(
        "an update took {duration:?} on average; {killed_before_commit} kills left the old generation, \
         {finished_or_committed} the new one"
    );
    // The delays spread over the whole ingest: some kills came before its commit.
    assert!(killed_before_commit > 0);
}
