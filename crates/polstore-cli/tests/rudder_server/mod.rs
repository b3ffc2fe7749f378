//! A Rudder-shaped policy server for the Rudder integration's tests (`rudder_https.rs`,
//! and the CFEngine-protocol test): the directory tree Rudder's webapp and server agent
//! leave, made by the test with CFEngine content of our own, and the shipped hook
//! `integrations/rudder/server/92-polstore-sign` run on it as Rudder runs it.
//!
//! Under `Server::root`:
//! - `share/UUID/rules/cfengine-community/`: the node's rules (`promises.cf`,
//!   `failsafe.cf`, `rules/rule.cf`). promises.cf loads the library by the ABSOLUTE path
//!   of the node's ncf view (`NCF_VIEW/common/lib.cf`), as Rudder's promises.cf loads
//!   `/var/rudder/ncf/...`, and its rule by a relative path;
//! - `share/UUID/rules/rudder.tar.bz2`: made as Rudder's `91-compress-linux-policies`
//!   hook makes it (directory `policies_next/`);
//! - `library/ncf-common/`, `library/ncf-local/`: the library's source (Rudder's
//!   `/usr/share/ncf/tree` and `configuration-repository/ncf`), and
//!   `share/common/policies-library-linux.tar.bz2` built from it as Rudder's server agent
//!   builds it (`ncf/common/`, `ncf/local/`);
//! - `keys/`: the signing key pair (`polstore keygen`); `lock`: the hook's lock file.
//!
//! Needs GNU tar and bzip2.

// Each test binary uses a different part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shipped policy generation hook and the script it runs.
pub const HOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../integrations/rudder/server/92-polstore-sign"
);
pub const SIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../integrations/rudder/server/polstore-rudder-sign"
);

/// The node id the tests use (a uuid, as Rudder makes them).
pub const NODE_ID: &str = "8b0e4fd6-51c3-4a4b-9b7e-2c1f0a6d3e95";

/// The library's bundle that [`promises`] calls, reporting `LABEL` (a label made of
/// letters, digits and spaces).
pub fn library(label: &str) -> String {
    format!("bundle agent polstore_library\n{{\n  reports:\n    \"library {label}\";\n}}\n")
}

/// The rule bundle that [`promises`] calls, reporting `LABEL`.
pub fn rule(label: &str) -> String {
    format!("bundle agent polstore_rule\n{{\n  reports:\n    \"rule {label}\";\n}}\n")
}

/// A rule file with a syntax error (its bundle is never closed).
pub const BROKEN_RULE: &str = "bundle agent polstore_rule\n{\n  reports:\n    \"broken\"\n";
/// A library file with a syntax error.
pub const BROKEN_LIBRARY: &str =
    "bundle agent polstore_library\n{\n  reports:\n    \"broken library\"\n";

/// The node's promises.cf: the library by the absolute path of the node's ncf view, the
/// rule relative to itself.
pub fn promises(ncf_view: &Path) -> String {
    format!(
        r#"body common control
{{
  bundlesequence => {{ "polstore_library", "polstore_rule" }};
  inputs => {{ "{}/common/lib.cf", "rules/rule.cf" }};
}}
"#,
        ncf_view.display()
    )
}

/// The node's failsafe.cf (Rudder's update policy on a node).
pub const FAILSAFE: &str = r#"body common control
{
  bundlesequence => { "update" };
}
bundle agent update
{
  reports:
    "failsafe";
}
"#;

/// How the hook or the signing script ended.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A Rudder server's tree for one node (see the module's documentation).
pub struct Server {
    pub root: PathBuf,
    /// RUDDER_SHARE.
    pub share: PathBuf,
    pub uuid: String,
    /// The node's ncf view, which promises.cf names.
    pub ncf_view: PathBuf,
    pub public_key: PathBuf,
    pub secret_key: PathBuf,
    /// The next generation's start time, in seconds since the epoch.
    clock: std::cell::Cell<u64>,
}

/// Runs `program` with `args` in `dir`, failing the test unless it exits 0.
fn run_in(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

impl Server {
    /// An empty server under `root` for the node `uuid` whose ncf view is `ncf_view`, with
    /// a signing key pair made by `polstore` (the binary under test) `keygen`.
    pub fn new(root: &Path, uuid: &str, ncf_view: &Path, polstore: &str) -> Server {
        let server = Server {
            root: root.to_path_buf(),
            share: root.join("share"),
            uuid: uuid.to_string(),
            ncf_view: ncf_view.to_path_buf(),
            public_key: root.join("keys/rudder-server.pub"),
            secret_key: root.join("keys/rudder-server.sec"),
            // 2026-08-21T09:24:10Z
            clock: std::cell::Cell::new(1_787_304_250),
        };
        fs::create_dir_all(root.join("keys")).unwrap();
        fs::create_dir_all(server.share.join("common")).unwrap();
        run_in(
            root,
            polstore,
            &[
                "keygen",
                "--public",
                text(&server.public_key),
                "--secret",
                text(&server.secret_key),
            ],
        );
        server
    }

    /// `share/UUID`: the node's directory.
    pub fn node_dir(&self) -> PathBuf {
        self.share.join(&self.uuid)
    }

    /// `share/UUID/rules/rudder.tar.bz2`.
    pub fn rules_archive(&self) -> PathBuf {
        self.node_dir().join("rules/rudder.tar.bz2")
    }

    /// `share/common/policies-library-linux.tar.bz2`.
    pub fn library_archive(&self) -> PathBuf {
        self.share.join("common/policies-library-linux.tar.bz2")
    }

    /// `share/UUID/polstore`: the versions the hook publishes, and `head`.
    pub fn published(&self) -> PathBuf {
        self.node_dir().join("polstore")
    }

    /// The serial `head` names, if any.
    pub fn head(&self) -> Option<u64> {
        let text = fs::read_to_string(self.published().join("head")).ok()?;
        Some(text.trim_end().parse().expect("head holds a serial"))
    }

    /// The published versions' serials, in order.
    pub fn versions(&self) -> Vec<u64> {
        let mut serials: Vec<u64> = fs::read_dir(self.published())
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.unwrap().file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        serials.sort_unstable();
        serials
    }

    /// A policy generation for the node, as Rudder's webapp makes it: the rules written
    /// into `rules.new/cfengine-community` (promises.cf, failsafe.cf, `rules/rule.cf`
    /// holding `rule_text`), moved to `rules` (the old `rules` removed, as with backups
    /// off), then compressed as `91-compress-linux-policies` does.
    pub fn write_rules(&self, rule_text: &str) {
        let node = self.node_dir();
        let next = node.join("rules.new");
        let policies = next.join("cfengine-community");
        write(&policies.join("promises.cf"), &promises(&self.ncf_view));
        write(&policies.join("failsafe.cf"), FAILSAFE);
        write(&policies.join("rules/rule.cf"), rule_text);
        let rules = node.join("rules");
        if rules.exists() {
            fs::remove_dir_all(&rules).unwrap();
        }
        fs::rename(&next, &rules).unwrap();
        // 91-compress-linux-policies, in the rules directory.
        run_in(
            &rules,
            "tar",
            &[
                "-cjf",
                "rudder.tar.bz2.part",
                "--mode=go=-rwx",
                "--owner=0",
                "--group=0",
                "--transform",
                "s|^cfengine-community|policies_next|",
                "cfengine-community",
            ],
        );
        fs::rename(
            rules.join("rudder.tar.bz2.part"),
            rules.join("rudder.tar.bz2"),
        )
        .unwrap();
    }

    /// The library as Rudder's server agent rebuilds it when a library hash changed:
    /// `ncf-common/lib.cf` holding `library_text` (with `ncf_hash_file`) and
    /// `ncf-local/local.cf`, archived into `ncf/common` and `ncf/local` with tar's
    /// transforms, written beside the archive and renamed over it.
    pub fn write_library(&self, library_text: &str) {
        let source = self.root.join("library");
        write(&source.join("ncf-common/lib.cf"), library_text);
        write(
            &source.join("ncf-common/ncf_hash_file"),
            &format!("{}\n", blake3::hash(library_text.as_bytes()).to_hex()),
        );
        write(
            &source.join("ncf-local/local.cf"),
            "# the site's own techniques\n",
        );
        let archive = self.library_archive();
        let new = archive.with_extension("bz2.new");
        run_in(
            &source,
            "tar",
            &[
                "cfj",
                text(&new),
                "-C",
                text(&source),
                "--transform",
                "s|^ncf-local|ncf/local|",
                "ncf-local",
                "-C",
                text(&source),
                "--transform",
                "s|^ncf-common|ncf/common|",
                "ncf-common",
            ],
        );
        fs::rename(&new, &archive).unwrap();
    }

    /// The library's `lib.cf` as the library source holds it now, if any.
    fn library_now(&self) -> Option<String> {
        fs::read_to_string(self.root.join("library/ncf-common/lib.cf")).ok()
    }

    /// A policy generation: the rules as [`Server::write_rules`] makes them, the library
    /// rebuilt only when `library_text` differs from its current content (as Rudder's
    /// server agent does), then the hook, with a start time one minute after the last
    /// generation's.
    pub fn generate(&self, rule_text: &str, library_text: &str) -> Ran {
        let time = self.clock.get() + 60;
        self.clock.set(time);
        self.generate_at(rule_text, library_text, &datetime(time))
    }

    /// [`Server::generate`] with the start time `generation_datetime`, in Rudder's form
    /// (`2026-08-21T09:24:10.123Z`).
    pub fn generate_at(
        &self,
        rule_text: &str,
        library_text: &str,
        generation_datetime: &str,
    ) -> Ran {
        if self.library_now().as_deref() != Some(library_text) {
            self.write_library(library_text);
        }
        self.write_rules(rule_text);
        self.hook(generation_datetime, &[])
    }

    /// The library changes outside any generation: Rudder's server agent rebuilds its
    /// archive ([`Server::write_library`]), and `polstore-rudder-library.path` runs
    /// `polstore-rudder-sign all`. The rules stay as they are.
    pub fn change_library(&self, library_text: &str) -> Ran {
        self.write_library(library_text);
        self.sign(&["all"])
    }

    /// Runs the shipped hook as Rudder runs `policy-generation-node-finished` hooks for
    /// this node: RUDDER_NODE_ID, RUDDER_GENERATION_DATETIME and the rest of a hook's
    /// environment, with the integration's settings for this tree (`extra` adds to or
    /// overrides them).
    pub fn hook(&self, generation_datetime: &str, extra: &[(&str, &str)]) -> Ran {
        let policies = self.node_dir().join("rules/cfengine-community");
        let mut command = self.command(HOOK, &[]);
        command
            .env("RUDDER_NODE_ID", &self.uuid)
            .env("RUDDER_NODEID", &self.uuid)
            .env("RUDDER_GENERATION_DATETIME", generation_datetime)
            .env("RUDDER_NODE_HOSTNAME", "node.example")
            .env("RUDDER_NODE_POLICY_SERVER_ID", "root")
            .env("RUDDER_AGENT_TYPE", "cfengine-community")
            .env("RUDDER_POLICIES_DIRECTORY_CURRENT", &policies)
            .env("RUDDER_POLICIES_DIRECTORY", &policies);
        for (name, value) in extra {
            command.env(name, value);
        }
        ran(command)
    }

    /// Runs `polstore-rudder-sign ARGS` directly (the library path unit's `all`, or node
    /// ids), with this tree's settings and no generation's environment.
    pub fn sign(&self, args: &[&str]) -> Ran {
        ran(self.command(SIGN, args))
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("POLSTORE_RUDDER_SIGN", SIGN)
            .env("POLSTORE", env!("CARGO_BIN_EXE_polstore"))
            .env("POLSTORE_RUDDER_KEY", &self.secret_key)
            .env("RUDDER_SHARE", &self.share)
            .env("POLSTORE_RUDDER_LOCK", self.root.join("lock"))
            .env_remove("RUDDER_NODE_ID")
            .env_remove("RUDDER_GENERATION_DATETIME")
            .env_remove("POLSTORE_RUDDER_KEEP")
            .env_remove("RUDDER_LIBRARY");
        command
    }
}

fn ran(mut command: Command) -> Ran {
    let output = command.output().expect("cannot run the Rudder hook");
    Ran {
        code: output
            .status
            .code()
            .expect("the hook was killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `seconds` since the epoch in Rudder's form for RUDDER_GENERATION_DATETIME:
/// `2026-08-21T09:24:10.123Z` (the milliseconds are always 123 here).
pub fn datetime(seconds: u64) -> String {
    let output = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{seconds}"),
            "+%Y-%m-%dT%H:%M:%S.123Z",
        ])
        .output()
        .expect("cannot run date");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}
