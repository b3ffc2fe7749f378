//! Commands at the same time: writers serialize on the store lock and say what they wait
//! for, none corrupts another, readers read while a writer works, and a lock whose holder
//! was killed never blocks anyone.
//!
//! Commands overlap at a [`Gate`]: a check or an agent command that blocks until the test,
//! having seen what it waits for (the other command saying it waits for the lock), lets
//! it go. No sleep decides the order.

mod util;

use util::*;

/// A parse check that holds its command at `gate` (it passes once let go).
fn gated_parse(node: &Node, gate: &Gate) {
    node.set_config(
        "checks",
        "cf_promises",
        &format!(
            r#"["/bin/sh", "-c", {}, "{{tree}}"]"#,
            toml_string(&gate.script())
        ),
    );
}

#[test]
fn two_ingests_at_once_serialize_and_the_newer_serial_wins() {
    let node = Node::with_generation();
    let gate = Gate::new(&node.root, "parse");
    gated_parse(&node, &gate);
    let older = node.serial_tree("older", 2);
    let newer = node.serial_tree("newer", 3);
    let first = Background::spawn(&node, &["ingest", s(&newer)]);
    gate.wait_started(PATIENCE);
    let mut second = Background::spawn(&node, &["--lock-timeout", "60", "ingest", s(&older)]);
    second.wait_for_stderr("waiting for the store lock");
    gate.release();
    let first = first.finish();
    let second = second.finish();
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
    let gate = Gate::new(&node.root, "parse");
    gated_parse(&node, &gate);
    let candidate = node.serial_tree("next", 2);
    let ingest = Background::spawn(&node, &["ingest", s(&candidate)]);
    gate.wait_started(PATIENCE);
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
    let mut gc = Background::spawn(&node, &["--lock-timeout", "60", "gc", "--keep", "1"]);
    gc.wait_for_stderr("waiting for the store lock");
    let mut rollback = Background::spawn(&node, &["--lock-timeout", "60", "rollback", "1"]);
    rollback.wait_for_stderr("waiting for the store lock");
    gate.release();
    assert_eq!(ingest.finish().code, 0);
    let gc = gc.finish();
    let rollback = rollback.finish();
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
    let verify_gate = Gate::new(&node.root, "verify");
    gated_parse(&node, &verify_gate);
    let verify = Background::spawn(&node, &["verify", "--repair"]);
    verify_gate.wait_started(PATIENCE);
    let candidate = node.serial_tree("during-verify", 2);
    let mut ingest = Background::spawn(&node, &["--lock-timeout", "60", "ingest", s(&candidate)]);
    ingest.wait_for_stderr("waiting for the store lock");
    verify_gate.release();
    let out = ingest.finish();
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("(polstore verify --repair, since"),
        "{out:#?}"
    );
    assert_eq!(verify.finish().code, 0);
    // An agent run confirming generation 3 holds the lock too.
    node.set_config("checks", "cf_promises", "[]");
    let agent_gate = Gate::new(&node.root, "agent");
    node.set_config(
        "agent",
        "command",
        &format!(
            r#"["/bin/sh", "-c", {}]"#,
            toml_string(&agent_gate.script())
        ),
    );
    let with_agent = Background::spawn(&node, &["ingest", s(&node.serial_tree("with-agent", 3))]);
    agent_gate.wait_started(PATIENCE);
    node.set_config("agent", "command", "[]");
    let mut after = Background::spawn(
        &node,
        &[
            "--lock-timeout",
            "60",
            "ingest",
            s(&node.serial_tree("after", 4)),
        ],
    );
    after.wait_for_stderr("waiting for the store lock");
    agent_gate.release();
    let out = after.finish();
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("waiting for the store lock"),
        "{out:#?}"
    );
    let with_agent = with_agent.finish();
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
    let gate = Gate::new(&node.root, "parse");
    gated_parse(&node, &gate);
    let holder = Background::spawn(&node, &["ingest", s(&node.serial_tree("killed", 2))]);
    gate.wait_started(PATIENCE);
    holder.kill();
    node.set_config("checks", "cf_promises", "[]");
    // At once, without waiting: the kernel released the lock with the process.
    let out = node.run(&[
        "--lock-timeout",
        "0",
        "ingest",
        s(&node.serial_tree("next", 3)),
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr
            .contains("recovery: removed a candidate left in staging"),
        "{out:#?}"
    );
    assert_eq!(node.active_generation(), Some(2));
    node.run(&["verify"]).success();
    // The killed ingest's check runs in its own process group and outlived it, held at
    // the gate all along: let it end.
    gate.release();
}
