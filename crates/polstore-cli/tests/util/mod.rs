//! Shared fixtures: a `Node` (temp dir with a store, a view, a signify key pair and a drop
//! directory), policy-tree and manifest helpers, and runners for the real `polstore` binary.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cfengine;
pub mod nginx;
pub mod repo;
pub mod server;

/// The path of the binary under test.
pub const POLSTORE: &str = env!("CARGO_BIN_EXE_polstore");

/// A minimal policy that cf-promises accepts.
pub const POLICY: &str = r#"body common control
{
  bundlesequence => { "main" };
}
bundle agent main
{
  reports:
    "hello";
}
"#;

/// A policy that cf-promises accepts and that makes cf-agent create the file named by
/// the POLSTORE_MARKER environment variable.
pub const MARKER_POLICY: &str = r#"body common control
{
  bundlesequence => { "main" };
}
bundle agent main
{
  vars:
    "marker" string => getenv("POLSTORE_MARKER", 4096);
  files:
    "$(marker)" create => "true";
}
"#;

/// A minimal `update.cf` that cf-promises accepts.
pub const UPDATE_POLICY: &str = r#"body common control
{
  bundlesequence => { "update" };
}
bundle agent update
{
  reports:
    "updating";
}
"#;

/// A policy whose bundlesequence names a bundle it does not define: `cf-promises -f`
/// accepts it, `cf-promises -c` (the agent's own validation) does not.
pub const MISSING_BUNDLE_POLICY: &str = r#"body common control
{
  bundlesequence => { "main", "nowhere" };
}
bundle agent main
{
  reports:
    "hello";
}
"#;

/// What `cf-promises -c` says of [`MISSING_BUNDLE_POLICY`].
pub const MISSING_BUNDLE_ERROR: &str =
    "error: Bundle 'nowhere' listed in the bundlesequence is not a defined bundle";

/// A policy that parses, but on which cf-agent aborts (exit status 6).
pub const ABORTING_POLICY: &str = r#"body common control
{
  bundlesequence => { "main" };
}
body agent control
{
  abortclasses => { "polstore_test_abort" };
}
bundle agent main
{
  classes:
    "polstore_test_abort" expression => "any";
  reports:
    "hello";
}
"#;

/// How a `polstore` run ended.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics with the whole output unless the command exited 0.
    pub fn success(self) -> Out {
        assert_eq!(self.code, 0, "polstore failed: {self:#?}");
        self
    }

    /// How a finished `polstore` ended, its standard error read apart (or not at all).
    fn of(output: Output, stderr: Option<String>) -> Out {
        Out {
            code: output
                .status
                .code()
                .expect("polstore was killed by a signal"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: stderr.unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    }
}

/// Turns a path into an argument; every temp path in these tests is UTF-8.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Runs `program` with `args`, failing the test if it cannot start or exits non-zero.
pub fn tool<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the polstore binary with `store` in POLSTORE_STORE, extra environment and an
/// optional standard input.
pub fn run_polstore<S: AsRef<OsStr>>(
    store: &Path,
    args: &[S],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Out {
    let mut command = polstore_command(store, args);
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("cannot start polstore");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // polstore may refuse before reading everything; a broken pipe is its answer.
        let _ = pipe.write_all(input);
    }
    let output = child.wait_with_output().expect("cannot wait for polstore");
    Out::of(output, None)
}

/// `polstore ARGS` on the store at `store` (POLSTORE_STORE), to be set up further and run.
pub fn polstore_command<S: AsRef<OsStr>>(store: &Path, args: &[S]) -> Command {
    let mut command = Command::new(POLSTORE);
    command.args(args).env("POLSTORE_STORE", store);
    command
}

/// How long a test waits for another process to reach a point before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A step of another process that blocks until the test lets it go, so that commands
/// overlap for exactly as long as the test needs, whatever the machine's speed.
///
/// [`Gate::script`] is a shell script for a check or an agent command: it creates the
/// gate's `started` marker, then reads the gate's FIFO to its end. The test holds the
/// FIFO's only writer, so the script blocks until [`Gate::release`] closes it; the FIFO
/// is then replaced by an empty file, so that the script, run again later, passes at
/// once. A gate dropped without being released (a failing test) lets go the same way.
pub struct Gate {
    name: String,
    started: PathBuf,
    fifo: PathBuf,
    /// Opened read and write, which does not wait for a reader; close-on-exec, like every
    /// file std opens, so no process the tests start holds it open.
    writer: Option<File>,
}

impl Gate {
    /// A closed gate in `dir`: `dir/NAME.started` and the FIFO `dir/NAME.gate`.
    pub fn new(dir: &Path, name: &str) -> Gate {
        let fifo = dir.join(format!("{name}.gate"));
        tool("mkfifo", &[&fifo]);
        let writer = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", fifo.display()));
        Gate {
            name: name.to_string(),
            started: dir.join(format!("{name}.started")),
            fifo,
            writer: Some(writer),
        }
    }

    /// The script: `touch STARTED; cat FIFO > /dev/null` (exits 0 once let go).
    pub fn script(&self) -> String {
        format!(
            "touch {}; cat {} > /dev/null",
            s(&self.started),
            s(&self.fifo)
        )
    }

    /// Waits until the script has started (polling for its marker), failing the test
    /// after `within`.
    pub fn wait_started(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.started.exists() {
            assert!(
                Instant::now() < deadline,
                "the {} step never started: {} never appeared",
                self.name,
                self.started.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets every script at the gate, now or later, go on.
    pub fn release(mut self) {
        self.open().expect("cannot open the gate");
    }

    fn open(&mut self) -> std::io::Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        // A script that comes later opens the empty file; one that opened the FIFO
        // before reads its end once the writer is closed.
        let replacement = self.fifo.with_extension("open");
        let replaced =
            fs::write(&replacement, "").and_then(|()| fs::rename(&replacement, &self.fifo));
        drop(writer);
        replaced
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.open();
    }
}

/// A `polstore` command running in the background, whose standard error the test reads
/// as it comes, to wait for a message.
pub struct Background {
    child: Child,
    /// Standard error, line by line, from a thread that reads it to its end.
    lines: Receiver<String>,
    stderr: String,
}

impl Background {
    /// Starts `polstore ARGS` on `node`'s store.
    pub fn spawn(node: &Node, args: &[&str]) -> Background {
        let mut child = node
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start polstore");
        let mut pipe = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|read| read > 0) {
                if sender.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            stderr: String::new(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line of standard error contains `fragment`; fails the test if the
    /// command ends first, or after [`PATIENCE`].
    pub fn wait_for_stderr(&mut self, fragment: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.stderr.lines().any(|line| line.contains(fragment)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stderr.push_str(&line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "polstore printed no {fragment:?} in {PATIENCE:?}; standard error: {:?}",
                    self.stderr
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "polstore closed its standard error without {fragment:?}: {:?}",
                    self.stderr
                ),
            }
        }
    }

    /// Waits for the command to end.
    pub fn finish(mut self) -> Out {
        let output = self
            .child
            .wait_with_output()
            .expect("cannot wait for polstore");
        self.stderr.extend(self.lines.iter());
        Out::of(output, Some(self.stderr))
    }

    /// Kills the command (SIGKILL) and waits for it to die.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Writes `files` (path, content) under `dir` with mode 0644, creating directories.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let full = dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        set_mode(&full, 0o644);
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every regular file under `dir` (symlinks at the top followed), by relative path, with
/// its permission bits and content. Panics on anything but files and directories.
pub fn tree_content(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fn walk(dir: &Path, prefix: &str, into: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = format!("{prefix}{name}");
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(&entry.path(), &format!("{path}/"), into);
            } else {
                assert!(kind.is_file(), "{path} is neither a file nor a directory");
                into.insert(
                    path,
                    (mode_of(&entry.path()), fs::read(entry.path()).unwrap()),
                );
            }
        }
    }
    let mut content = BTreeMap::new();
    walk(dir, "", &mut content);
    content
}

/// One line of a manifest's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLine {
    pub hash: String,
    pub mode: u32,
    pub size: u64,
    pub path: String,
}

/// Parses a manifest by hand: the serial from the header, the entries after the blank line.
pub fn parse_manifest(text: &str) -> (u64, Vec<ManifestLine>) {
    let (header, body) = text.split_once("\n\n").expect("manifest has a blank line");
    let serial = header
        .lines()
        .find_map(|line| line.strip_prefix("serial "))
        .expect("manifest has a serial")
        .parse()
        .unwrap();
    let entries = body
        .lines()
        .map(|line| {
            let mut fields = line.splitn(4, ' ');
            let mut next = || fields.next().expect("four fields");
            ManifestLine {
                hash: next().to_string(),
                mode: u32::from_str_radix(next(), 8).unwrap(),
                size: next().parse().unwrap(),
                path: next().to_string(),
            }
        })
        .collect();
    (serial, entries)
}

/// Asserts that `tree` holds exactly the files `manifest` lists, with their blake3, size
/// and mode.
pub fn assert_tree_matches_manifest(tree: &Path, manifest: &str) {
    let (_, entries) = parse_manifest(manifest);
    let content = tree_content(tree);
    let listed: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
    let found: Vec<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(found, listed, "files of {}", tree.display());
    for entry in &entries {
        let (mode, bytes) = &content[&entry.path];
        assert_eq!(*mode, entry.mode, "mode of {}", entry.path);
        assert_eq!(bytes.len() as u64, entry.size, "size of {}", entry.path);
        assert_eq!(
            blake3::hash(bytes).to_hex().as_str(),
            entry.hash,
            "blake3 of {}",
            entry.path
        );
    }
}

/// What a refused command must leave exactly as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `status --json`'s `.active.generation`, or None when status fails or nothing is
    /// active.
    pub active: Option<u64>,
    pub view_target: Option<PathBuf>,
    /// The generation `STORE/active`, the one switch, names.
    pub active_link: Option<u64>,
    pub view_content: Option<BTreeMap<String, (u32, Vec<u8>)>>,
}

/// A node: a temp dir holding a store path, a view path (`<tmp>/node/inputs`, parent
/// created), a signify key pair made by `polstore keygen`, a drop directory and an empty
/// checks directory.
pub struct Node {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub store: PathBuf,
    pub view: PathBuf,
    pub public_key: PathBuf,
    pub secret_key: PathBuf,
    pub drop: PathBuf,
    pub checks: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        unmount_under(&self.root);
    }
}

impl Node {
    /// A node with keys but no store yet.
    pub fn new() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        // Canonical, so that paths compare equal to what polstore prints.
        let root = tmp.path().canonicalize().unwrap();
        let node = Node {
            store: root.join("store"),
            view: root.join("node").join("inputs"),
            public_key: root.join("keys").join("polstore.pub"),
            secret_key: root.join("keys").join("polstore.sec"),
            drop: root.join("drop"),
            checks: root.join("checks.d"),
            root,
            _tmp: tmp,
        };
        for dir in [
            node.view.parent().unwrap(),
            node.public_key.parent().unwrap(),
            &node.drop,
            &node.checks,
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        let out = node.run(&[
            "keygen",
            "--public",
            s(&node.public_key),
            "--secret",
            s(&node.secret_key),
        ]);
        out.success();
        node
    }

    /// A node whose store trusts its key (signatures required), set up for tests.
    pub fn signed() -> Node {
        let node = Node::new();
        node.init_signed();
        node
    }

    /// Creates the store, trusting the node's key, and sets it up for tests.
    pub fn init_signed(&self) {
        self.run(&[
            "init",
            "--view",
            s(&self.view),
            "--trust",
            s(&self.public_key),
        ])
        .success();
        self.configure_for_tests();
    }

    /// A node whose store accepts unsigned policy, set up for tests.
    pub fn unsigned() -> Node {
        let node = Node::new();
        node.run(&["init", "--view", s(&node.view)]).success();
        node.configure_for_tests();
        node
    }

    /// A signed node with generation 1 (serial 1, [`POLICY`] and `lib/common.cf`) active.
    pub fn with_generation() -> Node {
        let node = Node::signed();
        let tree = node.signed_tree(
            "gen1",
            &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
            1,
        );
        node.ingest(&tree).success();
        assert_eq!(node.active_generation(), Some(1));
        node
    }

    /// User checks come from this node's own directory; the parse check's one entry point
    /// is `promises.cf` (the tests' policies have no `update.cf`); no agent run.
    pub fn configure_for_tests(&self) {
        self.set_config("checks", "dir", &toml_string(s(&self.checks)));
        self.set_config("checks", "entry_points", r#"["promises.cf"]"#);
        self.set_config("agent", "command", "[]");
    }

    pub fn config_path(&self) -> PathBuf {
        self.store.join("polstore.toml")
    }

    /// Sets `key = value` (value in TOML syntax) in `[section]` of the store's config,
    /// replacing the key's line if the section has one.
    pub fn set_config(&self, section: &str, key: &str, value: &str) {
        let text = fs::read_to_string(self.config_path()).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let header = format!("[{section}]");
        let start = match lines.iter().position(|line| line.trim() == header) {
            Some(index) => index,
            None => {
                lines.push(header);
                lines.len() - 1
            }
        };
        let end = lines[start + 1..]
            .iter()
            .position(|line| line.trim_start().starts_with('['))
            .map_or(lines.len(), |offset| start + 1 + offset);
        let new_line = format!("{key} = {value}");
        let existing = (start + 1..end).find(|&index| {
            lines[index]
                .split_once('=')
                .is_some_and(|(name, _)| name.trim() == key && !name.trim_start().starts_with('#'))
        });
        match existing {
            Some(index) => lines[index] = new_line,
            None => lines.insert(start + 1, new_line),
        }
        fs::write(self.config_path(), lines.join("\n") + "\n").unwrap();
    }

    /// `polstore ARGS` on this node's store, to be set up further and run.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        polstore_command(&self.store, args)
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        run_polstore(&self.store, args, &[], None)
    }

    pub fn run_with<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Out {
        run_polstore(&self.store, args, env, stdin)
    }

    pub fn ingest(&self, source: &Path) -> Out {
        self.run(&["ingest", s(source)])
    }

    /// A new directory `name` in the drop directory holding `files`.
    pub fn tree(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.drop.join(name);
        assert!(!dir.exists(), "{} exists already", dir.display());
        fs::create_dir_all(&dir).unwrap();
        write_tree(&dir, files);
        dir
    }

    /// Writes `dir/polstore.manifest` with `polstore manifest` and signs it with
    /// `polstore sign` into `dir/polstore.manifest.sig`.
    pub fn sign_tree(&self, dir: &Path, serial: u64) {
        let manifest = dir.join("polstore.manifest");
        self.run(&[
            "manifest",
            s(dir),
            "--serial",
            &serial.to_string(),
            "-o",
            s(&manifest),
        ])
        .success();
        self.sign(&manifest);
    }

    /// Signs `manifest` with the node's key into `manifest.sig`.
    pub fn sign(&self, manifest: &Path) {
        self.run(&["sign", "--key", s(&self.secret_key), s(manifest)])
            .success();
    }

    /// [`Node::tree`] then [`Node::sign_tree`].
    pub fn signed_tree(&self, name: &str, files: &[(&str, &str)], serial: u64) -> PathBuf {
        let dir = self.tree(name, files);
        self.sign_tree(&dir, serial);
        dir
    }

    /// A signed tree `name` for `serial`: [`POLICY`] and `lib/n.cf` holding `# SERIAL`.
    pub fn serial_tree(&self, name: &str, serial: u64) -> PathBuf {
        self.signed_tree(
            name,
            &[
                ("promises.cf", POLICY),
                ("lib/n.cf", &format!("# {serial}\n")),
            ],
            serial,
        )
    }

    /// Puts an executable user check `name` with `script` (a shell script body) in the
    /// checks directory.
    pub fn add_check(&self, name: &str, script: &str) {
        let path = self.checks.join(name);
        fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        set_mode(&path, 0o755);
    }

    pub fn status(&self) -> Value {
        let out = self.run(&["status", "--json"]).success();
        serde_json::from_str(&out.stdout).expect("status --json prints JSON")
    }

    pub fn list(&self) -> Vec<Value> {
        let out = self.run(&["list", "--json"]).success();
        serde_json::from_str(&out.stdout).expect("list --json prints a JSON array")
    }

    pub fn log(&self) -> Vec<Value> {
        let out = self.run(&["log", "--json"]).success();
        serde_json::from_str(&out.stdout).expect("log --json prints a JSON array")
    }

    pub fn active_generation(&self) -> Option<u64> {
        self.status()["active"]["generation"].as_u64()
    }

    /// `<store>/generations/N`: a generation's tree and the manifest it was made from.
    pub fn generation_dir(&self, generation: u64) -> PathBuf {
        self.store.join("generations").join(generation.to_string())
    }

    pub fn generation_tree(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("tree")
    }

    /// The manifest the store keeps for `generation`.
    pub fn generation_manifest(&self, generation: u64) -> String {
        fs::read_to_string(self.generation_dir(generation).join("polstore.manifest")).unwrap()
    }

    /// The numbers of the generations `list --json` lists, in its order.
    pub fn generations(&self) -> Vec<u64> {
        self.list()
            .iter()
            .map(|generation| generation["generation"].as_u64().unwrap())
            .collect()
    }

    /// `generation`'s tree through the store's read-only mount (`readonly/generations`).
    pub fn view_path(&self, generation: u64) -> PathBuf {
        self.store
            .join("readonly")
            .join("generations")
            .join(generation.to_string())
            .join("tree")
    }

    pub fn view_target(&self) -> Option<PathBuf> {
        fs::read_link(&self.view).ok()
    }

    /// The fixed target of the one view: `STORE/active` through the read-only mount.
    pub fn view_fixed_target(&self) -> PathBuf {
        self.store.join("readonly").join("active")
    }

    /// The generation `STORE/active`, the one switch, names (`generations/N/tree`).
    pub fn active_link_generation(&self) -> Option<u64> {
        let target = fs::read_link(self.store.join("active")).ok()?;
        let mut parts = target.strip_prefix("generations").ok()?.iter();
        let number = parts.next()?.to_str()?.parse().ok()?;
        (parts.next()? == "tree" && parts.next().is_none()).then_some(number)
    }

    /// Which generation the view shows: its symlink is the fixed one through
    /// `readonly/active` and `STORE/active` names the generation, or (a store an older
    /// polstore left) it points at `readonly/generations/N/tree` itself. `None` for
    /// anything else.
    pub fn viewed_generation(&self) -> Option<u64> {
        viewed_generation(&self.store, &self.view, None)
    }

    pub fn snapshot(&self) -> Snapshot {
        let status = self.run(&["status", "--json"]);
        let active = if status.code == 0 {
            let json: Value = serde_json::from_str(&status.stdout).unwrap();
            json["active"]["generation"].as_u64()
        } else {
            None
        };
        Snapshot {
            active,
            view_target: self.view_target(),
            active_link: self.active_link_generation(),
            view_content: self.view.is_dir().then(|| tree_content(&self.view)),
        }
    }

    /// Prepares a private CFengine work directory for cf-agent (pass it to polstore as
    /// CFENGINE_TEST_OVERRIDE_WORKDIR) and makes the agent command the real cf-agent.
    pub fn enable_agent(&self) -> PathBuf {
        let workdir = self.root.join("cfengine");
        fs::create_dir_all(workdir.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/cf-promises", workdir.join("bin/cf-promises"))
            .unwrap();
        let status = Command::new("cf-key")
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &workdir)
            .stdout(Stdio::null())
            .status()
            .expect("cannot run cf-key");
        assert!(status.success(), "cf-key failed");
        self.set_config(
            "agent",
            "command",
            r#"["/usr/bin/cf-agent", "-K", "-f", "{tree}/promises.cf"]"#,
        );
        workdir
    }

    /// Every path under the node's directory except the store and what the tests' fetch
    /// command writes (`incoming`, `fetch.log`), with its size: what a refused command
    /// must leave as it was. (The directory holding the node's is shared with tests
    /// running in parallel; the archive tests look there for their escapes by name.)
    pub fn outside_the_store(&self) -> BTreeMap<PathBuf, u64> {
        let mut found = BTreeMap::new();
        let fetched = [self.root.join("incoming"), self.root.join("fetch.log")];
        let mut pending = vec![self.root.clone()];
        while let Some(directory) = pending.pop() {
            for entry in fs::read_dir(&directory).unwrap().flatten() {
                let path = entry.path();
                if path == self.store || fetched.contains(&path) {
                    continue;
                }
                let metadata = fs::symlink_metadata(&path).unwrap();
                if metadata.is_dir() {
                    pending.push(path.clone());
                }
                found.insert(
                    path,
                    if metadata.is_file() {
                        metadata.len()
                    } else {
                        0
                    },
                );
            }
        }
        found
    }

    /// The names left in `<store>/staging`.
    pub fn staging_leftovers(&self) -> Vec<String> {
        fs::read_dir(self.store.join("staging"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect()
    }
}

/// Whether the tests run as root (some need it, and say so when they skip).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout == b"0\n")
}

/// True, having said why the test skips (`why` needs root), when the tests do not run as
/// root.
pub fn skip_unless_root(why: &str) -> bool {
    if running_as_root() {
        return false;
    }
    eprintln!("skipped: {why}");
    true
}

/// A TOML basic string (the test paths hold no quotes or backslashes).
pub fn toml_string(text: &str) -> String {
    assert!(!text.contains(['"', '\\']));
    format!("\"{text}\"")
}

/// Runs `args` on `node` and asserts a refusal: exit code `expected_exit`, standard error
/// exactly one line starting with `polstore: ` and containing `fragment`, and the active
/// generation, the view's symlink target and the view's content all unchanged.
pub fn assert_refused<S: AsRef<OsStr> + std::fmt::Debug>(
    node: &Node,
    args: &[S],
    expected_exit: i32,
    fragment: &str,
) -> Out {
    assert_refused_with(node, args, None, expected_exit, fragment)
}

/// [`assert_refused`] with bytes on standard input.
pub fn assert_refused_with<S: AsRef<OsStr> + std::fmt::Debug>(
    node: &Node,
    args: &[S],
    stdin: Option<&[u8]>,
    expected_exit: i32,
    fragment: &str,
) -> Out {
    let before = node.snapshot();
    let outside_before = node.outside_the_store();
    let out = node.run_with(args, &[], stdin);
    assert_eq!(
        out.code, expected_exit,
        "exit code of polstore {args:?}: {out:#?}"
    );
    let outside_after = node.outside_the_store();
    let changed: Vec<_> = outside_after
        .iter()
        .filter(|(path, size)| outside_before.get(*path) != Some(size))
        .chain(
            outside_before
                .iter()
                .filter(|(path, _)| !outside_after.contains_key(*path)),
        )
        .collect();
    assert!(
        changed.is_empty(),
        "polstore {args:?} wrote outside the store: {changed:?}"
    );
    assert!(
        out.stderr.starts_with("polstore: ") && out.stderr.ends_with('\n'),
        "stderr of polstore {args:?} is not a 'polstore: ' line: {:?}",
        out.stderr
    );
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "stderr of polstore {args:?} is not one line: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains(fragment),
        "stderr of polstore {args:?} lacks {fragment:?}: {:?}",
        out.stderr
    );
    let after = node.snapshot();
    assert_eq!(
        before, after,
        "polstore {args:?} changed the active generation or the view"
    );
    out
}

/// An ingest of `source` refused by a check (exit 3) with `fragment` in the message, the
/// active generation named as staying active, and nothing left in staging.
pub fn assert_ingest_refused(node: &Node, source: &Path, fragment: &str) -> Out {
    assert_ingest_refused_with(node, &["ingest", s(source)], None, fragment)
}

pub fn assert_ingest_refused_with(
    node: &Node,
    args: &[&str],
    stdin: Option<&[u8]>,
    fragment: &str,
) -> Out {
    let active = node.active_generation();
    let out = assert_refused_with(node, args, stdin, 3, fragment);
    if let Some(active) = active {
        assert!(
            out.stderr
                .trim_end()
                .ends_with(&format!("; generation {active} stays active")),
            "{:?}",
            out.stderr
        );
    }
    assert_eq!(node.staging_leftovers(), Vec::<String>::new());
    out
}

/// Writes a tar archive at `path` with python3's tarfile module. Each entry is a JSON
/// object: `{"name", "kind": "file"|"dir"|"symlink"|"hardlink"|"char"|"fifo"|"zeros",
/// "data", "mode", "target", "size"}`. A name ending in `.gz` or `.bz2` compresses it
/// with gzip or bzip2 (level 1).
pub fn python_tar(path: &Path, entries: Value) {
    const SCRIPT: &str = r#"
import io, json, sys, tarfile

class Zeros(io.RawIOBase):
    def __init__(self, size):
        self.left = size
    def readable(self):
        return True
    def readinto(self, buffer):
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count

path, spec = sys.argv[1], json.loads(sys.argv[2])
compression = path.rsplit(".", 1)[-1] if path.endswith((".gz", ".bz2")) else ""
kinds = {"file": tarfile.REGTYPE, "zeros": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
         "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE,
         "fifo": tarfile.FIFOTYPE}
options = {"compresslevel": 1} if compression else {}
with tarfile.open(path, "w:" + compression, format=tarfile.GNU_FORMAT, **options) as archive:
    for entry in spec:
        info = tarfile.TarInfo(entry["name"])
        info.type = kinds[entry["kind"]]
        info.mode = entry.get("mode", 0o755 if entry["kind"] == "dir" else 0o644)
        info.linkname = entry.get("target", "")
        if entry["kind"] == "char":
            info.devmajor, info.devminor = 1, 3
        if entry["kind"] == "file":
            data = entry.get("data", "").encode()
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        elif entry["kind"] == "zeros":
            info.size = entry["size"]
            archive.addfile(info, io.BufferedReader(Zeros(info.size), 1 << 20))
        else:
            archive.addfile(info)
"#;
    tool("python3", &["-c", SCRIPT, s(path), &entries.to_string()]);
}

#[path = "../../../polstore/tests/common/unmount.rs"]
mod unmount;
pub use unmount::unmount_under;

/// Which generation the view at `view` (named `name` in `[views]`, or the one view) of the
/// store at `store` shows: see [`Node::viewed_generation`].
pub fn viewed_generation(store: &Path, view: &Path, name: Option<&str>) -> Option<u64> {
    let target = fs::read_link(view).ok()?;
    let fixed = match name {
        None => store.join("readonly").join("active"),
        Some(name) => store.join("readonly").join("active").join(name),
    };
    if target == fixed {
        let active = fs::read_link(store.join("active")).ok()?;
        let mut parts = active.strip_prefix("generations").ok()?.iter();
        let number = parts.next()?.to_str()?.parse().ok()?;
        return (parts.next()? == "tree" && parts.next().is_none()).then_some(number);
    }
    let mut parts = target
        .strip_prefix(store.join("readonly").join("generations"))
        .ok()?
        .iter();
    let number = parts.next()?.to_str()?.parse().ok()?;
    (name.is_none() && parts.next()? == "tree" && parts.next().is_none()).then_some(number)
}

/// Runs polstore as root without the capability to mount, as in a restricted container.
pub fn run_without_mount_privilege(node: &Node, args: &[&str]) -> Out {
    let output = Command::new("setpriv")
        .arg("--bounding-set=-sys_admin")
        .arg(env!("CARGO_BIN_EXE_polstore"))
        .args(args)
        .env("POLSTORE_STORE", &node.store)
        .output()
        .expect("cannot run setpriv");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
