//! The CFEngine integration (`integrations/cfengine/`) against the real thing: a hub
//! running the real cf-serverd on 127.0.0.1, serving the stock masterfiles with a def.json
//! and polstore publications, and a node whose inputs is polstore's view, driven as
//! cf-execd drives it (`cf-agent -f update.cf`, then `cf-agent` on promises.cf) and by
//! cf-execd itself. Hub and node each have their own CFENGINE_TEST_OVERRIDE_WORKDIR and
//! keys. Needs root: cf-serverd gets its port from a private /etc/services (`Site::new`).

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use util::cfengine::{Ran, free_port, run_in_workdir, wait_for_listener};
use util::*;

/// The stock masterfiles Debian's cfengine3 ships: the hub's policy.
const MASTERFILES: &str = "/usr/share/cfengine3/masterfiles";
/// The integration's policy file, as the hub installs it in its masterfiles.
const INTEGRATION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../integrations/cfengine/polstore_update.cf"
);
/// Where the hub installs it, and where def.json's update_inputs names it.
const INTEGRATION_INPUT: &str = "services/polstore_update.cf";
/// How long one cf-agent, cf-execd or cf-key run may take before the test fails.
const AGENT_TIME_MAX: Duration = Duration::from_secs(180);
/// How long cf-serverd may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(60);

/// The policy every publication adds to promises.cf (through def.json): writes
/// `$(sys.workdir)/polstore-probe`, so the test sees which publication the agent ran.
fn probe_policy(version: &str) -> String {
    format!(
        r#"bundle agent polstore_probe
# @brief Writes which publication the agent runs; the test reads it back
{{
  files:
      "$(sys.workdir)/polstore-probe"
        create => "true",
        content => "probe {version}$(const.n)";
}}
"#
    )
}

/// The hub's side of the integration: the access rule that lets def.acl read the
/// publications, loaded through def.json's "inputs".
const HUB_ACCESS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../integrations/cfengine/hub/polstore_access.cf"
);
const HUB_ACCESS_INPUT: &str = "services/polstore_access.cf";

/// One hub and one node under one temporary directory (the node's, `util::Node`).
///
/// - `node.root/hub`: the hub's work directory; its masterfiles are the stock ones plus
///   the integration's policy file, the probe, the access policy and def.json; its
///   publications are in `hub/polstore-published` (`publish`).
/// - `node.root/node`: the node's work directory, whose `inputs` is `node.view`.
/// - `node.public_key` / `node.secret_key`: the hub's polstore signing key pair.
struct Site {
    node: Node,
    hub: PathBuf,
    workdir: PathBuf,
    published: PathBuf,
    port: u16,
    /// cf-serverd, once started.
    server: Option<Child>,
    /// How many commands ran, to name their logs.
    runs: std::cell::Cell<u32>,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Site {
    /// A hub serving publication-free masterfiles (probe `v1`) on a free port, and a node
    /// that trusts it (keys exchanged, policy_server.dat written) with nothing in inputs
    /// but what cf-key leaves there (an empty directory).
    fn new() -> Site {
        let node = Node::new();
        let hub = node.root.join("hub");
        let workdir = node.root.join("node");
        let published = hub.join("polstore-published");
        for dir in [&hub, &workdir] {
            fs::create_dir_all(dir.join("bin")).unwrap();
            for program in ["cf-promises", "cf-agent"] {
                symlink(format!("/usr/bin/{program}"), dir.join("bin").join(program)).unwrap();
            }
        }
        let port = free_port();
        let mut site = Site {
            node,
            hub,
            workdir,
            published,
            port,
            server: None,
            runs: std::cell::Cell::new(0),
        };
        site.cfengine_ok(&site.hub, "/usr/bin/cf-key", &[]);
        site.cfengine_ok(&site.workdir, "/usr/bin/cf-key", &[]);

        // The hub: the stock masterfiles, the integration and def.json, tagged as the
        // hub's own agent tags them; its inputs as its update policy would copy them; and
        // policy_server.dat and am_policy_hub as bootstrapping to itself writes them.
        let masterfiles = site.masterfiles();
        tool("cp", &["-a", MASTERFILES, s(&masterfiles)]);
        fs::copy(INTEGRATION, masterfiles.join(INTEGRATION_INPUT)).unwrap();
        site.write_masterfile("services/polstore_probe.cf", &probe_policy("v1"));
        fs::copy(HUB_ACCESS, masterfiles.join(HUB_ACCESS_INPUT)).unwrap();
        site.write_masterfile("def.json", &site.def_json().to_string());
        site.tag_masterfiles();
        tool(
            "cp",
            &["-a", s(&masterfiles), s(&site.hub.join("inputs.new"))],
        );
        fs::remove_dir_all(site.hub.join("inputs")).unwrap();
        fs::rename(site.hub.join("inputs.new"), site.hub.join("inputs")).unwrap();
        let server_address = format!("127.0.0.1:{port}\n");
        fs::write(site.hub.join("policy_server.dat"), &server_address).unwrap();
        fs::create_dir_all(site.hub.join("state")).unwrap();
        fs::write(site.hub.join("state/am_policy_hub"), "").unwrap();

        // Each trusts the other's key, as `cf-key -t` records it.
        let hub_key = format!("127.0.0.1:{}", s(&site.hub.join("ppkeys/localhost.pub")));
        let node_key = format!(
            "127.0.0.1:{}",
            s(&site.workdir.join("ppkeys/localhost.pub"))
        );
        site.cfengine_ok(&site.workdir, "/usr/bin/cf-key", &["-t", &hub_key]);
        site.cfengine_ok(&site.hub, "/usr/bin/cf-key", &["-t", &node_key]);
        fs::write(site.workdir.join("policy_server.dat"), &server_address).unwrap();

        // CFEngine takes its port from the services database (service `cfengine`). The
        // hub's cf-serverd gets its own /etc/services, bind-mounted in a private mount
        // namespace, so that it listens on a free port and the machine's stays as it is.
        let services = site.node.root.join("services");
        fs::write(&services, format!("cfengine\t{port}/tcp\n")).unwrap();
        let log = File::create(site.node.root.join("cf-serverd.log")).unwrap();
        let server = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/services && exec /usr/bin/cf-serverd --no-fork"#)
            .args(["sh", s(&services)])
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &site.hub)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start unshare");
        site.server = Some(server);
        site.wait_for_server();
        site
    }

    /// def.json, the same on hub and node: the hub's extra inputs, the update hook and
    /// the paths of this site. The classes keep the agent off the network and quick: no
    /// package inventory refresh (apt) and no mail of cf-execd's output.
    fn def_json(&self) -> Value {
        json!({
            "inputs": [HUB_ACCESS_INPUT, "services/polstore_probe.cf"],
            "classes": {
                "disable_inventory_package_refresh": ["any"],
                "cfengine_internal_disable_agent_email": ["any"]
            },
            "vars": {
                "update_inputs": [INTEGRATION_INPUT],
                "mpf_update_policy_bundle": "default:polstore_update",
                "polstore_binary": POLSTORE,
                "polstore_store": s(&self.node.store),
                "polstore_published": s(&self.published),
                "polstore_drop": s(&self.node.drop),
                "control_common_bundlesequence_end": ["polstore_probe"]
            }
        })
    }

    /// Writes cf_promises_validated and cf_promises_release_id into the hub's
    /// masterfiles, as the hub's agent does after validating them.
    fn tag_masterfiles(&self) {
        let masterfiles = self.masterfiles();
        self.cfengine_ok(&self.hub, "/usr/bin/cf-promises", &["-T", s(&masterfiles)]);
    }

    fn masterfiles(&self) -> PathBuf {
        self.hub.join("masterfiles")
    }

    fn write_masterfile(&self, path: &str, content: &str) {
        let file = self.masterfiles().join(path);
        fs::write(&file, content).unwrap();
        set_mode(&file, 0o600);
    }

    /// Publishes the hub's masterfiles as `serial`, as the hub's hook does
    /// (`integrations/cfengine/hub/polstore-publish.service`), with the serial given.
    fn publish(&self, serial: u64) {
        self.node
            .run(&[
                "publish",
                s(&self.masterfiles()),
                "--out",
                s(&self.published),
                "--key",
                s(&self.node.secret_key),
                "--serial",
                &serial.to_string(),
            ])
            .success();
    }

    /// Waits until cf-serverd accepts connections; fails the test if it exits first or
    /// takes longer than SERVER_START_MAX.
    fn wait_for_server(&mut self) {
        let server = self.server.as_mut().expect("cf-serverd was started");
        let log = self.node.root.join("cf-serverd.log");
        wait_for_listener(server, self.port, &log, SERVER_START_MAX);
    }

    /// Runs a CFEngine `program` with `workdir` as its CFENGINE_TEST_OVERRIDE_WORKDIR,
    /// bounded by AGENT_TIME_MAX; its output goes to a log file kept with the site.
    fn cfengine(&self, workdir: &Path, program: &str, args: &[&str]) -> Ran {
        let run = self.runs.get() + 1;
        self.runs.set(run);
        let name = Path::new(program).file_name().unwrap().to_str().unwrap();
        let log_path = self.node.root.join(format!("run-{run:02}-{name}.log"));
        run_in_workdir(workdir, program, args, &log_path, AGENT_TIME_MAX)
    }

    fn cfengine_ok(&self, workdir: &Path, program: &str, args: &[&str]) -> Ran {
        let ran = self.cfengine(workdir, program, args);
        assert_eq!(ran.code, Some(0), "{program} {args:?} failed: {ran:#?}");
        ran
    }

    /// `cf-agent ARGS` on the node.
    fn agent(&self, args: &[&str]) -> Ran {
        self.cfengine_ok(&self.workdir, "/usr/bin/cf-agent", args)
    }

    /// The node becomes an ordinary CFEngine node, with inputs as CFEngine fills it: the
    /// failsafe policy copies the hub's masterfiles and runs update.cf, whose hook finds
    /// no store and runs the stock update.
    fn stock_node(&self) {
        let ran = self.agent(&["-K", "-f", "failsafe.cf"]);
        assert!(
            ran.output
                .contains("Updated local policy from policy server"),
            "{ran:#?}"
        );
        // The hook's polstore branch did not run: it would have copied head.
        assert!(!self.workdir.join("state/polstore-head").exists());
        let inputs = fs::symlink_metadata(&self.node.view).unwrap();
        assert!(inputs.is_dir(), "inputs is not a plain directory");
        assert_eq!(
            fs::read(self.node.view.join(INTEGRATION_INPUT)).unwrap(),
            fs::read(INTEGRATION).unwrap()
        );
        assert!(!self.node.store.exists());
    }

    /// The store's settings for this node: the drop the hook copies into, the agent
    /// command as cf-execd runs the agent, and the test's own (empty) checks directory.
    fn configure_store(&self) {
        let node = &self.node;
        node.set_config("fetch", "drop", &toml_string(s(&node.drop)));
        node.set_config(
            "agent",
            "command",
            r#"["/usr/bin/cf-agent", "-Dfrom_cfexecd,cf_execd_initiated", "-f", "{tree}/promises.cf"]"#,
        );
        node.set_config("checks", "dir", &toml_string(s(&node.checks)));
    }

    /// The one-time migration of a node that already has policies: its inputs adopted.
    fn migrate(&self) {
        self.node
            .run(&[
                "init",
                "--view",
                s(&self.node.view),
                "--trust",
                s(&self.node.public_key),
                "--adopt",
            ])
            .success();
        self.configure_store();
        assert_eq!(self.node.active_generation(), Some(1));
    }

    /// One cycle as cf-execd runs it (with -K, as the test needs no locks): update.cf,
    /// then promises.cf. Returns the update's output. The probe is removed between the
    /// two, so that what it holds afterwards is what promises.cf, read through the view,
    /// wrote.
    fn cycle(&self) -> String {
        let update = self.agent(&["-K", "-f", "update.cf"]);
        let _ = fs::remove_file(self.probe_path());
        self.agent(&["-K"]);
        update.output
    }

    /// Removes the node's lock database, as if the last agent run were long past.
    fn forget_locks(&self) {
        for name in ["cf_lock.lmdb", "cf_lock.lmdb-lock", "cf_lock.lmdb.backup"] {
            let path = self.workdir.join("state").join(name);
            if path.exists() {
                fs::remove_file(path).unwrap();
            }
        }
    }

    fn probe_path(&self) -> PathBuf {
        self.workdir.join("polstore-probe")
    }

    fn probe(&self) -> String {
        fs::read_to_string(self.probe_path()).unwrap_or_else(|error| {
            panic!("the agent wrote no probe: {error}");
        })
    }

    /// `polstore verify`'s exit code and output: 0 when every generation matches its
    /// manifest and the view is polstore's.
    fn verify(&self) -> Out {
        self.node.run(&["verify"])
    }

    /// Asserts that the node runs `generation` (serial `serial`): status, the probe the
    /// last promises.cf run wrote, and a sound store.
    fn assert_runs(&self, generation: u64, serial: u64, probe: &str) {
        let status = self.node.status();
        assert_eq!(status["active"]["generation"], generation, "{status:#}");
        assert_eq!(status["active"]["serial"], serial, "{status:#}");
        assert_eq!(self.probe(), format!("probe {probe}\n"));
        let verify = self.verify();
        assert_eq!(verify.code, 0, "{verify:#?}");
    }

    /// Every byte of every kept generation (trees, manifests, markers).
    fn generations_content(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        tree_content(&self.node.store.join("generations"))
    }
}

/// A node with policies migrates, then follows its hub through cycles: serial 1 and a
/// one-file change are activated (the second by cf-execd itself); a syntax error is
/// refused and an aborting policy rolled back, each time with the node still running the
/// last good publication; a fix is activated again. Then a node whose polstore binary is
/// missing gets no update at all, not the stock one.
#[test]
fn a_node_follows_its_hub_through_publications_refusals_and_rollbacks() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give cf-serverd its port (a private /etc/services)");
        return;
    }
    let site = Site::new();
    site.stock_node();
    site.migrate();

    // Serial 1: the hook copies it into the drop and polstore activates it. (What the
    // stock update left outside inputs goes, to be made again by the hook.)
    fs::remove_file(site.workdir.join("modules/packages/apt_get")).unwrap();
    fs::remove_file(site.workdir.join("bin/cfengine-selected-python")).unwrap();
    site.publish(1);
    let update = site.cycle();
    assert!(update.contains("generation 2 active: serial 1"), "{update}");
    site.assert_runs(2, 1, "v1");
    // What the stock update does besides copying inputs, the hook does too.
    assert!(site.workdir.join("modules/packages/apt_get").is_file());
    assert!(
        fs::symlink_metadata(site.workdir.join("bin/cfengine-selected-python"))
            .is_ok_and(|link| link.file_type().is_symlink())
    );
    let status = site.node.status();
    assert_eq!(status["last_update"]["outcome"], "updated", "{status:#}");
    assert_eq!(
        fs::read_to_string(site.workdir.join("state/polstore-head")).unwrap(),
        "1\n"
    );

    // Nothing new: the hook does not run polstore update (which would record an
    // "unchanged" update).
    site.agent(&["-K", "-f", "update.cf"]);
    assert_eq!(site.node.status()["last_update"], status["last_update"]);

    // Serial 2 changes one file; cf-execd runs its own cycle (no -K). The locks the -K
    // runs above left would hold its update back for update.cf's ifelapsed (1 minute),
    // which cf-execd's schedule (every 5 minutes) never meets: they go.
    site.write_masterfile("services/polstore_probe.cf", &probe_policy("v2"));
    site.publish(2);
    site.forget_locks();
    let _ = fs::remove_file(site.probe_path());
    site.cfengine_ok(&site.workdir, "/usr/bin/cf-execd", &["--once"]);
    site.assert_runs(3, 2, "v2");
    let written = site.node.status()["last_attempt"]["message"].clone();
    assert_eq!(written, "generation 3 (serial 2) activated");
    let changed = site.node.run(&["diff", "2", "3"]).success().stdout;
    assert_eq!(changed, "M services/polstore_probe.cf\n");

    // Serial 3 does not parse: refused, once, and the node runs serial 2.
    let good_probe = probe_policy("v3");
    site.write_masterfile(
        "services/polstore_probe.cf",
        &format!("{good_probe}bundle agent broken {{\n"),
    );
    site.publish(3);
    let generations = site.node.generations();
    let update = site.cycle();
    assert!(
        update.contains("polstore: rejected by the parse check")
            && update.contains("services/polstore_probe.cf")
            && update.contains("generation 3 stays active"),
        "{update}"
    );
    assert!(
        update.contains("polstore: serial 3 was refused"),
        "{update}"
    );
    site.assert_runs(3, 2, "v2");
    let status = site.node.status();
    assert_eq!(status["last_update"]["outcome"], "rejected", "{status:#}");
    assert_eq!(status["serial_max"], 2, "{status:#}");
    assert_eq!(site.node.generations(), generations);
    let attempts = site.node.log().len();
    site.agent(&["-K", "-f", "update.cf"]);
    assert_eq!(
        site.node.log().len(),
        attempts,
        "a refused serial was tried again"
    );
    // Unless the operator asks for it.
    site.agent(&["-K", "-f", "update.cf", "-D", "polstore_fetch_again"]);
    assert_eq!(site.node.log().len(), attempts + 1);
    assert_eq!(site.node.active_generation(), Some(3));

    // Serial 4 parses, but the agent aborts on it: rolled back to serial 2.
    site.write_masterfile("services/polstore_probe.cf", &good_probe);
    let controls = site.masterfiles().join("controls/cf_agent.cf");
    let good_controls = fs::read_to_string(&controls).unwrap();
    let aborting = good_controls.replace(
        r#"abortclasses => { "cfengine_3_3""#,
        r#"abortclasses => { "any", "cfengine_3_3""#,
    );
    assert_ne!(aborting, good_controls);
    site.write_masterfile("controls/cf_agent.cf", &aborting);
    site.publish(4);
    let update = site.cycle();
    assert!(
        update.contains("rejected by the agent run check")
            && update.contains("rolled back to generation 3"),
        "{update}"
    );
    assert!(
        update.contains("polstore: serial 4 was refused"),
        "{update}"
    );
    site.assert_runs(3, 2, "v2");
    let list = site.node.list();
    let failed = list.iter().find(|generation| generation["serial"] == 4);
    assert_eq!(failed.unwrap()["state"], "failed", "{list:#?}");

    // Serial 5 fixes it.
    site.write_masterfile("controls/cf_agent.cf", &good_controls);
    site.publish(5);
    site.cycle();
    site.assert_runs(5, 5, "v3");

    // Serial 6 names a polstore binary the node lacks. The update after it neither
    // updates nor falls back to the stock copy, which would write into the generation:
    // the hub's masterfiles change and are tagged again, so the stock update would copy
    // their new cf_promises_validated into inputs, and then the changed files.
    let mut def = site.def_json();
    let missing = site.node.root.join("no-polstore");
    def["vars"]["polstore_binary"] = json!(s(&missing));
    site.write_masterfile("def.json", &def.to_string());
    site.publish(6);
    site.cycle();
    site.assert_runs(6, 6, "v3");
    site.write_masterfile("services/polstore_probe.cf", &probe_policy("v4"));
    site.tag_masterfiles();
    let update = site.agent(&["-K", "-f", "update.cf"]);
    let expected = format!(
        "polstore: the store {} exists but {} is not executable; no policy update",
        s(&site.node.store),
        s(&missing)
    );
    assert!(update.output.contains(&expected), "{update:#?}");
    site.assert_runs(6, 6, "v3");
}

/// The strict parse check (`cf-promises -c`): a bundlesequence naming a bundle
/// no file defines must be refused, the node staying on serial 1.
#[test]
fn a_bundlesequence_naming_a_missing_bundle_is_refused() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give cf-serverd its port (a private /etc/services)");
        return;
    }
    let site = Site::new();
    site.stock_node();
    site.migrate();
    site.publish(1);
    site.cycle();
    site.assert_runs(2, 1, "v1");

    let mut def = site.def_json();
    def["vars"]["control_common_bundlesequence_end"] =
        json!(["polstore_probe", "polstore_nowhere"]);
    site.write_masterfile("def.json", &def.to_string());
    site.publish(2);
    let update = site.cycle();
    assert!(
        update.contains("polstore: rejected by the parse check")
            && update.contains("polstore: serial 2 was refused"),
        "serial 2 was not refused: {update}"
    );
    site.assert_runs(2, 1, "v1");
}

/// The strict parse check (update.cf checked too): an update.cf that does not
/// parse must be refused; activated, it would leave the node without a working update.
#[test]
fn a_broken_update_cf_is_refused() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give cf-serverd its port (a private /etc/services)");
        return;
    }
    let site = Site::new();
    site.stock_node();
    site.migrate();
    site.publish(1);
    site.cycle();
    site.assert_runs(2, 1, "v1");

    let update_cf = site.masterfiles().join("update.cf");
    let mut broken = fs::read_to_string(&update_cf).unwrap();
    broken.push_str("bundle agent broken {\n");
    site.write_masterfile("update.cf", &broken);
    site.publish(2);
    let update = site.cycle();
    assert!(
        update.contains("polstore: rejected by the parse check")
            && update.contains("update.cf")
            && update.contains("polstore: serial 2 was refused"),
        "serial 2 was not refused: {update}"
    );
    site.assert_runs(2, 1, "v1");
}

/// PENDING the read-only view: the stock update policy (without the hook, with the stock
/// and with a broad input_name_patterns), the failsafe policy and `cf-agent --bootstrap`
/// run on a polstore node while the hub has a newer, unpublished policy; none may change
/// a byte of any generation, and the store stays sound.
#[test]
fn the_stock_update_failsafe_and_bootstrap_change_no_generation() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give cf-serverd its port (a private /etc/services)");
        return;
    }
    let site = Site::new();
    site.stock_node();
    site.migrate();
    site.publish(1);
    site.cycle();
    site.assert_runs(2, 1, "v1");
    // What the hub serves as masterfiles now differs from the node's policy.
    site.write_masterfile("services/polstore_probe.cf", &probe_policy("v2"));
    site.tag_masterfiles();

    // The stock update policy, as the MPF ships it (no def.json, so no hook), and again
    // with every file name matching input_name_patterns.
    let stock = site.node.root.join("stock");
    tool("cp", &["-a", MASTERFILES, s(&stock)]);
    let broad = site.node.root.join("stock-broad");
    tool("cp", &["-a", MASTERFILES, s(&broad)]);
    let patterns = json!({ "vars": { "input_name_patterns": [".*"] } });
    fs::write(broad.join("def.json"), patterns.to_string()).unwrap();
    let bootstrap = format!("127.0.0.1:{}", site.port);
    let stock_update = s(&stock.join("update.cf")).to_string();
    let broad_update = s(&broad.join("update.cf")).to_string();
    let runs: [(&str, Vec<&str>); 4] = [
        ("the stock update.cf", vec!["-K", "-f", &stock_update]),
        (
            "the stock update.cf with input_name_patterns .*",
            vec!["-K", "-f", &broad_update],
        ),
        ("failsafe.cf", vec!["-K", "-f", "failsafe.cf"]),
        ("cf-agent --bootstrap", vec!["--bootstrap", &bootstrap]),
    ];
    let mut changes = Vec::new();
    for (name, args) in runs {
        let before = site.generations_content();
        let ran = site.cfengine(&site.workdir, "/usr/bin/cf-agent", &args);
        let after = site.generations_content();
        let verify = site.verify();
        if before != after || verify.code != 0 {
            let changed: BTreeSet<&String> = before
                .keys()
                .chain(after.keys())
                .filter(|path| before.get(*path) != after.get(*path))
                .collect();
            changes.push(format!(
                "{name} (exit {:?}) changed {} paths, first {:?}; verify exit {}: {}",
                ran.code,
                changed.len(),
                changed.iter().take(3).collect::<Vec<_>>(),
                verify.code,
                verify.stderr.trim_end()
            ));
            // Put the store right, so that the next run is judged on its own.
            site.node.run(&["verify", "--repair"]);
        }
        assert_eq!(site.node.active_generation(), Some(2), "after {name}");
    }
    assert!(
        changes.is_empty(),
        "stock CFEngine paths wrote into polstore's generations:\n{}",
        changes.join("\n")
    );
}

/// `init` on an empty inputs: a fresh node, whose inputs is the empty directory
/// cf-key leaves, takes its first publication by running the integration's policy file
/// on its own, then follows the hub.
#[test]
fn a_fresh_node_with_an_empty_inputs_takes_its_first_publication() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give cf-serverd its port (a private /etc/services)");
        return;
    }
    let site = Site::new();
    assert_eq!(fs::read_dir(&site.node.view).unwrap().count(), 0);
    fresh_node_first_publication(&site);
}

/// PENDING a first activation over the empty inputs any CFEngine run makes: a fresh node
/// whose inputs is missing takes its first publication by running the integration's
/// policy file on its own (which, as every cf-agent run does, makes an empty inputs
/// again), then follows the hub.
#[test]
fn a_fresh_node_without_inputs_takes_its_first_publication() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give cf-serverd its port (a private /etc/services)");
        return;
    }
    let site = Site::new();
    fs::remove_dir(&site.node.view).unwrap();
    fresh_node_first_publication(&site);
}

/// `polstore init` (nothing to adopt), then the first update from the integration's
/// policy file run on its own with the site's def.json beside it, then one cycle.
fn fresh_node_first_publication(site: &Site) {
    site.publish(1);
    let init = site.node.run(&[
        "init",
        "--view",
        s(&site.node.view),
        "--trust",
        s(&site.node.public_key),
    ]);
    assert_eq!(init.code, 0, "init refused: {}", init.stderr);
    site.configure_store();

    let first = site.node.root.join("first-update");
    fs::create_dir(&first).unwrap();
    fs::copy(INTEGRATION, first.join("polstore_update.cf")).unwrap();
    fs::write(first.join("def.json"), site.def_json().to_string()).unwrap();
    let ran = site.agent(&["-K", "-f", s(&first.join("polstore_update.cf"))]);
    assert!(
        ran.output.contains("generation 1 active: serial 1"),
        "the first update did not activate serial 1: {}",
        ran.output
    );
    let status = site.node.status();
    assert_eq!(status["active"]["generation"], 1, "{status:#}");
    let verify = site.verify();
    assert_eq!(verify.code, 0, "{verify:#?}");

    site.cycle();
    site.assert_runs(1, 1, "v1");
}
