//! Several views, one switch: a store with `[views]` (Rudder's `inputs` and `ncf`) shows
//! each view's directory of the active generation, and all of them change with the one
//! rename of `STORE/active` (store-format.md § Views).

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use util::*;

/// Why these tests skip when not run as root.
const NEEDS_ROOT: &str = "the checks of a store with several views need root (a mount namespace)";

const NCF: &str = "bundle agent ncf_example\n{\n}\n";

/// A signed node whose store has the views `inputs` (the node's `view`) and `ncf`, with
/// the parse check on `inputs/promises.cf`.
fn two_view_node() -> (Node, PathBuf) {
    let node = Node::new();
    let ncf = node.root.join("node").join("ncf");
    node.run(&[
        "init",
        "--view",
        &format!("inputs={}", s(&node.view)),
        "--view",
        &format!("ncf={}", s(&ncf)),
        "--trust",
        s(&node.public_key),
    ])
    .success();
    node.configure_for_tests();
    node.set_config("checks", "entry_points", r#"["inputs/promises.cf"]"#);
    (node, ncf)
}

/// A signed tree with both views' directories: `inputs/promises.cf` and `ncf/NAME.cf`
/// holding `# LABEL`.
fn two_view_tree(node: &Node, label: &str, serial: u64) -> PathBuf {
    let ncf = format!("{NCF}# {label}\n");
    node.signed_tree(
        label,
        &[
            ("inputs/promises.cf", POLICY),
            ("inputs/lib/common.cf", &format!("# {label}\n")),
            ("ncf/common/ncf.cf", &ncf),
        ],
        serial,
    )
}

fn viewed(node: &Node, ncf: &Path) -> (Option<u64>, Option<u64>) {
    (
        viewed_generation(&node.store, &node.view, Some("inputs")),
        viewed_generation(&node.store, ncf, Some("ncf")),
    )
}

#[test]
fn both_views_switch_together_and_roll_back_together() {
    let (node, ncf) = two_view_node();
    let config = fs::read_to_string(node.config_path()).unwrap();
    assert!(
        config.contains(&format!(
            "[views]\ninputs = \"{}\"\nncf = \"{}\"\n",
            s(&node.view),
            s(&ncf)
        )),
        "{config}"
    );
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
    let inputs_target = fs::read_link(&node.view).unwrap();
    let ncf_target = fs::read_link(&ncf).unwrap();
    assert_eq!(inputs_target, node.store.join("readonly/active/inputs"));
    assert_eq!(ncf_target, node.store.join("readonly/active/ncf"));
    assert_eq!(
        fs::read_to_string(node.view.join("lib/common.cf")).unwrap(),
        "# first\n"
    );

    node.ingest(&two_view_tree(&node, "second", 2)).success();
    assert_eq!(viewed(&node, &ncf), (Some(2), Some(2)));
    assert_eq!(
        fs::read_to_string(node.view.join("lib/common.cf")).unwrap(),
        "# second\n"
    );
    assert_eq!(
        fs::read_to_string(ncf.join("common/ncf.cf")).unwrap(),
        format!("{NCF}# second\n")
    );
    // The views never changed: only STORE/active did.
    assert_eq!(fs::read_link(&node.view).unwrap(), inputs_target);
    assert_eq!(fs::read_link(&ncf).unwrap(), ncf_target);
    assert_eq!(
        fs::read_link(node.store.join("active")).unwrap(),
        PathBuf::from("generations/2/tree")
    );

    let status = node.status();
    assert_eq!(status["active_link"], "generations/2/tree");
    assert_eq!(status["views"][0]["name"], "inputs");
    assert_eq!(status["views"][0]["path"], s(&node.view));
    assert_eq!(status["views"][1]["name"], "ncf");
    assert_eq!(status["views"][1]["target"], s(&ncf_target));
    let text = node.run(&["status"]).success().stdout;
    assert!(
        text.contains(&format!(
            "view         ncf {} -> {}\n",
            s(&ncf),
            s(&ncf_target)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "switch       {} -> generations/2/tree\n",
            s(&node.store.join("active"))
        )),
        "{text}"
    );

    node.run(&["rollback"]).success();
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
    assert_eq!(
        fs::read_to_string(ncf.join("common/ncf.cf")).unwrap(),
        format!("{NCF}# first\n")
    );
    assert_eq!(fs::read_link(&node.view).unwrap(), inputs_target);
    node.run(&["verify"]).success();
}

#[test]
fn a_candidate_whose_top_level_is_not_exactly_the_views_directories_is_refused() {
    let (node, ncf) = two_view_node();
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    let extra = node.signed_tree(
        "extra",
        &[
            ("inputs/promises.cf", POLICY),
            ("ncf/common/ncf.cf", NCF),
            ("extra.cf", "# outside every view\n"),
        ],
        2,
    );
    assert_ingest_refused(
        &node,
        &extra,
        "rejected by the integrity check: extra.cf: not a view's directory: the top of the tree holds only inputs, ncf",
    );
    let missing = node.signed_tree("missing", &[("inputs/promises.cf", POLICY)], 3);
    assert_ingest_refused(
        &node,
        &missing,
        "rejected by the integrity check: ncf: the view's directory is missing",
    );
    let file = node.signed_tree(
        "file",
        &[("inputs/promises.cf", POLICY), ("ncf", "# a file\n")],
        4,
    );
    assert_ingest_refused(
        &node,
        &file,
        "rejected by the integrity check: ncf: a file where a view's directory belongs",
    );
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
}

#[test]
fn verify_reports_active_or_a_view_pointing_elsewhere_and_repair_restores_them() {
    let (node, ncf) = two_view_node();
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    node.ingest(&two_view_tree(&node, "second", 2)).success();
    let active = node.store.join("active");
    // STORE/active switched behind polstore's back, and the ncf view pointed elsewhere.
    fs::remove_file(&active).unwrap();
    std::os::unix::fs::symlink("generations/1/tree", &active).unwrap();
    let elsewhere = node.root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::remove_file(&ncf).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &ncf).unwrap();

    let status = node.status();
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "{} points at generations/1/tree, not at the active generation 2",
            s(&active)
        )),
        "{warnings}"
    );
    assert!(
        warnings.contains(&format!(
            "the view {} points at {}, not at {}",
            s(&ncf),
            s(&elsewhere),
            s(&node.store.join("readonly/active/ncf"))
        )),
        "{warnings}"
    );
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "DAMAGED  {} points at generations/1/tree, not at the active generation 2\n",
            s(&active)
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("DAMAGED  the view {} points at", s(&ncf))),
        "{}",
        out.stdout
    );

    node.run(&["verify", "--repair"]).success();
    assert_eq!(viewed(&node, &ncf), (Some(2), Some(2)));
    node.run(&["verify"]).success();
}

#[test]
fn a_writer_puts_active_back_at_the_database_s_generation() {
    let (node, ncf) = two_view_node();
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    node.ingest(&two_view_tree(&node, "second", 2)).success();
    let active = node.store.join("active");
    fs::remove_file(&active).unwrap();
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr.contains(&format!(
            "polstore: recovery: pointed {} at generation 2\n",
            s(&active)
        )),
        "{out:#?}"
    );
    assert_eq!(viewed(&node, &ncf), (Some(2), Some(2)));
}

#[test]
fn init_refuses_mixed_view_forms() {
    let node = Node::new();
    let ncf = node.root.join("node").join("ncf");
    let out = node.run(&[
        "init",
        "--view",
        s(&ncf),
        "--view",
        &format!("inputs={}", s(&node.view)),
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "polstore: --view PATH stands alone; for several views give each as --view NAME=PATH\n"
    );
    assert!(!node.store.exists());
}

/// A node with no store yet and its `ncf` view's path beside `inputs` (neither made).
fn unmigrated_node() -> (Node, PathBuf) {
    let node = Node::new();
    let ncf = node.root.join("node").join("ncf");
    (node, ncf)
}

/// `init --adopt` with the views `inputs` and `ncf`, trusting the node's key: a Rudder
/// node's migration.
fn adopt_two_views(node: &Node, ncf: &Path) -> Out {
    node.run(&[
        "init",
        "--view",
        &format!("inputs={}", s(&node.view)),
        "--view",
        &format!("ncf={}", s(ncf)),
        "--trust",
        s(&node.public_key),
        "--adopt",
    ])
}

/// What a Rudder node's two directories hold before the migration: modes 0600 and 0755
/// among them, bytes that are not text, and an empty directory in each.
fn write_rudder_directories(node: &Node, ncf: &Path) {
    write_tree(
        &node.view,
        &[
            ("promises.cf", POLICY),
            ("lib/common.cf", "# common\n"),
            ("rudder-directives.csv", "id,name\n"),
        ],
    );
    set_mode(&node.view.join("lib/common.cf"), 0o600);
    fs::write(
        node.view.join("lib/binary.dat"),
        [0u8, 0xff, 0xfe, 7, b'\r'],
    )
    .unwrap();
    fs::create_dir(node.view.join("state")).unwrap();
    write_tree(
        ncf,
        &[
            ("common/10_ncf_internals/list.cf", NCF),
            ("common/modules/run.sh", "#!/bin/sh\nexit 0\n"),
            ("local/README", "local methods\n"),
        ],
    );
    set_mode(&ncf.join("common/modules/run.sh"), 0o755);
    fs::create_dir(ncf.join("local/empty")).unwrap();
}

/// The node's entry point is `inputs/promises.cf` once the store has both views.
fn configure_two_views(node: &Node) {
    node.configure_for_tests();
    node.set_config("checks", "entry_points", r#"["inputs/promises.cf"]"#);
}

/// The names in the directory holding the views: nothing polstore left beside them.
fn beside_the_views(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn init_adopts_the_directories_of_two_views_as_one_generation() {
    let (node, ncf) = unmigrated_node();
    write_rudder_directories(&node, &ncf);
    let inputs_before = tree_content(&node.view);
    let ncf_before = tree_content(&ncf);

    let out = adopt_two_views(&node, &ncf).success();
    for (name, path) in [("inputs", &node.view), ("ncf", &ncf)] {
        assert!(
            out.stdout.contains(&format!(
                "adopted {} as {name}/ of generation 1 (unsigned, not checked); it is now a symlink to {}\n",
                s(path),
                s(&node.store.join("readonly/active").join(name))
            )),
            "{}",
            out.stdout
        );
    }
    configure_two_views(&node);
    // Both paths are the views, fixed symlinks through STORE/active.
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
    assert_eq!(
        fs::read_link(&node.view).unwrap(),
        node.store.join("readonly/active/inputs")
    );
    assert_eq!(
        fs::read_link(&ncf).unwrap(),
        node.store.join("readonly/active/ncf")
    );
    // Byte for byte, modes kept, empty directories too.
    assert_eq!(tree_content(&node.view), inputs_before);
    assert_eq!(tree_content(&ncf), ncf_before);
    assert_eq!(mode_of(&node.view.join("lib/common.cf")), 0o600);
    assert_eq!(mode_of(&ncf.join("common/modules/run.sh")), 0o755);
    assert!(node.view.join("state").is_dir());
    assert!(ncf.join("local/empty").is_dir());
    let mut top: Vec<String> = fs::read_dir(node.generation_tree(1))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["inputs", "ncf"]);

    let list = node.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["origin"], "adopted");
    assert_eq!(list[0]["serial"], 0);
    assert_eq!(list[0]["active"], true);
    assert_eq!(
        list[0]["source"],
        format!("inputs={}, ncf={}", s(&node.view), s(&ncf))
    );
    assert_eq!(node.log()[0]["action"], "adopt");
    assert_eq!(beside_the_views(&node), ["inputs", "ncf"]);
    assert!(!node.store.join("adopting").exists());
    node.run(&["verify"]).success();

    // The first signed policy replaces both views' content at once.
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    assert_eq!(viewed(&node, &ncf), (Some(2), Some(2)));
    assert_eq!(
        fs::read_to_string(ncf.join("common/ncf.cf")).unwrap(),
        format!("{NCF}# first\n")
    );
    assert!(!ncf.join("local").exists());
}

#[test]
fn init_adopts_an_empty_or_missing_view_directory_as_an_empty_one() {
    for ncf_is_there in [true, false] {
        let (node, ncf) = unmigrated_node();
        write_tree(&node.view, &[("promises.cf", POLICY)]);
        if ncf_is_there {
            fs::create_dir(&ncf).unwrap();
            set_mode(&ncf, 0o700);
        }
        let out = adopt_two_views(&node, &ncf).success();
        let said = if ncf_is_there {
            format!(
                "adopted the empty directory {} as ncf/ of generation 1 (unsigned, not checked)",
                s(&ncf)
            )
        } else {
            format!(
                "{} did not exist: ncf/ of generation 1 is empty (unsigned, not checked)",
                s(&ncf)
            )
        };
        assert!(
            out.stdout.contains(&format!(
                "{said}; it is now a symlink to {}\n",
                s(&node.store.join("readonly/active/ncf"))
            )),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains("nothing to adopt"), "{}", out.stdout);
        configure_two_views(&node);
        assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
        assert_eq!(fs::read_dir(&ncf).unwrap().count(), 0);
        assert_eq!(
            fs::read_to_string(node.view.join("promises.cf")).unwrap(),
            POLICY
        );
        assert!(
            node.generation_manifest(1).contains("\ndirectory ncf\n"),
            "{}",
            node.generation_manifest(1)
        );
        assert_eq!(beside_the_views(&node), ["inputs", "ncf"]);
        assert!(!node.store.join("adopting").exists());
        node.run(&["verify"]).success();
    }
}

#[test]
fn init_with_every_view_directory_empty_or_missing_adopts_nothing() {
    let (node, ncf) = unmigrated_node();
    fs::create_dir(&node.view).unwrap();
    let out = adopt_two_views(&node, &ncf).success();
    assert!(
        out.stdout.contains(&format!(
            "nothing to adopt: {} is an empty directory; the first ingest replaces it with the view\n",
            s(&node.view)
        )) && out.stdout.ends_with(&format!(
            "nothing to adopt: {} does not exist; the first ingest puts the view there\n",
            s(&ncf)
        )),
        "{}",
        out.stdout
    );
    configure_two_views(&node);
    assert!(node.list().is_empty());
    assert!(!node.store.join("adopting").exists());
    assert!(fs::symlink_metadata(&node.view).unwrap().is_dir());
    assert!(!ncf.exists());
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
}

/// Everything at and below both views' directories, with modes: what a refused init must
/// leave as it was.
fn both_directories(node: &Node, ncf: &Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
    let mut found = Vec::new();
    let parent = node.view.parent().unwrap();
    let mut pending = vec![parent.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            let content = if metadata.is_dir() {
                pending.push(path.clone());
                None
            } else if metadata.is_file() {
                Some(fs::read(&path).unwrap())
            } else {
                None
            };
            found.push((
                path.strip_prefix(parent).unwrap().display().to_string(),
                mode_of(&path) | (metadata.file_type().is_symlink() as u32) << 16,
                content,
            ));
        }
    }
    found.sort();
    assert!(
        found
            .iter()
            .any(|(path, ..)| Path::new(path) == ncf.strip_prefix(parent).unwrap())
    );
    found
}

/// `init --adopt` into two views refused: exit `code`, exactly the one line `line` on
/// standard error, no store, and both directories exactly as they were.
fn assert_adoption_refused(node: &Node, ncf: &Path, code: i32, line: &str) {
    let before = both_directories(node, ncf);
    let out = adopt_two_views(node, ncf);
    assert_eq!(out.code, code, "{out:#?}");
    assert_eq!(out.stderr, format!("polstore: {line}\n"));
    assert_eq!(out.stdout, "");
    assert!(!node.store.exists(), "a refused init left a store");
    assert_eq!(both_directories(node, ncf), before);
}

#[test]
fn a_refused_adoption_into_two_views_leaves_both_directories_and_makes_no_store() {
    let (node, ncf) = unmigrated_node();
    write_rudder_directories(&node, &ncf);
    let not_adopted = "; nothing was adopted and the store was not created";

    // A symlink inside one directory (the other would have been fine).
    let link = ncf.join("common/link.cf");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    assert_adoption_refused(
        &node,
        &ncf,
        3,
        &format!(
            "rejected by the source check: ncf/common/link.cf: is a symbolic link; only regular files and directories are accepted{not_adopted}"
        ),
    );
    fs::remove_file(&link).unwrap();

    // A FIFO in the other.
    let fifo = node.view.join("lib/agent.fifo");
    tool("mkfifo", &[s(&fifo)]);
    assert_adoption_refused(
        &node,
        &ncf,
        3,
        &format!(
            "rejected by the source check: inputs/lib/agent.fifo: is a fifo; only regular files and directories are accepted{not_adopted}"
        ),
    );
    fs::remove_file(&fifo).unwrap();

    // A file whose name the path rules refuse.
    let bad_name = ncf.join("local/line\nbreak.cf");
    fs::write(&bad_name, "# a bad name\n").unwrap();
    let out = adopt_two_views(&node, &ncf);
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(!node.store.exists());
    fs::remove_file(&bad_name).unwrap();

    // The name the adopted ncf directory would be moved to is someone's directory.
    let taken = node.view.with_file_name(".ncf.polstore-new");
    fs::create_dir(&taken).unwrap();
    assert_adoption_refused(
        &node,
        &ncf,
        1,
        &format!(
            "{} is a directory polstore did not make, where the adopted directory {} would be moved; move it away first",
            s(&taken),
            s(&ncf)
        ),
    );
    fs::remove_dir(&taken).unwrap();

    // A view that is a file.
    let lib = ncf.with_file_name("ncf-files");
    fs::rename(&ncf, &lib).unwrap();
    fs::write(&ncf, "# not a directory\n").unwrap();
    assert_adoption_refused(
        &node,
        &ncf,
        1,
        &format!(
            "{} exists and is not a directory; move it away first",
            s(&ncf)
        ),
    );
    fs::remove_file(&ncf).unwrap();
    fs::rename(&lib, &ncf).unwrap();

    // A view that is a mount point: nothing can be renamed in its place. Needs root.
    if running_as_root() {
        tool(
            "mount",
            &["-t", "tmpfs", "-o", "mode=0755", "tmpfs", s(&ncf)],
        );
        write_tree(&ncf, &[("common/ncf.cf", NCF)]);
        assert_adoption_refused(
            &node,
            &ncf,
            1,
            &format!(
                "{} is a mount point, which polstore cannot put its view symlink in place of; unmount it (copy its content into a plain directory there to adopt it) first",
                s(&ncf)
            ),
        );
        tool("umount", &[s(&ncf)]);
    } else {
        eprintln!("skipped the mount point: mounting needs root");
    }

    // Once what was refused is gone, the same init adopts both.
    adopt_two_views(&node, &ncf).success();
    configure_two_views(&node);
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
}

/// A directory planted at `STORE/active` (a rename cannot replace one) is reported, moved
/// into `untrusted/` by `verify --repair`, never deleted, and `active` made anew; a
/// missing `active`, which leaves every view pointing at nothing, is a status warning.
#[test]
fn a_directory_at_active_is_moved_aside_and_a_missing_active_is_a_warning() {
    let (node, ncf) = two_view_node();
    node.ingest(&two_view_tree(&node, "first", 1)).success();
    let active = node.store.join("active");

    fs::remove_file(&active).unwrap();
    let status = node.status();
    assert!(
        status["warnings"]
            .to_string()
            .contains(&format!("{} is missing", s(&active))),
        "{status:#}"
    );
    node.run(&["gc"]).success();
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));

    fs::remove_file(&active).unwrap();
    write_tree(&active, &[("inputs/promises.cf", "# planted\n")]);
    assert_eq!(node.run(&["verify"]).code, 4);
    let out = node.run(&["verify", "--repair"]).success();
    assert!(out.stdout.contains("REPAIRED "), "{}", out.stdout);
    assert_eq!(viewed(&node, &ncf), (Some(1), Some(1)));
    let kept: Vec<String> = fs::read_dir(node.store.join("untrusted"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter().any(|name| name.starts_with("active-")),
        "{kept:?}"
    );
    node.run(&["verify"]).success();
}

/// The library every `inputs` policy of [`library_tree`] calls.
const LIBRARY_ONE: &str = "bundle agent library_one\n{\n  reports:\n    \"one\";\n}\n";
/// A second library bundle, which a newer `inputs` names in its bundlesequence.
const LIBRARY_TWO: &str = "bundle agent library_two\n{\n  reports:\n    \"two\";\n}\n";
/// A library that does not parse (a promise without its `;`).
const LIBRARY_BROKEN: &str = "bundle agent library_one\n{\n  reports:\n    \"one\"\n}\n";

/// A signed node whose store has the views `inputs` and `lib`, both missing (a fresh
/// node), with the parse check on `inputs/promises.cf`. Returns the `lib` view's path.
fn library_node() -> (Node, PathBuf) {
    let node = Node::new();
    let lib = node.root.join("node").join("lib");
    node.run(&[
        "init",
        "--view",
        &format!("inputs={}", s(&node.view)),
        "--view",
        &format!("lib={}", s(&lib)),
        "--trust",
        s(&node.public_key),
    ])
    .success();
    node.configure_for_tests();
    node.set_config("checks", "entry_points", r#"["inputs/promises.cf"]"#);
    (node, lib)
}

/// A signed tree whose `inputs/promises.cf` loads `lib.cf` by the `lib` view's absolute
/// path, as Rudder's promises.cf loads ncf from `/var/rudder/ncf`, runs `main` (which calls
/// `library_one`) and then `sequence`; `lib/lib.cf` holds `library` and `# LABEL`.
fn library_tree(
    node: &Node,
    lib: &Path,
    label: &str,
    serial: u64,
    sequence: &[&str],
    library: &str,
) -> PathBuf {
    let sequence: String = sequence
        .iter()
        .map(|bundle| format!(", \"{bundle}\""))
        .collect();
    let inputs = format!(
        "body common control\n{{\n  inputs => {{ \"{}\" }};\n  bundlesequence => {{ \"main\"{sequence} }};\n}}\n\nbundle agent main\n{{\n  methods:\n    \"any\" usebundle => library_one;\n}}\n",
        s(&lib.join("lib.cf"))
    );
    node.signed_tree(
        label,
        &[
            ("inputs/promises.cf", &inputs),
            ("lib/lib.cf", &format!("{library}# {label}\n")),
        ],
        serial,
    )
}

/// The lines of this process's mount table that name a path under `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(s(root)))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_checks_see_the_candidate_at_the_view_paths_read_only_and_leave_no_mount() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (node, lib) = library_node();
    // A fresh node: nothing at either view. The checks show the candidate there on
    // directories made for them, which the activation replaces by the views.
    assert!(fs::symlink_metadata(&node.view).is_err() && fs::symlink_metadata(&lib).is_err());
    node.ingest(&library_tree(&node, &lib, "first", 1, &[], LIBRARY_ONE))
        .success();
    assert_eq!(
        viewed_generation(&node.store, &lib, Some("lib")),
        Some(1),
        "the lib view is polstore's"
    );
    assert_eq!(node.viewed_generation(), None, "a several-view store");
    assert_eq!(
        viewed_generation(&node.store, &node.view, Some("inputs")),
        Some(1)
    );
    let mounts = mounts_under(&node.root);

    // A library that does not parse is refused, though the active one is fine: the check
    // read the candidate's library at the lib view's path.
    let broken = library_tree(&node, &lib, "broken", 2, &[], LIBRARY_BROKEN);
    assert_ingest_refused(
        &node,
        &broken,
        &format!(
            "polstore: rejected by the parse check: inputs/promises.cf: cf-promises exited with status 1: {}:5:2: error: syntax error",
            s(&lib.join("lib.cf"))
        ),
    );
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(
        fs::read_to_string(lib.join("lib.cf")).unwrap(),
        format!("{LIBRARY_ONE}# first\n")
    );
    assert_eq!(mounts_under(&node.root), mounts);

    // Rules that need a bundle only the new library has are accepted: the check did not
    // read the active library, which lacks it.
    let newer = library_tree(
        &node,
        &lib,
        "newer",
        3,
        &["library_two"],
        &format!("{LIBRARY_ONE}{LIBRARY_TWO}"),
    );
    node.ingest(&newer).success();
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(mounts_under(&node.root), mounts);

    // A user check sees the candidate at the view paths, and can write neither into the
    // tree it checks nor through a view.
    node.add_check(
        "read-only",
        &format!(
            "grep -q '# fourth' {lib_cf} || {{ echo 'the lib view does not show the candidate'; exit 1; }}\n\
             refused() {{\n\
               out=$(touch \"$1\" 2>&1) && {{ echo \"wrote $1\"; exit 1; }}\n\
               case \"$out\" in *'Read-only file system'*) ;; *) echo \"$out\"; exit 1 ;; esac\n\
             }}\n\
             refused \"$POLSTORE_TREE/x\"\n\
             refused \"$POLSTORE_TREE/inputs/x\"\n\
             refused {inputs}/x\n\
             refused {lib}/x\n\
             exit 0",
            lib_cf = s(&lib.join("lib.cf")),
            inputs = s(&node.view),
            lib = s(&lib),
        ),
    );
    let fourth = library_tree(
        &node,
        &lib,
        "fourth",
        4,
        &["library_two"],
        &format!("{LIBRARY_ONE}{LIBRARY_TWO}"),
    );
    let out = node.ingest(&fourth).success();
    assert_eq!(node.active_generation(), Some(3), "{out:#?}");
    let tree = tree_content(&node.generation_tree(3));
    assert_eq!(
        tree.keys().collect::<Vec<_>>(),
        ["inputs/promises.cf", "lib/lib.cf"],
        "nothing written into the generation"
    );
    assert_eq!(mounts_under(&node.root), mounts);
    // verify's parse check of the active generation runs the same way.
    node.run(&["verify"]).success();
    assert_eq!(mounts_under(&node.root), mounts);
}

#[test]
fn a_refused_first_candidate_leaves_no_directory_at_the_views() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (node, lib) = library_node();
    let broken = library_tree(&node, &lib, "broken", 1, &[], LIBRARY_BROKEN);
    let out = assert_ingest_refused(
        &node,
        &broken,
        "polstore: rejected by the parse check: inputs/promises.cf: cf-promises exited with status 1: ",
    );
    assert!(
        out.stderr.contains("lib.cf:5:2: error: syntax error"),
        "{out:#?}"
    );
    // The directories made to mount on are gone again (assert_refused checked that
    // nothing outside the store changed, too).
    assert!(fs::symlink_metadata(&node.view).is_err());
    assert!(fs::symlink_metadata(&lib).is_err());
    assert_eq!(node.active_generation(), None);
    // A candidate that needs a bundle the library lacks is refused too.
    let lacking = library_tree(&node, &lib, "lacking", 2, &["library_two"], LIBRARY_ONE);
    assert_ingest_refused(
        &node,
        &lacking,
        "polstore: rejected by the parse check: inputs/promises.cf: cf-promises exited with status 1: error: Bundle 'library_two' listed in the bundlesequence is not a defined bundle",
    );
    assert!(fs::symlink_metadata(&node.view).is_err());
    assert!(fs::symlink_metadata(&lib).is_err());
}

#[test]
fn without_cap_sys_admin_the_checks_of_several_views_refuse_the_ingest() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (node, lib) = library_node();
    node.ingest(&library_tree(&node, &lib, "first", 1, &[], LIBRARY_ONE))
        .success();
    let before = node.snapshot();
    let second = library_tree(&node, &lib, "second", 2, &[], LIBRARY_ONE);
    let out = run_without_mount_privilege(&node, &["ingest", s(&second)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "polstore: the parse check cannot show the candidate at the view paths: unshare: Operation not permitted (os error 1); several views need CAP_SYS_ADMIN; generation 1 stays active\n"
    );
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());
    // The user checks say the same when there is no parse check.
    node.set_config("checks", "cf_promises", "[]");
    node.add_check("passes", "exit 0");
    let out = run_without_mount_privilege(&node, &["ingest", s(&second)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "polstore: the user check passes cannot show the candidate at the view paths: unshare: Operation not permitted (os error 1); several views need CAP_SYS_ADMIN; generation 1 stays active\n"
    );
    assert_eq!(node.snapshot(), before);
    // With the privilege, the same candidate is accepted.
    node.ingest(&second).success();
    assert_eq!(node.active_generation(), Some(2));
}

#[test]
fn a_view_the_checks_cannot_show_the_candidate_at_refuses_the_ingest() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    // A symlink to nothing that is not polstore's, on a fresh node.
    let (node, lib) = library_node();
    let nowhere = node.root.join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &lib).unwrap();
    let tree = library_tree(&node, &lib, "first", 1, &[], LIBRARY_ONE);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "polstore: the checks cannot show the candidate at the view paths: the view {} is a symlink to {}, which is not a directory\n",
            s(&lib),
            s(&nowhere)
        ),
    );
    assert!(
        fs::symlink_metadata(&node.view).is_err(),
        "the inputs directory made is gone"
    );
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());

    // A view whose parent directory does not exist: nothing is made above it.
    fs::remove_file(&lib).unwrap();
    let deeper = node.root.join("node").join("missing").join("lib");
    let config = fs::read_to_string(node.config_path()).unwrap();
    fs::write(
        node.config_path(),
        config.replace(&toml_string(s(&lib)), &toml_string(s(&deeper))),
    )
    .unwrap();
    let out = assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "polstore: the checks cannot show the candidate at the view paths: cannot make {}: No such file or directory (os error 2)\n",
            s(&deeper)
        ),
    );
    assert!(!deeper.parent().unwrap().exists(), "{out:#?}");
    assert!(fs::symlink_metadata(&node.view).is_err());
}

/// A view added to the configuration after the active generation was made: its view is
/// polstore's symlink to a directory the active generation lacks. The checks still see the
/// candidate's directory there.
#[test]
fn a_view_added_later_shows_the_candidate_to_the_checks() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let (node, lib) = library_node();
    node.ingest(&library_tree(&node, &lib, "first", 1, &[], LIBRARY_ONE))
        .success();
    let extra = node.root.join("node").join("extra");
    node.set_config("views", "extra", &toml_string(s(&extra)));
    // The next writer puts the new view in place: it resolves to nothing yet.
    node.run(&["gc"]).success();
    assert_eq!(
        fs::read_link(&extra).unwrap(),
        node.store.join("readonly/active/extra")
    );
    assert!(!extra.exists());
    let inputs = format!(
        "body common control\n{{\n  inputs => {{ \"{}\", \"{}\" }};\n  bundlesequence => {{ \"main\", \"library_two\" }};\n}}\n\nbundle agent main\n{{\n  methods:\n    \"any\" usebundle => library_one;\n}}\n",
        s(&lib.join("lib.cf")),
        s(&extra.join("two.cf"))
    );
    let tree = node.signed_tree(
        "extra",
        &[
            ("inputs/promises.cf", &inputs),
            ("lib/lib.cf", LIBRARY_ONE),
            ("extra/two.cf", LIBRARY_TWO),
        ],
        2,
    );
    let mounts = mounts_under(&node.root);
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(
        fs::read_to_string(extra.join("two.cf")).unwrap(),
        LIBRARY_TWO
    );
    assert_eq!(mounts_under(&node.root), mounts);
}
