//! Commands at the same time: writers serialize on the store lock and say what they wait
//! for, none corrupts another, readers read while a writer works, and a lock whose holder
//! was killed never blocks anyone.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// Starts `polstore ARGS` on `node` in the background.
fn spawn(node: &Node, args: &[&str]) -> Child {
    Command::new(POLSTORE)
        .args(args)
        .env("POLSTORE_STORE", &node.store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start polstore")
}

/// Waits until `path` exists: the holder has reached the slow step and holds the lock.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> Out {
    let output = child.wait_with_output().unwrap();
    Out {
        code: output.status.code().expect("polstore was killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A parse check that marks `started` and then takes `secs` seconds, and passes.
fn slow_parse(node: &Node, started: &Path, secs: u32) {
    node.set_config(
        "checks",
        "cf_promises",
        &format!(
            r#"["/bin/sh", "-c", "touch {}; sleep {secs}", "{{tree}}"]"#,
            s(started)
        ),
    );
}

fn tree(node: &Node, name: &str, serial: u64) -> PathBuf {
    node.signed_tree(
        name,
        &[
            ("promises.cf", POLICY),
            ("lib/n.cf", &format!("# {serial}\n")),
        ],
        serial,
    )
}

#[test]
fn two_ingests_at_once_serialize_and_the_newer_serial_wins() {
    let node = Node::with_generation();
    let started = node.root.join("started");
    slow_parse(&node, &started, 2);
    let older = tree(&node, "older", 2);
    let newer = tree(&node, "newer", 3);
    let first = spawn(&node, &["ingest", s(&newer)]);
    wait_for(&started);
    let second = node.run(&["--lock-timeout", "60", "ingest", s(&older)]);
    let first = finish(first);
    assert_eq!(first.code, 0, "{first:#?}");
    // The older serial, waiting behind the newer, is then a replay.
    assert_eq!(second.code, 3, "{second:#?}");
    assert!(
        second
            .stderr
            .contains("waiting for the store lock, held by pid"),
        "{second:#?}"
    );
    assert!(
        second
            .stderr
            .contains("serial 2 is older than the highest accepted serial 3")
    );
    assert_eq!(node.active_generation(), Some(2));
    node.run(&["verify"]).success();
}

#[test]
fn readers_read_while_a_writer_works_and_writers_wait() {
    let node = Node::with_generation();
    let started = node.root.join("started");
    slow_parse(&node, &started, 2);
    let candidate = tree(&node, "next", 2);
    let ingest = spawn(&node, &["ingest", s(&candidate)]);
    wait_for(&started);
    // Readers do not wait, and see the generation that is active.
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(node.list().len(), 1);
    // Writers say who holds the lock.
    for args in [
        vec!["--lock-timeout", "0", "verify"],
        vec!["--lock-timeout", "0", "gc"],
        vec!["--lock-timeout", "0", "rollback", "1"],
        vec!["--lock-timeout", "0", "pin", "1"],
    ] {
        assert_refused(&node, &args, 1, "(polstore ingest, since");
    }
    // A gc that may wait runs after the ingest, and so does a rollback: the operator's
    // word comes last.
    let gc = spawn(&node, &["--lock-timeout", "60", "gc", "--keep", "1"]);
    let rollback = node.run(&["--lock-timeout", "60", "rollback", "1"]);
    assert_eq!(finish(ingest).code, 0);
    let gc = finish(gc);
    assert_eq!(gc.code, 0, "{gc:#?}");
    assert!(gc.stderr.contains("waiting for the store lock"), "{gc:#?}");
    assert_eq!(rollback.code, 0, "{rollback:#?}");
    assert!(
        rollback.stdout.contains("generation 1 active"),
        "{rollback:#?}"
    );
    assert_eq!(node.active_generation(), Some(1));
    node.run(&["verify"]).success();
}

#[test]
fn an_ingest_waits_for_verify_and_for_the_agent_run_of_another() {
    let node = Node::with_generation();
    // verify holds the lock through its parse check.
    let started = node.root.join("verify-started");
    slow_parse(&node, &started, 2);
    let verify = spawn(&node, &["verify", "--repair"]);
    wait_for(&started);
    fs::remove_file(&started).unwrap();
    let candidate = tree(&node, "during-verify", 2);
    let out = node.run(&["--lock-timeout", "60", "ingest", s(&candidate)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("(polstore verify --repair, since"),
        "{out:#?}"
    );
    assert_eq!(finish(verify).code, 0);
    // An agent run confirming generation 3 holds the lock too.
    node.set_config("checks", "cf_promises", "[]");
    let agent_started = node.root.join("agent-started");
    node.set_config(
        "agent",
        "command",
        &format!(
            r#"["/bin/sh", "-c", "touch {}; sleep 2"]"#,
            s(&agent_started)
        ),
    );
    let with_agent = spawn(&node, &["ingest", s(&tree(&node, "with-agent", 3))]);
    wait_for(&agent_started);
    node.set_config("agent", "command", "[]");
    let out = node.run(&[
        "--lock-timeout",
        "60",
        "ingest",
        s(&tree(&node, "after", 4)),
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("waiting for the store lock"),
        "{out:#?}"
    );
    let with_agent = finish(with_agent);
    assert!(
        with_agent.stdout.contains("agent run succeeded"),
        "{with_agent:#?}"
    );
    assert_eq!(node.active_generation(), Some(4));
    node.run(&["verify"]).success();
}

#[test]
fn a_lock_whose_holder_was_killed_blocks_no_one() {
    let node = Node::with_generation();
    let started = node.root.join("started");
    slow_parse(&node, &started, 30);
    let mut holder = spawn(&node, &["ingest", s(&tree(&node, "killed", 2))]);
    wait_for(&started);
    holder.kill().unwrap();
    holder.wait().unwrap();
    node.set_config("checks", "cf_promises", "[]");
    // At once, without waiting: the kernel released the lock with the process.
    let out = node.run(&["--lock-timeout", "0", "ingest", s(&tree(&node, "next", 3))]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr
            .contains("recovery: removed a candidate left in staging"),
        "{out:#?}"
    );
    assert_eq!(node.active_generation(), Some(2));
    node.run(&["verify"]).success();
    // The killed ingest's check runs in its own process group and outlived it.
    let _ = Command::new("pkill")
        .args(["-f", &format!("touch {}; sleep 30", s(&started))])
        .status();
}
