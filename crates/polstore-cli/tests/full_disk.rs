//! A store on a small file system that fills up: an ingest that obviously cannot fit is
//! refused before it writes, one that runs out of space half-way fails with a clear "no
//! space" line, the active generation and the view stay as they were, and once space is
//! freed the same ingest succeeds. Needs root to mount a size-limited tmpfs.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use util::*;

/// A tmpfs mounted at a path for the life of the value.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            // mode=0755: a tmpfs is world-writable (1777) by default, and polstore refuses a
            // store others can write.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .ok()?;
        status.success().then(|| Mount(path.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `bytes` of text that does not repeat, so nothing is shared between files.
fn filler(seed: u64, bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 32);
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while text.len() < bytes {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(&format!("{state:016x}\n"));
    }
    text.truncate(bytes);
    text
}

/// A tar of `tree` (`candidate.tar` beside the node's directories): an archive is read
/// before its manifest is known, so no space check refuses it up front.
fn tar_of(node: &Node, tree: &Path) -> PathBuf {
    let archive = node.root.join("candidate.tar");
    tool("tar", &["-cf", s(&archive), "-C", s(tree), "."]);
    archive
}

/// Fills the store's file system with a ballast file, `STORE/ballast`, until `left` bytes
/// are free; returns its path.
fn fill_store_leaving(node: &Node, left: u64) -> PathBuf {
    let output = tool("df", &["--output=avail", "-B1", s(&node.store)]);
    let free_now: u64 = output.lines().nth(1).unwrap().trim().parse().unwrap();
    let ballast = node.store.join("ballast");
    fs::write(&ballast, vec![b'x'; (free_now - left) as usize]).unwrap();
    ballast
}

/// A signed node whose store is a tmpfs of `size`, generation 1 (`promises.cf`) active;
/// `None`, said on standard error, when not root (mounting needs it).
fn signed_store_on_tmpfs(size: &str) -> Option<(Node, Mount)> {
    if !running_as_root() {
        eprintln!("skipping: mounting a size-limited tmpfs for the store needs root");
        return None;
    }
    let node = Node::new();
    let Some(mount) = Mount::tmpfs(&node.store, size) else {
        panic!("running as root, but mount -t tmpfs failed");
    };
    node.init_signed();
    let first = node.signed_tree("first", &[("promises.cf", POLICY)], 1);
    node.ingest(&first).success();
    Some((node, mount))
}

#[test]
fn a_full_disk_refuses_cleanly_and_the_next_ingest_succeeds() {
    let Some((node, _mount)) = signed_store_on_tmpfs("4m") else {
        return;
    };

    // Obviously too large: refused before anything is written.
    let huge = node.signed_tree(
        "huge",
        &[
            ("promises.cf", POLICY),
            ("data/big.txt", &filler(1, 3 << 20)),
        ],
        2,
    );
    let out = assert_refused(
        &node,
        &["ingest", s(&huge)],
        1,
        "not enough space for this candidate",
    );
    assert!(out.stderr.contains("MiB are free"), "{out:#?}");
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());

    // Not obvious (an archive is read before its manifest is known), but it does not fit
    // beside what now fills the disk: it fails at the write that finds no space.
    let tree = node.signed_tree(
        "archive",
        &[
            ("promises.cf", POLICY),
            ("data/a.txt", &filler(2, 900 << 10)),
        ],
        2,
    );
    let archive = tar_of(&node, &tree);
    let ballast = fill_store_leaving(&node, 1200 << 10);
    let before = node.snapshot();
    let out = node.ingest(&archive);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(
        out.stderr
            .to_lowercase()
            .contains("no space left on device"),
        "{out:#?}"
    );
    // Said once, not "no space left on device: No space left on device (os error 28)".
    assert_eq!(
        out.stderr
            .to_lowercase()
            .matches("no space left on device")
            .count(),
        1,
        "{out:#?}"
    );
    assert!(
        out.stderr.ends_with("; generation 1 stays active\n"),
        "{out:#?}"
    );
    assert_eq!(
        node.snapshot(),
        before,
        "the failed ingest changed the active generation"
    );
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());

    // Space back: the same ingest succeeds, and the store is sound.
    fs::remove_file(&ballast).unwrap();
    let out = node.ingest(&archive).success();
    assert!(out.stdout.starts_with("generation 2 active"), "{out:#?}");
    node.run(&["verify"]).success();
}

/// The disk fills while a candidate built over the spare tree (generation 1's) writes a new
/// file at a path the spare's generation does not have: the refused candidate is undone
/// and the spare tree put back. It must be put back as generation 1's manifest says (not
/// with the half-written file), and once space is back the same ingest must succeed.
#[test]
fn a_full_disk_during_an_update_over_the_spare_tree_leaves_it_as_its_manifest_says() {
    let Some((node, _mount)) = signed_store_on_tmpfs("6m") else {
        return;
    };
    let second = node.signed_tree(
        "second",
        &[("promises.cf", POLICY), ("second.txt", "# second\n")],
        2,
    );
    node.ingest(&second).success();
    // Generation 1's tree is the spare. An archive (no space check up front) with a new
    // top-level file that cannot fit beside the ballast.
    let tree = node.signed_tree(
        "archive",
        &[("promises.cf", POLICY), ("big.txt", &filler(3, 900 << 10))],
        3,
    );
    let archive = tar_of(&node, &tree);
    let ballast = fill_store_leaving(&node, 300 << 10);
    let out = node.ingest(&archive);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.to_lowercase().contains("no space left"),
        "{out:#?}"
    );
    if node.generation_tree(1).exists() {
        // Put back: exactly generation 1's files, no half-written big.txt.
        let listed: Vec<String> = fs::read_dir(node.generation_tree(1))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            listed,
            ["promises.cf"],
            "generation 1's tree after the undo"
        );
    }
    // Space back: the same ingest succeeds, and the store is sound.
    fs::remove_file(&ballast).unwrap();
    assert_eq!(node.active_generation(), Some(2));
    let out = node.ingest(&archive);
    assert_eq!(out.code, 0, "{out:#?}");
    node.run(&["verify"]).success();
}
