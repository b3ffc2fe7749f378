//! The Rudder integration (`integrations/rudder/`) in CFEngine-protocol mode, against the
//! real thing: a server whose share directory is laid out as Rudder's (each node's rules
//! archive, the shared library archive) and signed by `polstore-rudder-sign`, served by a
//! real cf-serverd on 127.0.0.1 that admits the node's key to its share directory; and a
//! node whose store is made from `integrations/rudder/node/polstore.toml`, with two views
//! (inputs and ncf), updated through the shipped `agent-update` (cf-net, through
//! `polstore-rudder-fetch`) and repaired through `agent-reset`. Server and node each have
//! their own CFENGINE_TEST_OVERRIDE_WORKDIR and keys. The server's tree and its policies
//! are `rudder_server`'s (shared with `rudder_https.rs`): `promises.cf` loads the library
//! by the ncf view's absolute path, as Rudder's does.
//! Needs root: the views read a read-only bind mount.

mod rudder_server;
mod util;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rudder_server::{NODE_ID as UUID, Server};
use util::cfengine::{Ran, free_port, run_in_workdir, wait_for_listener};
use util::*;

/// Why these tests skip when not run as root.
const NEEDS_ROOT: &str = "needs root (the views read a read-only bind mount; cf-serverd)";

const INTEGRATION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../integrations/rudder");
/// How long one CFEngine or integration command may take before the test fails.
const COMMAND_TIME_MAX: Duration = Duration::from_secs(120);
/// How long cf-serverd may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(60);
/// The files of a version in the drop (and on the server).
const VERSION_FILES: [&str; 4] = [
    "polstore.manifest",
    "polstore.manifest.sig",
    "rudder.tar.bz2",
    "policies-library-linux.tar.bz2",
];

/// A Rudder server and one node under one temporary directory (the node's,
/// `util::Node`).
///
/// - `root/rudder-server`: the server's tree (`rudder_server::Server`), its share
///   directory (`/var/rudder/share`) and signing keys;
/// - `root/server`: cf-serverd's work directory, with the test's server policy;
/// - `root/node`: the node's CFEngine work directory, whose `inputs` is the view
///   `inputs`; `root/ncf` is the view `ncf` (`/var/rudder/ncf`);
/// - `root/rudder-state`: polstore-rudder-fetch's state; `root/drop` polstore's drop.
struct Site {
    node: Node,
    rudder: Server,
    server: PathBuf,
    share: PathBuf,
    workdir: PathBuf,
    ncf: PathBuf,
    state: PathBuf,
    fetch_conf: PathBuf,
    port: u16,
    serverd: Option<Child>,
    runs: std::cell::Cell<u32>,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(server) = &mut self.serverd {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// The node's rule, version `version`: writes `rudder-probe` in the agent's work
/// directory, naming its own version and the library's, so that the test sees that the
/// agent ran on both views of one generation.
fn rule(version: &str) -> String {
    format!(
        r#"bundle agent polstore_rule
{{
  files:
      "$(sys.workdir)/rudder-probe"
        create => "true",
        content => "rule {version} library $(polstore_library.version)$(const.n)";
}}
"#
    )
}

/// The library, version `version`: the bundle promises.cf runs first.
fn library(version: &str) -> String {
    format!(
        "bundle agent polstore_library\n{{\n  vars:\n      \"version\" string => \"{version}\";\n}}\n"
    )
}

/// A policy file of the test's own, copying from cf-serverd into inputs as Rudder's
/// CFEngine-protocol update does (`purge`, `move_obstructions`): with `recursive`, the
/// server's rules directory into inputs, else one file of it.
fn stock_copy_policy(server_rules: &Path, inputs: &Path, port: u16, recursive: bool) -> String {
    let (promiser, source, depth) = if recursive {
        (
            format!("{}/", s(inputs)),
            s(server_rules).to_string(),
            "depth_search => all,",
        )
    } else {
        (
            format!("{}/rules/rule.cf", s(inputs)),
            format!("{}/rules/rule.cf", s(server_rules)),
            "",
        )
    };
    format!(
        r#"body common control
{{
  bundlesequence => {{ "copy_rules" }};
}}
bundle agent copy_rules
{{
  files:
      "{promiser}"
        copy_from => from_server("{source}"),
        {depth}
        move_obstructions => "true";
}}
body copy_from from_server(path)
{{
  servers => {{ "127.0.0.1" }};
  portnumber => "{port}";
  source => "$(path)";
  compare => "digest";
  purge => "true";
}}
body depth_search all
{{
  depth => "inf";
}}
"#
    )
}

impl Site {
    /// A server with keys, its policy and a running cf-serverd, and a fresh node: keys,
    /// both keys trusted each way (as bootstrapping and accepting the node do), no inputs
    /// and no ncf, a store made from the shipped polstore.toml, and rudder-fetch.conf.
    fn new() -> Site {
        let node = Node::new();
        let root = node.root.clone();
        let port = free_port();
        let ncf = root.join("ncf");
        let rudder = Server::new(&root.join("rudder-server"), UUID, &ncf, POLSTORE);
        let mut site = Site {
            server: root.join("server"),
            share: rudder.share.clone(),
            rudder,
            workdir: root.join("node"),
            ncf,
            state: root.join("rudder-state"),
            fetch_conf: root.join("rudder-fetch.conf"),
            node,
            port,
            serverd: None,
            runs: std::cell::Cell::new(0),
        };
        for dir in [&site.server, &site.workdir] {
            fs::create_dir_all(dir.join("bin")).unwrap();
            for program in ["cf-promises", "cf-agent"] {
                symlink(format!("/usr/bin/{program}"), dir.join("bin").join(program)).unwrap();
            }
            site.cfengine_ok(dir, "/usr/bin/cf-key", &[]);
        }
        let server_key = format!("127.0.0.1:{}", s(&site.server.join("ppkeys/localhost.pub")));
        let node_key = format!(
            "127.0.0.1:{}",
            s(&site.workdir.join("ppkeys/localhost.pub"))
        );
        site.cfengine_ok(&site.workdir, "/usr/bin/cf-key", &["-t", &server_key]);
        site.cfengine_ok(&site.server, "/usr/bin/cf-key", &["-t", &node_key]);
        site.write_server_policy();
        site.start_server();
        // A fresh node: every CFEngine run made an empty inputs, which goes too.
        fs::remove_dir(&site.node.view).unwrap();
        site.init_store();
        site.write_fetch_conf(&[]);
        site
    }

    /// The server's policy: cf-serverd on the site's port, admitting the node's key to
    /// the node's share directory, as Rudder's cf-serverd does.
    fn write_server_policy(&self) {
        let node_key = self
            .cfengine_ok(
                &self.workdir,
                "/usr/bin/cf-key",
                &["-p", s(&self.workdir.join("ppkeys/localhost.pub"))],
            )
            .output
            .trim()
            .to_string();
        let policy = format!(
            r#"body common control
{{
  bundlesequence => {{ "main" }};
}}
body server control
{{
  port => "{port}";
  allowconnects => {{ "127.0.0.1" }};
  allowallconnects => {{ "127.0.0.1" }};
  allowusers => {{ "root" }};
}}
bundle agent main
{{
}}
bundle server access_rules
{{
  access:
      "{share}/{UUID}/"
        admit_keys => {{ "{node_key}" }};
}}
"#,
            port = self.port,
            share = s(&self.share),
        );
        fs::create_dir_all(self.server.join("inputs")).unwrap();
        fs::write(self.server.join("inputs/promises.cf"), policy).unwrap();
    }

    fn start_server(&mut self) {
        let log_path = self.node.root.join("cf-serverd.log");
        let log = File::create(&log_path).unwrap();
        let mut server = Command::new("/usr/bin/cf-serverd")
            .arg("--no-fork")
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &self.server)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start cf-serverd");
        wait_for_listener(&mut server, self.port, &log_path, SERVER_START_MAX);
        self.serverd = Some(server);
    }

    /// `polstore init --config` with the shipped node configuration, its paths those of
    /// this site, and the test's own (empty) checks directory.
    fn init_store(&self) {
        let shipped = fs::read_to_string(format!("{INTEGRATION}/node/polstore.toml")).unwrap();
        let fetch = format!("{INTEGRATION}/node/polstore-rudder-fetch");
        let fetch = fs::canonicalize(fetch).unwrap();
        let config = shipped
            .replace("/var/rudder/cfengine-community/inputs", s(&self.node.view))
            .replace("\"/var/rudder/ncf\"", &toml_string(s(&self.ncf)))
            .replace(
                "/etc/polstore/rudder-server.pub",
                s(&self.rudder.public_key),
            )
            .replace("/usr/local/bin/polstore-rudder-fetch", s(&fetch))
            .replace("/var/lib/polstore-rudder/drop", s(&self.node.drop))
            .replace(
                r#"bin_dirs = ["/opt/rudder/bin"]"#,
                r#"bin_dirs = ["/usr/bin"]"#,
            );
        for rudder_path in ["/var/rudder", "/opt/rudder", "/etc/polstore", "/usr/local"] {
            let setting = config
                .lines()
                .find(|line| !line.trim_start().starts_with('#') && line.contains(rudder_path));
            assert_eq!(setting, None, "a path of the shipped configuration is left");
        }
        let path = self.node.root.join("polstore.toml");
        fs::write(&path, config).unwrap();
        self.node.run(&["init", "--config", s(&path)]).success();
        self.node
            .set_config("checks", "dir", &toml_string(s(&self.node.checks)));
    }

    /// rudder-fetch.conf: the CFEngine protocol to this site's cf-serverd, with `extra`
    /// lines replacing the settings they name.
    fn write_fetch_conf(&self, extra: &[(&str, &str)]) {
        let port = self.port.to_string();
        let mut settings: BTreeMap<&str, &str> = BTreeMap::from([
            ("RUDDER_PROTOCOL", "cfengine"),
            ("RUDDER_SERVER", "127.0.0.1"),
            ("RUDDER_CFENGINE_PORT", port.as_str()),
            ("RUDDER_UUID", UUID),
            ("RUDDER_SHARE_REMOTE", s(&self.share)),
            ("CF_NET", "/usr/bin/cf-net"),
            ("POLSTORE_RUDDER_STATE", s(&self.state)),
        ]);
        settings.extend(extra.iter().copied());
        let text: String = settings
            .iter()
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect();
        fs::write(&self.fetch_conf, format!("# the test's site\n{text}")).unwrap();
    }

    /// Runs a CFEngine `program` in `workdir`, bounded, its output logged with the site.
    fn cfengine(&self, workdir: &Path, program: &str, args: &[&str]) -> Ran {
        let run = self.runs.get() + 1;
        self.runs.set(run);
        let name = Path::new(program).file_name().unwrap().to_str().unwrap();
        let log = self.node.root.join(format!("run-{run:02}-{name}.log"));
        run_in_workdir(workdir, program, args, &log, COMMAND_TIME_MAX)
    }

    fn cfengine_ok(&self, workdir: &Path, program: &str, args: &[&str]) -> Ran {
        let ran = self.cfengine(workdir, program, args);
        assert_eq!(ran.code, Some(0), "{program} {args:?} failed: {ran:#?}");
        ran
    }

    /// A policy generation on the server for the node, with rule and library versions
    /// (`rudder_server`: the rules and their archive, the library archive when it
    /// changed, the shipped hook). Returns the serial it published, or `None` when the
    /// hook found nothing new.
    fn generate(&self, rule_version: &str, library_version: &str) -> Option<u64> {
        self.generate_texts(&rule(rule_version), &library(library_version))
    }

    fn generate_texts(&self, rule_text: &str, library_text: &str) -> Option<u64> {
        let ran = self.rudder.generate(rule_text, library_text);
        assert_eq!(ran.code, 0, "the hook failed: {ran:#?}");
        let published = format!("polstore-rudder-sign: {UUID}: serial ");
        ran.stdout
            .lines()
            .find_map(|line| line.strip_prefix(&published)?.strip_suffix(" published"))
            .map(|serial| serial.parse().unwrap())
    }

    /// Runs one of the integration's node commands (`agent-update`, `agent-reset`) as
    /// Rudder runs them, on this site: the built polstore, the site's store, fetch
    /// settings and CFEngine work directory.
    fn rudder_command(&self, command: &str, args: &[&str]) -> Out {
        let mut child = Command::new(format!("{INTEGRATION}/node/{command}"))
            .args(args)
            .env("POLSTORE", POLSTORE)
            .env("POLSTORE_STORE", &self.node.store)
            .env("POLSTORE_RUDDER_FETCH_CONF", &self.fetch_conf)
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &self.workdir)
            .env("RUDDER_WORKDIR", &self.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {command}: {error}"));
        // Bounded: a hung cf-net or agent fails the test instead of hanging it.
        let deadline = std::time::Instant::now() + COMMAND_TIME_MAX;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                panic!("{command} {args:?} ran longer than {COMMAND_TIME_MAX:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        Out {
            code: output.status.code().expect("killed by a signal"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn update(&self, args: &[&str]) -> Out {
        self.rudder_command("agent-update", args)
    }

    fn update_ok(&self, args: &[&str]) -> Out {
        let update = self.update(args);
        assert_eq!(update.code, 0, "agent-update {args:?}: {update:#?}");
        update
    }

    /// What the agent's confirming run on the active generation wrote.
    fn probe(&self) -> String {
        fs::read_to_string(self.workdir.join("rudder-probe")).unwrap_or_default()
    }

    /// Asserts that generation `generation` (serial `serial`) is active and both views
    /// show it: rules `rules_version` in inputs, library `library_version` in ncf.
    fn assert_active(
        &self,
        generation: u64,
        serial: u64,
        rules_version: &str,
        library_version: &str,
    ) {
        let status = self.node.status();
        assert_eq!(status["active"]["generation"], generation, "{status:#}");
        assert_eq!(status["active"]["serial"], serial, "{status:#}");
        let store = &self.node.store;
        assert_eq!(
            viewed_generation(store, &self.node.view, Some("inputs")),
            Some(generation)
        );
        assert_eq!(
            viewed_generation(store, &self.ncf, Some("ncf")),
            Some(generation)
        );
        let contents = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
            tree_content(dir)
                .into_iter()
                .map(|(path, (_, bytes))| (path, bytes))
                .collect()
        };
        let inputs = contents(&self.node.view);
        let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
        assert_eq!(names, ["failsafe.cf", "promises.cf", "rules/rule.cf"]);
        assert_eq!(inputs["rules/rule.cf"], rule(rules_version).into_bytes());
        let ncf = contents(&self.ncf);
        let names: Vec<&str> = ncf.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["common/lib.cf", "common/ncf_hash_file", "local/local.cf"]
        );
        assert_eq!(ncf["common/lib.cf"], library(library_version).into_bytes());
        let verify = self.node.run(&["verify"]);
        assert_eq!(verify.code, 0, "{verify:#?}");
    }

    /// The drop's version files with their inode and modification time.
    fn drop_stamps(&self) -> Vec<(u64, i64, i64)> {
        VERSION_FILES
            .iter()
            .map(|name| {
                let metadata = fs::metadata(self.node.drop.join(name)).unwrap();
                (metadata.ino(), metadata.mtime(), metadata.mtime_nsec())
            })
            .collect()
    }
}

/// A fresh node takes its first version, then follows its server: a rule change, a
/// library change (both views switch together), a broken rule and a broken library
/// refused with the node on the last good version, an unchanged policy that costs only
/// the head, `agent-update -f`, and `agent-reset` repairing a damaged generation.
#[test]
fn a_node_follows_its_rudder_server_over_the_cfengine_protocol() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let site = Site::new();
    assert!(!site.node.view.exists() && !site.ncf.exists());

    // The first version: both views appear.
    let serial_1 = site.generate("R1", "L1").unwrap();
    let update = site.update_ok(&[]);
    assert_eq!(
        update.stdout,
        format!(
            "generation 1 active: serial {serial_1}, 6 files (6 written, 0 reused), agent run succeeded\n"
        )
    );
    site.assert_active(1, serial_1, "R1", "L1");
    assert_eq!(site.probe(), "rule R1 library L1\n");

    // One rule changes.
    let serial_2 = site.generate("R2", "L1").unwrap();
    let update = site.update_ok(&[]);
    assert_eq!(
        update.stdout,
        format!(
            "generation 2 active: serial {serial_2}, 6 files (1 written, 5 reused), agent run succeeded\n"
        )
    );
    site.assert_active(2, serial_2, "R2", "L1");
    assert_eq!(site.probe(), "rule R2 library L1\n");
    let diff = site.node.run(&["diff", "1", "2"]).success().stdout;
    assert_eq!(diff, "M inputs/rules/rule.cf\n");

    // The library changes, and the rules with it: both switch in one step.
    let serial_3 = site.generate("R3", "L2").unwrap();
    let update = site.update(&["-q"]);
    assert_eq!(update.code, 0, "{update:#?}");
    assert_eq!(update.stdout, "", "-q");
    site.assert_active(3, serial_3, "R3", "L2");
    assert_eq!(site.probe(), "rule R3 library L2\n");

    // A rule that does not parse: refused, the node stays on serial 3.
    site.generate_texts(rudder_server::BROKEN_RULE, &library("L2"))
        .unwrap();
    let update = site.update(&[]);
    assert_eq!(update.code, 3, "{update:#?}");
    assert!(
        update
            .stderr
            .contains("polstore: rejected by the parse check: inputs/promises.cf")
            && update.stderr.contains("generation 3 stays active"),
        "{update:#?}"
    );
    site.assert_active(3, serial_3, "R3", "L2");
    assert_eq!(site.node.status()["serial_max"], serial_3);

    // A library that does not parse, the rules unchanged: refused too, because the parse
    // check sees the candidate's library at the ncf view's path.
    site.generate_texts(&rule("R3"), rudder_server::BROKEN_LIBRARY)
        .unwrap();
    let update = site.update(&[]);
    assert_eq!(update.code, 3, "{update:#?}");
    assert!(
        update
            .stderr
            .contains("polstore: rejected by the parse check: inputs/promises.cf")
            && update
                .stderr
                .contains(&format!("{}/common/lib.cf", s(&site.ncf)))
            && update.stderr.contains("generation 3 stays active"),
        "{update:#?}"
    );
    site.assert_active(3, serial_3, "R3", "L2");
    // The next run gets only the head, and says again that this serial was refused.
    let stamps = site.drop_stamps();
    let again = site.update(&[]);
    assert_eq!(again.code, 3, "{again:#?}");
    assert_eq!(again.stderr, update.stderr);
    assert_eq!(site.drop_stamps(), stamps, "the drop was rewritten");
    site.assert_active(3, serial_3, "R3", "L2");

    // Fixed: rules and library together.
    let serial_6 = site.generate("R6", "L3").unwrap();
    let update = site.update(&[]);
    assert_eq!(update.code, 0, "{update:#?}");
    site.assert_active(4, serial_6, "R6", "L3");
    assert_eq!(site.probe(), "rule R6 library L3\n");

    // Nothing new on the server: only the head travels, the drop is not rewritten, and
    // no generation is made.
    assert_eq!(site.generate("R6", "L3"), None);
    let stamps = site.drop_stamps();
    let attempts = site.node.log().len();
    let update = site.update_ok(&[]);
    assert_eq!(
        update.stdout,
        format!("unchanged: the drop holds serial {serial_6}, generation 4\n")
    );
    assert_eq!(site.drop_stamps(), stamps, "the drop was rewritten");
    assert_eq!(site.node.log().len(), attempts);
    assert_eq!(site.node.status()["last_update"]["outcome"], "unchanged");
    site.assert_active(4, serial_6, "R6", "L3");

    // -f: everything fetched again and verified; still generation 4.
    let update = site.update_ok(&["-f"]);
    assert!(
        update.stdout.ends_with("sound; generation 4 is active\n"),
        "{update:#?}"
    );
    assert_ne!(site.drop_stamps(), stamps, "-f fetched nothing again");
    site.assert_active(4, serial_6, "R6", "L3");

    // A generation damaged on disk: agent-reset (verify --repair) puts it right.
    let damaged = site.node.generation_tree(4).join("ncf/common/lib.cf");
    fs::write(&damaged, "bundle common rotten {\n").unwrap();
    assert_eq!(site.node.run(&["verify"]).code, 4);
    let reset = site.rudder_command("agent-reset", &[]);
    assert_eq!(reset.code, 0, "{reset:#?}");
    assert!(reset.stdout.contains("REPAIRED"), "{reset:#?}");
    site.assert_active(4, serial_6, "R6", "L3");
}

/// Rudder's own CFEngine-protocol update copies the server's rules into inputs, with
/// move_obstructions. Run on a polstore node (policies of the test's own, copying from
/// the same cf-serverd): a file copied into the view is refused by the read-only mount;
/// a copy of the whole directory moves the view aside and fills a new directory in its
/// place. Neither changes a generation; `verify` names the second and `agent-reset`
/// puts the view back.
#[test]
fn a_stock_style_copy_into_inputs_changes_no_generation() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let site = Site::new();
    let serial = site.generate("R1", "L1").unwrap();
    site.update_ok(&[]);
    site.assert_active(1, serial, "R1", "L1");
    // The server has newer rules than the node runs.
    site.generate("R2", "L1").unwrap();
    let server_rules = site.share.join(UUID).join("rules/cfengine-community");
    let generations = || tree_content(&site.node.store.join("generations"));
    let before = generations();
    let copy = |recursive: bool| {
        let policy = site.node.root.join(format!("stock-copy-{recursive}.cf"));
        let text = stock_copy_policy(&server_rules, &site.node.view, site.port, recursive);
        fs::write(&policy, text).unwrap();
        site.cfengine(
            &site.workdir,
            "/usr/bin/cf-agent",
            &["-K", "-f", s(&policy)],
        )
    };

    // One file: the write through the view fails.
    let ran = copy(false);
    assert!(
        ran.output.contains("Read-only file system"),
        "the copy was not refused: {ran:#?}"
    );
    assert_eq!(generations(), before, "the copy wrote into a generation");
    site.assert_active(1, serial, "R1", "L1");

    // The whole directory: the view is moved aside and a plain directory, the server's
    // unverified rules, takes its place. No generation changes.
    let ran = copy(true);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(generations(), before, "the copy wrote into a generation");
    assert_eq!(site.node.active_generation(), Some(1));
    let moved = site.workdir.join("inputs.cf-moved");
    assert!(fs::symlink_metadata(&moved).unwrap().is_symlink());
    assert!(fs::symlink_metadata(&site.node.view).unwrap().is_dir());
    assert_eq!(
        fs::read_to_string(site.node.view.join("rules/rule.cf")).unwrap(),
        rule("R2")
    );
    let verify = site.node.run(&["verify"]);
    assert_eq!(verify.code, 4, "{verify:#?}");
    assert!(
        verify.stderr.contains(&format!(
            "{} is there: CFEngine's move_obstructions moved the view aside",
            s(&moved)
        )),
        "{verify:#?}"
    );
    let reset = site.rudder_command("agent-reset", &[]);
    assert_eq!(reset.code, 0, "{reset:#?}");
    assert!(
        reset.stdout.contains("REPAIRED put the view symlink back"),
        "{reset:#?}"
    );
    site.assert_active(1, serial, "R1", "L1");
}

/// What polstore-rudder-fetch says when cf-net gets nothing: the server's share path
/// wrong (or not admitted), and no cf-serverd at the port. The update fails (exit 1)
/// with the script's one line, and the node stays as it was.
#[test]
fn cf_net_failures_are_named_and_change_nothing() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let site = Site::new();
    let serial = site.generate("R1", "L1").unwrap();
    site.update_ok(&[]);
    site.assert_active(1, serial, "R1", "L1");
    site.generate("R2", "L1").unwrap();

    let elsewhere = site.node.root.join("elsewhere");
    site.write_fetch_conf(&[("RUDDER_SHARE_REMOTE", s(&elsewhere))]);
    let update = site.update(&[]);
    assert_eq!(update.code, 1, "{update:#?}");
    let head = format!("{}/{UUID}/polstore/head", s(&elsewhere));
    let expected = format!(
        "polstore-rudder-fetch: cannot get {head} from cf-serverd at 127.0.0.1:{}: missing there, or this node is not admitted to it: Could not stat: '{head}'",
        site.port
    );
    assert!(update.stderr.contains(&expected), "{update:#?}");
    site.assert_active(1, serial, "R1", "L1");

    let closed = free_port();
    site.write_fetch_conf(&[("RUDDER_CFENGINE_PORT", &closed.to_string())]);
    let update = site.update(&[]);
    assert_eq!(update.code, 1, "{update:#?}");
    let expected = format!(
        "polstore-rudder-fetch: cannot get {}/{UUID}/polstore/head: no connection to cf-serverd at 127.0.0.1:{closed}",
        s(&site.share)
    );
    assert!(update.stderr.contains(&expected), "{update:#?}");
    site.assert_active(1, serial, "R1", "L1");
}
