//! The read-only view: the view points through `STORE/readonly`, a read-only bind mount of
//! the store, so that a write through it fails at the kernel (EROFS), for root too. Without
//! the mount (no privilege, `polstore unmount`, `protect_view = false`) the view still works,
//! writable, and `status` and `verify` say so. Mounting needs root: each test that mounts
//! says so when it skips.

mod util;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use util::*;

/// Why these tests skip when not run as root.
const NEEDS_ROOT: &str = "mounting the read-only view needs root";

const EROFS: i32 = 30;

/// A node with generations 1 and 2, which share `lib/common.cf` (one inode).
fn node_with_two_generations() -> Node {
    let node = Node::with_generation();
    let tree = node.signed_tree(
        "gen2",
        &[
            ("promises.cf", POLICY),
            ("lib/common.cf", "# common\n"),
            ("lib/two.cf", "# two\n"),
        ],
        2,
    );
    node.ingest(&tree).success();
    node
}

fn assert_read_only(result: std::io::Result<()>, what: &str) {
    let error = result.expect_err(&format!("{what} through the view succeeded"));
    assert_eq!(error.raw_os_error(), Some(EROFS), "{what}: {error}");
}

#[test]
fn no_write_through_the_view_reaches_any_generation() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = node_with_two_generations();
    assert_eq!(node.viewed_generation(), Some(2));
    let before = tree_content(&node.generation_tree(1));
    let active_before = tree_content(&node.generation_tree(2));
    let view = &node.view;
    // What CFEngine does through a view: rewrite a file in place (the failsafe's release
    // id), create one (cf_promises_validated, a .cfsaved copy), remove one (bootstrap's
    // "Removing all files in inputs"), change a mode, rename, make a directory.
    assert_read_only(
        fs::OpenOptions::new()
            .write(true)
            .open(view.join("lib/common.cf"))
            .map(drop),
        "open for writing",
    );
    assert_read_only(
        fs::write(view.join("cf_promises_validated"), "{}"),
        "create",
    );
    assert_read_only(fs::remove_file(view.join("lib/two.cf")), "unlink");
    assert_read_only(
        fs::set_permissions(view.join("promises.cf"), fs::Permissions::from_mode(0o600)),
        "chmod",
    );
    assert_read_only(
        fs::rename(view.join("promises.cf"), view.join("promises.cf.cfsaved")),
        "rename",
    );
    assert_read_only(fs::create_dir(view.join("modules")), "mkdir");
    // The older generation, reached the same way, is read-only too.
    assert_read_only(
        fs::write(node.view_path(1).join("lib/common.cf"), "# rotten\n"),
        "a write into generation 1",
    );
    assert_eq!(tree_content(&node.generation_tree(1)), before);
    assert_eq!(tree_content(&node.generation_tree(2)), active_before);
    node.run(&["verify"]).success();
    // Reading through the view is the agent's policy, unchanged.
    assert_eq!(tree_content(view), active_before);
}

#[test]
fn status_says_when_the_mount_is_missing_and_mount_puts_it_back() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = Node::with_generation();
    let readonly = node.store.join("readonly");
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "read-only");
    assert_eq!(status["warnings"], serde_json::json!([]));

    let out = node.run(&["unmount"]).success();
    assert_eq!(
        out.stdout,
        format!(
            "unmounted {}: writes through the view reach the store (the next polstore command that writes mounts it again, unless protect_view = false)\n",
            s(&readonly)
        )
    );
    // As after a reboot: the view still shows the active generation, through the
    // fallback symlink, but writes reach the store.
    assert_eq!(node.viewed_generation(), Some(1));
    assert_eq!(
        fs::read_to_string(node.view.join("promises.cf")).unwrap(),
        POLICY
    );
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "missing");
    let warning = format!(
        "the view is not read-only: {} is not mounted; writes through the view reach the store",
        s(&readonly)
    );
    assert_eq!(status["warnings"], serde_json::json!([warning]));
    let text = node.run(&["status"]).success().stdout;
    assert!(
        text.contains(&format!("WARNING      {warning}\n")),
        "{text}"
    );
    // verify says it loudly, without calling the store damaged.
    let out = node.run(&["verify"]).success();
    assert!(
        out.stdout.contains(&format!(
            "WARNING  view protection MISSING: {} is not mounted",
            s(&readonly)
        )),
        "{}",
        out.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&node.run(&["verify", "--json"]).success().stdout).unwrap();
    assert_eq!(json["view_protection"]["state"], "missing");

    let out = node.run(&["mount"]).success();
    assert_eq!(
        out.stdout,
        format!(
            "mounted {} read-only: writes through the view fail\n",
            s(&readonly)
        )
    );
    let out = node.run(&["mount"]).success();
    assert_eq!(
        out.stdout,
        format!("{} is mounted read-only already\n", s(&readonly))
    );
    assert_eq!(node.status()["view_protection"]["state"], "read-only");
    assert_read_only(fs::write(node.view.join("x.cf"), ""), "create");
}

#[test]
fn the_next_writer_mounts_again_and_says_so() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr.contains(&format!(
            "polstore: recovery: mounted {} read-only: writes through the view fail\n",
            s(&node.store.join("readonly"))
        )),
        "{}",
        out.stderr
    );
    assert_eq!(node.status()["view_protection"]["state"], "read-only");
    // verify --repair mounts it too.
    node.run(&["unmount"]).success();
    let out = node.run(&["verify", "--repair"]).success();
    assert!(out.stdout.contains("REPAIRED mounted"), "{}", out.stdout);
    assert_eq!(node.status()["view_protection"]["state"], "read-only");
}

#[test]
fn without_the_privilege_to_mount_the_view_works_writable_and_every_command_says_so() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = Node::new();
    let out = run_without_mount_privilege(
        &node,
        &[
            "init",
            "--view",
            s(&node.view),
            "--trust",
            s(&node.public_key),
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let warning = format!(
        "the view is not read-only: cannot mount {} read-only: Operation not permitted (os error 1)",
        s(&node.store.join("readonly"))
    );
    assert_eq!(
        out.stderr,
        format!("polstore: warning: {warning}; writes through it reach the store\n")
    );
    node.configure_for_tests();
    let tree = node.signed_tree("gen1", &[("promises.cf", POLICY)], 1);
    let out = run_without_mount_privilege(&node, &["ingest", s(&tree)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "polstore: warning: {warning}; writes through the view reach the store\n"
        )),
        "{out:#?}"
    );
    // The view works, through the fallback symlink, and it is writable.
    assert_eq!(node.viewed_generation(), Some(1));
    assert_eq!(
        fs::read_to_string(node.view.join("promises.cf")).unwrap(),
        POLICY
    );
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "missing");
    // `mount` refuses in one line, exit 1.
    let out = run_without_mount_privilege(&node, &["mount"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "polstore: cannot make the view read-only: cannot mount {} read-only: Operation not permitted (os error 1)\n",
            s(&node.store.join("readonly"))
        )
    );
    // With the privilege, it goes in place.
    node.run(&["mount"]).success();
    assert_eq!(node.status()["view_protection"]["state"], "read-only");
}

#[test]
fn protect_view_false_does_not_mount_and_status_says_off() {
    let node = Node::with_generation();
    fs::write(
        node.config_path(),
        fs::read_to_string(node.config_path())
            .unwrap()
            .replace("protect_view = true", "protect_view = false"),
    )
    .unwrap();
    // Mounted when it was turned off: the next writer takes the mount away.
    let out = node.run(&["gc"]).success();
    if running_as_root() {
        assert!(
            out.stderr.contains(&format!(
                "polstore: recovery: took away 1 mount(s) at {}: polstore.toml says protect_view = false\n",
                s(&node.store.join("readonly"))
            )),
            "{}",
            out.stderr
        );
    }
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "off");
    assert_eq!(
        status["warnings"],
        serde_json::json!([
            "the view is not read-only (protect_view = false): writes through the view reach the store"
        ])
    );
    // What the operator asked for: the boot unit does not fail.
    let out = node.run(&["mount"]).success();
    assert_eq!(
        out.stdout,
        format!(
            "not mounting {}: polstore.toml says protect_view = false\n",
            s(&node.store.join("readonly"))
        )
    );
    assert!(node.view.join("promises.cf").is_file());
}

#[test]
fn verify_names_the_cfengine_writers_it_recognises_and_repair_undoes_them() {
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    // What the stock update and the failsafe leave when they can write through the view.
    let view = &node.view;
    fs::write(view.join("cf_promises_validated"), "{\"timestamp\":1}\n").unwrap();
    fs::write(view.join("promises.cf.cfsaved"), POLICY).unwrap();
    fs::write(view.join("failsafe.cf"), "body common control {}\n").unwrap();
    // move_obstructions: the view moved aside, a directory in its place.
    let moved = view.with_file_name("inputs.cf-moved");
    fs::rename(view, &moved).unwrap();
    fs::create_dir(view).unwrap();
    fs::write(view.join("promises.cf"), POLICY).unwrap();

    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    for line in [
        "DAMAGED  generation 1: cf_promises_validated: file not in the manifest (cf-agent records a validated policy here: an update or agent run wrote through the view)\n",
        "DAMAGED  generation 1: promises.cf.cfsaved: file not in the manifest (cf-agent's backup of a file it replaced: a policy copy into inputs wrote through the view)\n",
        "DAMAGED  generation 1: failsafe.cf: file not in the manifest (written by cf-agent --bootstrap or the failsafe through the view)\n",
    ] {
        assert!(out.stdout.contains(line), "{line}{}", out.stdout);
    }
    assert!(
        out.stdout.contains(&format!(
            "DAMAGED  the view {} is a directory, not polstore's symlink to {} (something copied policy into it); {} is there: CFEngine's move_obstructions moved the view aside\n",
            s(view),
            s(&node.view_fixed_target()),
            s(&moved)
        )),
        "{}",
        out.stdout
    );
    let status = node.status();
    assert_eq!(status["view_type"], "directory");
    assert_eq!(status["view_target"], serde_json::Value::Null);

    let out = node.run(&["verify", "--repair"]).success();
    assert!(out.stdout.contains("REPAIRED mounted"), "{}", out.stdout);
    assert_eq!(node.viewed_generation(), Some(1));
    node.run(&["verify"]).success();
    assert!(
        !node
            .generation_tree(1)
            .join("cf_promises_validated")
            .exists()
    );
    // What was at the view is kept beside it, not deleted.
    assert!(displaced_beside(view).is_some());
}

/// The directory `verify --repair` moved aside from the view's place, if any.
fn displaced_beside(view: &Path) -> Option<std::path::PathBuf> {
    let prefix = format!(".{}.polstore-displaced-", view.file_name()?.to_str()?);
    fs::read_dir(view.parent()?)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix))
                && path.is_dir()
        })
}

#[test]
fn a_store_made_before_the_read_only_view_keeps_working_until_a_writer_upgrades_it() {
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    // As an older polstore left it: no readonly/, the view at the writable tree.
    fs::remove_dir_all(node.store.join("readonly")).unwrap();
    let old_target = node.generation_tree(1);
    fs::remove_file(&node.view).unwrap();
    std::os::unix::fs::symlink(&old_target, &node.view).unwrap();
    // A reader says so; verify calls it damage (writes through it reach the store) and
    // changes nothing.
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "missing");
    assert!(
        status["warnings"][0]
            .as_str()
            .unwrap()
            .contains("writable tree"),
        "{status:#}"
    );
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "DAMAGED  the view {} points at generation 1's writable tree {} (as an older polstore made it)",
            s(&node.view),
            s(&old_target)
        )),
        "{}",
        out.stdout
    );
    assert_eq!(node.view_target(), Some(old_target.clone()));
    match fs::metadata(node.store.join("readonly")) {
        Err(error) => assert_eq!(error.kind(), ErrorKind::NotFound),
        Ok(_) => panic!("a reader made readonly/"),
    }
    // The first writer points the view through readonly/.
    node.run(&["gc"]).success();
    assert_eq!(node.viewed_generation(), Some(1));
    node.run(&["verify"]).success();
}

/// The mount is read-only from the instant it is attached: a mount namespace made before
/// it (a container, a sandboxed service) receives a read-only copy by propagation, not a
/// writable one. Run inside a namespace with shared propagation, as on a systemd host.
#[test]
fn a_namespace_made_before_the_mount_receives_it_read_only() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    let ready = node.root.join("ready.fifo");
    let go = node.root.join("go.fifo");
    tool("mkfifo", &[&ready, &go]);
    let inner = format!(
        "echo ready > {ready}; read line < {go}; if echo hacked >> {view}/promises.cf; then echo WROTE; else echo REFUSED; fi",
        ready = s(&ready),
        go = s(&go),
        view = s(&node.view)
    );
    // The inner namespace exists (it said so through `ready`) before polstore mounts.
    let outer = format!(
        "unshare --mount --propagation slave sh -c '{inner}' > {out} 2>&1 & read line < {ready}; {polstore} mount > /dev/null; echo go > {go}; wait",
        out = s(&node.root.join("inner.out")),
        ready = s(&ready),
        go = s(&go),
        polstore = env!("CARGO_BIN_EXE_polstore"),
    );
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "shared", "sh", "-c", &outer])
        .env("POLSTORE_STORE", &node.store)
        .status()
        .unwrap();
    assert!(status.success());
    let inner_out = fs::read_to_string(node.root.join("inner.out")).unwrap();
    assert!(inner_out.contains("Read-only file system"), "{inner_out}");
    assert!(inner_out.ends_with("REFUSED\n"), "{inner_out}");
    assert_eq!(
        fs::read_to_string(node.generation_tree(1).join("promises.cf")).unwrap(),
        POLICY
    );
}

#[test]
fn a_writable_mount_stacked_inside_is_named_and_taken_away() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = Node::with_generation();
    let inside = node.store.join("readonly").join("generations");
    tool(
        "mount",
        &["--bind", s(&node.store.join("generations")), s(&inside)],
    );
    let what = format!("something else is mounted at {}", s(&inside));
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "missing");
    assert!(
        status["view_protection"]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("MISSING: {what}")),
        "{status:#}"
    );
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "DAMAGED  {what}: the view does not show the store\n"
        )),
        "{}",
        out.stdout
    );
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr.contains(&format!(
            "polstore: recovery: took away 2 mount(s) at {} that were not the store's read-only mount\n",
            s(&node.store.join("readonly"))
        )),
        "{}",
        out.stderr
    );
    assert_eq!(node.status()["view_protection"]["state"], "read-only");
    assert_read_only(fs::write(node.view.join("promises.cf"), ""), "a write");
    node.run(&["verify"]).success();
}

#[test]
fn a_fallback_pointed_elsewhere_is_damage_never_read_through_and_put_back() {
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    // Something else, reached through readonly/generations when it points there.
    let planted = node.root.join("planted");
    write_tree(
        &planted.join("1/tree"),
        &[("promises.cf", "bundle agent planted {}\n")],
    );
    let fallback = node.store.join("readonly").join("generations");
    fs::remove_file(&fallback).unwrap();
    std::os::unix::fs::symlink(&planted, &fallback).unwrap();
    let what = format!(
        "{} points at {}, not at ../generations",
        s(&fallback),
        s(&planted)
    );
    let status = node.status();
    assert_eq!(
        status["view_protection"]["detail"],
        format!("MISSING: {what}; writes through the view reach the store")
    );
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "DAMAGED  {what}: the view does not show the store\n"
        )),
        "{}",
        out.stdout
    );
    // Repair puts the fallback back before it reads anything; the generation stays good.
    let out = node.run(&["verify", "--repair"]).success();
    assert!(
        out.stdout.contains(&format!(
            "REPAIRED pointed {} back at ../generations: it pointed elsewhere\n",
            s(&fallback)
        )),
        "{}",
        out.stdout
    );
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(node.status()["active"]["state"], "good");
    assert_eq!(
        fs::read_to_string(node.view.join("promises.cf")).unwrap(),
        POLICY
    );
    assert!(planted.join("1/tree/promises.cf").is_file());
}

#[test]
fn a_directory_planted_for_the_fallback_is_moved_aside_even_with_protection_off() {
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    fs::write(
        node.config_path(),
        fs::read_to_string(node.config_path())
            .unwrap()
            .replace("protect_view = true", "protect_view = false"),
    )
    .unwrap();
    let fallback = node.store.join("readonly").join("generations");
    fs::remove_file(&fallback).unwrap();
    write_tree(
        &fallback.join("1/tree"),
        &[("promises.cf", "bundle agent planted {}\n")],
    );
    // Not "off": the view shows something that is not the store.
    let status = node.status();
    assert_eq!(status["view_protection"]["state"], "missing", "{status:#}");
    assert_eq!(node.run(&["verify"]).code, 4);
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr.contains(&format!(
            "polstore: recovery: moved the directory planted at {} to {}",
            s(&fallback),
            s(&node.store.join("untrusted").join("readonly-generations-"))
        )),
        "{}",
        out.stderr
    );
    assert_eq!(node.status()["view_protection"]["state"], "off");
    assert_eq!(
        fs::read_to_string(node.view.join("promises.cf")).unwrap(),
        POLICY
    );
    node.run(&["verify"]).success();
}

#[test]
fn an_empty_mount_point_at_the_view_is_refused_before_anything_is_committed() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let node = Node::signed();
    fs::create_dir(&node.view).unwrap();
    tool("mount", &["-t", "tmpfs", "tmpfs", s(&node.view)]);
    let tree = node.signed_tree("gen1", &[("promises.cf", POLICY)], 1);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "is not polstore's symlink; polstore will not replace what someone put there",
    );
    assert_eq!(node.active_generation(), None);
    assert_eq!(node.generations(), Vec::<u64>::new());
    tool("umount", &[s(&node.view)]);
}

#[test]
fn unmount_with_nothing_mounted_needs_no_privilege() {
    let node = Node::with_generation();
    node.run(&["unmount"]).success();
    let out = if running_as_root() {
        run_without_mount_privilege(&node, &["unmount"])
    } else {
        node.run(&["unmount"])
    };
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        format!(
            "nothing is mounted at {}\n",
            s(&node.store.join("readonly"))
        )
    );
}

#[test]
fn unmount_refuses_a_directory_that_is_not_a_store_and_creates_nothing_there() {
    let node = Node::new();
    let elsewhere = node.root.join("not-a-store");
    fs::create_dir(&elsewhere).unwrap();
    let out = util::run_polstore(&elsewhere, &["unmount"], &[], None);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "polstore: {} is not a polstore store (no format file); create one with 'polstore init'\n",
            s(&elsewhere)
        )
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}
