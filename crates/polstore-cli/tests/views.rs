//! Several views, one switch: a store with `[views]` (Rudder's `inputs` and `ncf`) shows
//! each view's directory of the active generation, and all of them change with the one
//! rename of `STORE/active` (store-format.md § Views).

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use util::*;

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
fn init_refuses_adopting_into_several_views_and_mixed_view_forms() {
    let node = Node::new();
    let ncf = node.root.join("node").join("ncf");
    fs::create_dir(&node.view).unwrap();
    fs::write(node.view.join("promises.cf"), POLICY).unwrap();
    let out = node.run(&[
        "init",
        "--adopt",
        "--view",
        &format!("inputs={}", s(&node.view)),
        "--view",
        &format!("ncf={}", s(&ncf)),
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        "polstore: --adopt takes one view's directory in; a store with several views starts empty (ingest a tree with one directory per view)\n"
    );
    assert!(!node.store.exists());
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
