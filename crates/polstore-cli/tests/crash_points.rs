//! Crash at every step: each operation runs once per named crash point (built with the
//! `crash-points` feature, `POLSTORE_CRASH_AT` makes the process abort right there), then
//! polstore runs again and the invariants must hold: exactly one active generation, the
//! old or the new one; the view points at it and matches its manifest; staging is empty;
//! the operation, retried, succeeds; `verify` passes.
//!
//! Each point is a test of its own, named after it, so that each failure is reported
//! alone. They run in parallel: each has its own node in its own temp directory, and
//! `POLSTORE_CRASH_AT` is set only in the environment of the process that crashes.
//!
//! Run with `cargo test --features crash-points --test crash_points` (tools/test does).
#![cfg(feature = "crash-points")]

mod util;

use std::fs;
use std::os::unix::process::ExitStatusExt;

use polstore::crashpoint::POINTS;
use util::*;

/// Runs `polstore ARGS` with the crash point `point` armed; asserts that it aborted there.
fn crash(node: &Node, point: &str, args: &[&str]) {
    let output = node
        .command(args)
        .env("POLSTORE_CRASH_AT", point)
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(6),
        "polstore {args:?} did not abort at {point}: {output:?}"
    );
}

/// The invariants after a crash: recovery runs (the next writer's open does it; `gc` is
/// the lightest writer, and readers never recover), one of `allowed` is active, the view
/// points at it and matches its manifest, and staging is empty. Returns the active
/// generation.
fn recovered(node: &Node, allowed: &[u64]) -> u64 {
    node.run(&["gc"]).success();
    let status = node.status();
    let active = status["active"]["generation"]
        .as_u64()
        .unwrap_or_else(|| panic!("nothing active after recovery: {status:#}"));
    assert!(
        allowed.contains(&active),
        "generation {active} active, expected one of {allowed:?}"
    );
    assert_eq!(node.viewed_generation(), Some(active));
    assert_tree_matches_manifest(&node.view, &node.generation_manifest(active));
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());
    active
}

fn sound(node: &Node) {
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 0, "verify after recovery: {out:#?}");
}

fn tree(node: &Node, name: &str, serial: u64) -> std::path::PathBuf {
    node.signed_tree(
        name,
        &[
            ("promises.cf", POLICY),
            ("lib/common.cf", "# common\n"),
            ("lib/n.cf", &format!("# {serial}\n")),
        ],
        serial,
    )
}

/// Ingest of serial 2 over generation 1; `agent` is the agent command.
fn ingest_case(point: &str, agent: &str) {
    let node = Node::with_generation();
    node.set_config("agent", "command", agent);
    let candidate = tree(&node, "candidate", 2);
    crash(&node, point, &["ingest", s(&candidate)]);
    let active = recovered(&node, &[1, 2]);
    node.set_config("agent", "command", "[]");
    // Retried: the same candidate if it did not take, else the next serial.
    let retry = if active == 1 && node.status()["serial_max"] == 1 {
        candidate
    } else {
        tree(&node, "next", 3)
    };
    node.ingest(&retry).success();
    sound(&node);
}

fn rollback_case(point: &str) {
    let node = Node::with_generation();
    node.ingest(&tree(&node, "second", 2)).success();
    crash(&node, point, &["rollback", "1"]);
    if recovered(&node, &[1, 2]) == 2 {
        node.run(&["rollback", "1"]).success();
    }
    recovered(&node, &[1]);
    sound(&node);
}

fn adopt_case(point: &str) {
    let node = Node::new();
    write_tree(
        &node.view,
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
    );
    let args = ["init", "--view", s(&node.view), "--adopt"];
    crash(&node, point, &args);
    if point == "adopt-staged" {
        // Nothing was committed: the view is still the directory, and init starts over.
        assert!(fs::symlink_metadata(&node.view).unwrap().is_dir());
        node.run(&args).success();
    }
    node.configure_for_tests();
    recovered(&node, &[1]);
    let temporary = node.view.with_file_name(".inputs.polstore-new");
    assert!(
        !temporary.exists(),
        "the adopted directory was left at {temporary:?}"
    );
    assert!(!node.store.join("adopting").exists());
    // The store adopted unsigned policy and trusts no key: the next one is unsigned too.
    node.ingest(&node.tree("after", &[("promises.cf", POLICY)]))
        .success();
    sound(&node);
}

/// A Rudder node's `init --adopt` of its two views, `inputs` and `ncf`, crashed at
/// `point`. Right after the crash, each path shows what it held before (its old directory,
/// or the view to generation 1's identical copy); the next writer's recovery finishes the
/// adoption for both views: both are the fixed symlinks, show generation 1, hold exactly
/// what the directories held, and nothing is left beside them.
fn adopt_views_case(point: &str) {
    let node = Node::new();
    let ncf = node.root.join("node").join("ncf");
    write_tree(
        &node.view,
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
    );
    write_tree(
        &ncf,
        &[("common/ncf.cf", "# ncf\n"), ("local/a.cf", "# a\n")],
    );
    set_mode(&ncf.join("local/a.cf"), 0o600);
    let before = [tree_content(&node.view), tree_content(&ncf)];
    let args = [
        "init".to_string(),
        "--view".to_string(),
        format!("inputs={}", s(&node.view)),
        "--view".to_string(),
        format!("ncf={}", s(&ncf)),
        "--adopt".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crash(&node, point, &args);
    let is_symlink =
        |path: &std::path::Path| fs::symlink_metadata(path).unwrap().file_type().is_symlink();
    match point {
        // Nothing committed: both are still the directories, and init starts over.
        "adopt-staged" => {
            assert!(!is_symlink(&node.view) && !is_symlink(&ncf));
            node.run(&args).success();
        }
        // Between the exchanges: inputs is the view, ncf still its directory.
        "adopt-view-exchanged" => {
            assert!(is_symlink(&node.view) && !is_symlink(&ncf));
        }
        // Both exchanged, the old directories (or one of them) still beside the views.
        "adopt-exchanged" | "adopt-directory-removed" => {
            assert!(is_symlink(&node.view) && is_symlink(&ncf));
            assert!(node.store.join("adopting").exists());
        }
        _ => {}
    }
    // At every instant each path shows the same bytes.
    assert_eq!([tree_content(&node.view), tree_content(&ncf)], before);
    node.configure_for_tests();
    node.set_config("checks", "entry_points", r#"["inputs/promises.cf"]"#);
    node.run(&["gc"]).success();
    for (path, name) in [(&node.view, "inputs"), (&ncf, "ncf")] {
        assert_eq!(
            viewed_generation(&node.store, path, Some(name)),
            Some(1),
            "{path:?}"
        );
    }
    assert_eq!([tree_content(&node.view), tree_content(&ncf)], before);
    let mut beside: Vec<String> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["inputs", "ncf"]);
    assert!(!node.store.join("adopting").exists());
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());
    let after = node.tree(
        "after",
        &[
            ("inputs/promises.cf", POLICY),
            ("ncf/common/ncf.cf", "# 2\n"),
        ],
    );
    node.ingest(&after).success();
    assert_eq!(
        fs::read_to_string(ncf.join("common/ncf.cf")).unwrap(),
        "# 2\n"
    );
    sound(&node);
}

/// The adoption points every adoption reaches, with two views: recovery finishes both.
#[test]
fn an_adoption_into_two_views_recovers_at_every_adoption_point() {
    for point in ["adopt-staged", "adopt-committed", "adopt-exchanged"] {
        adopt_views_case(point);
    }
}

/// Generation 2 active over 1, the database lost, a file only generation 2 has damaged:
/// repair rebuilds the database, restores the object from the drop place, rebuilds the
/// tree.
fn repair_case(point: &str) {
    let node = Node::with_generation();
    let second = tree(&node, "second", 2);
    node.ingest(&second).success();
    node.set_config("fetch", "drop", &toml_string(s(&second)));
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    fs::write(node.generation_tree(2).join("lib/n.cf"), "# 9\n").unwrap();
    crash(&node, point, &["verify", "--repair"]);
    node.run(&["verify", "--repair"]).success();
    recovered(&node, &[2]);
    sound(&node);
}

/// Generation 2 no longer parses: repair activates generation 1.
fn fallback_case(point: &str) {
    let node = Node::with_generation();
    node.ingest(&tree(&node, "second", 2)).success();
    node.set_config(
        "checks",
        "cf_promises",
        r#"["/bin/sh", "-c", "test \"$POLSTORE_GENERATION\" != 2"]"#,
    );
    crash(&node, point, &["verify", "--repair"]);
    recovered(&node, &[1, 2]);
    node.run(&["verify", "--repair"]).success();
    assert_eq!(recovered(&node, &[1]), 1);
    sound(&node);
}

fn view_case(point: &str) {
    let node = Node::with_generation();
    fs::remove_file(&node.view).unwrap();
    write_tree(&node.view, &[("promises.cf", "# a copy\n")]);
    crash(&node, point, &["verify", "--repair"]);
    node.run(&["verify", "--repair"]).success();
    recovered(&node, &[1]);
    sound(&node);
}

/// A store an older polstore left (its view at `readonly/generations/1/tree`, no
/// `STORE/active`), crashed in the first writer's recovery just after `active` was made:
/// the view still shows generation 1 the old way; the next writer points it through
/// `active`. Then an ingest crashed at the same point (its switch) ends as any other.
fn upgrade_case(point: &str) {
    let node = Node::with_generation();
    fs::remove_file(node.store.join("active")).unwrap();
    fs::remove_file(&node.view).unwrap();
    std::os::unix::fs::symlink(node.view_path(1), &node.view).unwrap();
    crash(&node, point, &["gc"]);
    assert_eq!(node.active_link_generation(), Some(1));
    assert_eq!(fs::read_link(&node.view).unwrap(), node.view_path(1));
    recovered(&node, &[1]);
    assert_eq!(fs::read_link(&node.view).unwrap(), node.view_fixed_target());
    let candidate = tree(&node, "candidate", 2);
    crash(&node, point, &["ingest", s(&candidate)]);
    assert_eq!(recovered(&node, &[2]), 2);
    sound(&node);
}

fn gc_case(point: &str) {
    let node = Node::with_generation();
    node.ingest(&tree(&node, "second", 2)).success();
    node.ingest(&tree(&node, "third", 3)).success();
    crash(&node, point, &["gc", "--keep", "1"]);
    recovered(&node, &[3]);
    node.run(&["gc", "--keep", "1"]).success();
    assert_eq!(node.generations(), [2, 3]);
    sound(&node);
}

/// An update over a store whose generation 1 has the spare tree (2 is active), crashed with
/// that tree taken into staging: recovery empties staging, generation 1 is kept without a
/// tree, and a rollback to it materializes it from the store. The rollback crashed at the
/// same point (taking generation 2's tree as its spare) ends the same way.
fn spare_case(point: &str) {
    let node = Node::with_generation();
    node.ingest(&tree(&node, "second", 2)).success();
    let candidate = tree(&node, "third", 3);
    crash(&node, point, &["ingest", s(&candidate)]);
    assert_eq!(recovered(&node, &[2]), 2);
    assert!(!node.generation_tree(1).exists());
    assert_eq!(node.generations(), [1, 2]);
    sound(&node);
    node.ingest(&candidate).success();
    crash(&node, point, &["rollback", "1"]);
    assert_eq!(recovered(&node, &[3]), 3);
    node.run(&["rollback", "1"]).success();
    recovered(&node, &[1]);
    sound(&node);
}

/// gc taking away the tree of a kept generation that needs none (here one an older
/// polstore left, as it kept every generation's tree), crashed after moving it into
/// staging: recovery empties staging; the generation is kept, and a rollback to it
/// materializes its tree again.
fn release_case(point: &str) {
    let node = Node::with_generation();
    node.ingest(&tree(&node, "second", 2)).success();
    let saved = node.root.join("saved-tree-1");
    tool("cp", &["-a", s(&node.generation_tree(1)), s(&saved)]);
    node.ingest(&tree(&node, "third", 3)).success();
    tool("cp", &["-a", s(&saved), s(&node.generation_tree(1))]);
    crash(&node, point, &["gc", "--keep", "3"]);
    recovered(&node, &[3]);
    assert!(!node.generation_tree(1).exists());
    assert_eq!(node.generations(), [1, 2, 3]);
    sound(&node);
    node.run(&["rollback", "1"]).success();
    recovered(&node, &[1]);
    sound(&node);
}

/// A publish of serial 20 over serial 10, keeping 1, crashed: `current` and `head` still
/// name complete publications, `head` never ahead of `current`, and what `head` names is
/// a drop tree the node ingests; the next publish removes what the crash left.
fn publish_case(point: &str) {
    let node = Node::signed();
    let src = node.root.join("masterfiles");
    let out = node.root.join("published");
    write_tree(&src, &[("promises.cf", POLICY), ("lib/n.cf", "# 10\n")]);
    let publish = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["publish", s(&src), "--out", s(&out), "--key"];
        args.push(s(&node.secret_key));
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect()
    };
    node.run(&publish(&["--serial", "10"])).success();
    write_tree(&src, &[("lib/n.cf", "# 20\n")]);
    let args = publish(&["--serial", "20", "--keep", "1"]);
    crash(
        &node,
        point,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let head: u64 = fs::read_to_string(out.join("head"))
        .unwrap()
        .trim_end()
        .parse()
        .unwrap();
    let current = fs::read_link(out.join("current")).unwrap();
    let current: u64 = current
        .strip_prefix("versions")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        [10, 20].contains(&head) && [10, 20].contains(&current) && head <= current,
        "head {head}, current {current}"
    );
    let versions = out.join("versions");
    node.ingest(&versions.join(head.to_string())).success();
    // Published again, forced (the content may be the current one's): all is put right.
    node.run(&publish(&["--keep", "1", "--force"])).success();
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["current", "head", "lock", "versions"]);
    let kept: Vec<String> = fs::read_dir(&versions)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        fs::read_to_string(out.join("head")).unwrap(),
        format!("{}\n", kept[0])
    );
    assert_eq!(
        fs::read_link(out.join("current")).unwrap(),
        std::path::Path::new("versions").join(&kept[0])
    );
    node.ingest(&versions.join(&kept[0])).success();
}

/// The repository's head names a manifest it holds whole, and every object of it.
fn assert_repository_complete(repo: &std::path::Path) {
    use polstore::format::{head::Head, manifest::Manifest, repo as paths, signatures};
    let file = fs::read(repo.join("heads/default")).unwrap();
    let (_, text) = signatures::split_signed(&file).unwrap();
    let head = Head::parse(text).unwrap();
    let compressed = fs::read(repo.join(paths::manifest_path(head.manifest))).unwrap();
    let signed = paths::decompress(&compressed, 1 << 26).unwrap();
    let (_, bytes) = signatures::split_signed(&signed).unwrap();
    assert_eq!(polstore::format::manifest::Hash::of(bytes), head.manifest);
    let limits = polstore::config::LimitsConfig::default().manifest_limits();
    for entry in Manifest::parse(bytes, limits).unwrap().entries {
        assert!(
            repo.join(paths::object_path(entry.hash)).is_file(),
            "{} has no object",
            entry.path
        );
    }
}

/// `publish --repo` of a changed tree: the head names the old manifest or the new one,
/// each complete; the next publish succeeds, and a node pulls what it names.
fn repo_case(point: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let hub = util::repo::Hub::new(tmp.path());
    hub.publish();
    fs::write(hub.src.join("lib-03.cf"), "# changed\n").unwrap();
    let args = hub.publish_args(&[0, 1], &hub.head, &[]);
    let output = polstore_command(&hub.dir, &args)
        .env("POLSTORE_CRASH_AT", point)
        .output()
        .unwrap();
    assert_eq!(output.status.signal(), Some(6), "{output:?}");
    assert_repository_complete(&hub.repo);
    hub.publish();
    assert_repository_complete(&hub.repo);
    assert!(!hub.repo.join(".incoming").exists());
    let web = util::repo::Web::start(&tmp.path().join("web"), &hub.repo, false);
    let node = util::repo::pulling_node(&hub.root, &web.url(), "");
    assert_eq!(util::repo::update(&node)["generation"], 1);
    sound(&node);
}

/// A pull that follows a root rotation, crashed once the new root is recorded: the node
/// still has generation 1, and the next update activates what the new root vouches for.
fn pull_root_case(point: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let hub = util::repo::Hub::new(tmp.path());
    let web = util::repo::Web::start(&tmp.path().join("web"), &hub.repo, false);
    hub.publish();
    let node = util::repo::pulling_node(&hub.root, &web.url(), "");
    assert_eq!(util::repo::update(&node)["generation"], 1);
    let root2 = tmp.path().join("root-2");
    hub.create_root(&root2, 2, &[0, 1, 2], &hub.head);
    hub.sign_root(&root2, &[0, 1]);
    hub.polstore(&["root", "publish", s(&root2), "--repo", s(&hub.repo)])
        .success();
    fs::write(hub.src.join("lib-03.cf"), "# changed\n").unwrap();
    hub.publish();
    crash(&node, point, &["update"]);
    recovered(&node, &[1]);
    assert_eq!(util::repo::update(&node)["generation"], 2);
    let recorded = fs::read_to_string(node.store.join("trusted-root")).unwrap();
    assert!(recorded.contains("\nversion 2\n"), "{recorded}");
    sound(&node);
}

/// One test a crash point, named after it (`-` becomes `_`), so that each failure shows on
/// its own: `POINT => CASE(ARGS);` runs `CASE(POINT, ARGS)`. Also defines
/// `tested_points`, every point listed, for [`every_crash_point_has_a_test`].
macro_rules! crash_point_tests {
    ($($point:ident => $case:ident($($arg:expr),*);)*) => {
        mod every_crash_point_leaves_the_old_or_the_new_generation {
            use super::*;
            $(
                #[test]
                fn $point() {
                    $case(&point_name(stringify!($point)) $(, $arg)*);
                }
            )*
        }

        /// The crash points the tests cover, in the order they are listed.
        fn tested_points() -> Vec<String> {
            vec![$(point_name(stringify!($point))),*]
        }
    };
}

/// The crash point a test is named after.
fn point_name(test_name: &str) -> String {
    test_name.replace('_', "-")
}

crash_point_tests! {
    spare_taken => spare_case();
    ingest_staged => ingest_case("[]");
    ingest_checked => ingest_case("[]");
    commit_tree_synced => ingest_case("[]");
    commit_envelope_written => ingest_case("[]");
    commit_objects_stored => ingest_case("[]");
    commit_renamed => ingest_case("[]");
    commit_floor_raised => ingest_case("[]");
    commit_committed => ingest_case("[]");
    view_temporary_created => ingest_case("[]");
    active_switched => upgrade_case();
    commit_view_switched => ingest_case("[]");
    confirm_agent_ran => ingest_case(r#"["/bin/true"]"#);
    fail_marker_written => ingest_case(r#"["/bin/false"]"#);
    fail_committed => ingest_case(r#"["/bin/false"]"#);
    rollback_committed => rollback_case();
    adopt_staged => adopt_case();
    adopt_committed => adopt_case();
    adopt_view_exchanged => adopt_views_case();
    adopt_exchanged => adopt_case();
    adopt_directory_removed => adopt_views_case();
    repair_objects_restored => repair_case();
    repair_tree_built => repair_case();
    repair_envelope_replaced => repair_case();
    repair_exchanged => repair_case();
    repair_fallback_committed => fallback_case();
    repair_view_exchanged => view_case();
    rebuild_written => repair_case();
    rebuild_linked => repair_case();
    gc_intent_written => gc_case();
    gc_committed => gc_case();
    gc_removed => gc_case();
    tree_released => release_case();
    publish_staged => publish_case();
    publish_renamed => publish_case();
    publish_current_switched => publish_case();
    publish_head_written => publish_case();
    repo_objects_written => repo_case();
    repo_head_written => repo_case();
    pull_root_recorded => pull_root_case();
    readonly_prepared => mount_case();
}

/// `polstore mount` stopped with the read-only clone of the store made but not attached:
/// nothing is mounted (the detached clone went with the process). Status says so; the next
/// writer mounts read-only. Mounting needs root.
fn mount_case(point: &str) {
    if !running_as_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    crash(&node, point, &["mount"]);
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "missing", "{status:#}");
    assert!(
        status["view_protection"]["detail"]
            .as_str()
            .unwrap()
            .contains("is not mounted"),
        "{status:#}"
    );
    recovered(&node, &[1]);
    assert_eq!(node.status()["view_protection"]["state"], "read-only");
    let error = fs::write(node.view.join("promises.cf"), "# through the view\n").unwrap_err();
    assert_eq!(error.raw_os_error(), Some(30), "{error}"); // EROFS
    sound(&node);
}

/// A crash point added to the library without a test here fails this one.
#[test]
fn every_crash_point_has_a_test() {
    let tested = tested_points();
    let untested: Vec<&str> = POINTS
        .iter()
        .copied()
        .filter(|point| !tested.iter().any(|name| name == point))
        .collect();
    assert_eq!(
        tested, POINTS,
        "crash points without a test: {untested:?} (or listed out of order)"
    );
}

/// An adoption stopped after its commit, and the adopted directory changed before the
/// next writer finished it: the changed directory is kept beside the view, not removed.
#[test]
fn finishing_an_adoption_keeps_a_directory_changed_since_the_commit() {
    let node = Node::new();
    write_tree(&node.view, &[("promises.cf", POLICY)]);
    let args = ["init", "--view", s(&node.view), "--adopt"];
    crash(&node, "adopt-committed", &args);
    // The view is still the adopted directory; someone adds to it.
    fs::write(node.view.join("new-since.cf"), "# added after the commit\n").unwrap();
    node.configure_for_tests();
    node.run(&["gc"]).success();
    assert_eq!(node.viewed_generation(), Some(1));
    let kept: Vec<_> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".inputs.polstore-adopted-changed-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        fs::read_to_string(kept[0].join("new-since.cf")).unwrap(),
        "# added after the commit\n"
    );
    assert!(!node.store.join("adopting").exists());
}

/// An adoption into two views stopped between its exchanges, and the directory not yet
/// exchanged changed before the next writer finished it: that one is kept beside its view,
/// the other, which still holds exactly what was adopted from it, is removed.
#[test]
fn finishing_an_adoption_into_two_views_keeps_only_the_directory_changed_since() {
    let node = Node::new();
    let ncf = node.root.join("node").join("ncf");
    write_tree(&node.view, &[("promises.cf", POLICY)]);
    write_tree(&ncf, &[("common/ncf.cf", "# ncf\n")]);
    let args = [
        "init".to_string(),
        "--view".to_string(),
        format!("inputs={}", s(&node.view)),
        "--view".to_string(),
        format!("ncf={}", s(&ncf)),
        "--adopt".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crash(&node, "adopt-view-exchanged", &args);
    fs::write(
        ncf.join("common/new-since.cf"),
        "# added after the commit\n",
    )
    .unwrap();
    node.configure_for_tests();
    node.set_config("checks", "entry_points", r#"["inputs/promises.cf"]"#);
    node.run(&["gc"]).success();
    assert_eq!(viewed_generation(&node.store, &ncf, Some("ncf")), Some(1));
    assert!(!ncf.join("common/new-since.cf").exists());
    let beside: Vec<String> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    assert!(
        beside[0].starts_with(".ncf.polstore-adopted-changed-"),
        "{beside:?}"
    );
    let kept = node.view.with_file_name(&beside[0]);
    assert_eq!(
        fs::read_to_string(kept.join("common/new-since.cf")).unwrap(),
        "# added after the commit\n"
    );
    assert!(!node.store.join("adopting").exists());
    sound(&node);
}
