//! The Rudder integration over HTTPS (`integrations/rudder/`) against the real thing: a
//! Rudder-shaped server tree (`rudder_server`) whose versions the shipped generation hook
//! signs, served by a real nginx over HTTPS on 127.0.0.1, and a node whose store has
//! Rudder's two views (inputs and ncf), configured from the shipped `polstore.toml`,
//! updated through the shipped `agent-update` (which runs the shipped fetch command,
//! curl with etags) and reset through the shipped `agent-reset`. The agent is the real
//! cf-agent, with a private CFENGINE_TEST_OVERRIDE_WORKDIR.
//!
//! Needs root: the read-only view and the parse check's private mount namespace (where
//! the rules' absolute ncf path shows the candidate's library) are mounts.

mod rudder_server;
mod util;

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rudder_server::*;
use util::*;

/// Why these tests skip when not run as root.
const NEEDS_ROOT: &str = "needs root for the read-only view and the parse check's mount namespace";

/// The shipped node side.
const NODE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../integrations/rudder/node"
);
/// How long a server may take to accept connections, and nginx to log a request.
const SERVER_START_MAX: Duration = Duration::from_secs(20);
const LIBRARY_URL_END: &str = "/policies-library-linux.tar.bz2";

/// One request nginx logged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    status: u16,
    uri: String,
}

/// nginx serving the server's share as Rudder's Apache does, as a child process killed on
/// drop. Rudder maps `/policies/UUID/...` to `/var/rudder/share/UUID/...` (a RewriteRule
/// guarded by the client certificate's UID, which nginx cannot check without client
/// certificates: not tested here) and `/common` to `/var/rudder/share/common`.
struct Nginx {
    _server: util::nginx::Nginx,
    port: u16,
    access_log: PathBuf,
    /// The server's self-signed certificate, the node's --cacert.
    certificate: PathBuf,
    /// How many log marks were requested, to tell them apart.
    marks: std::cell::Cell<u32>,
}

impl Nginx {
    fn start(dir: &Path, share: &Path) -> Nginx {
        fs::create_dir_all(dir).unwrap();
        let certificate = dir.join("server.cert");
        let key = dir.join("server.key");
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                s(&key),
                "-out",
                s(&certificate),
            ],
        );
        let access_log = dir.join("logs/access.log");
        // It runs as root, as the test tree is root's alone (Rudder's Apache reads the
        // share as a member of rudder-policy-reader).
        let server = util::nginx::Nginx::start(dir, |port| {
            format!(
                r#"log_format polstore '$status $request_uri';
  access_log {access_log} polstore;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {certificate};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    location /policies/ {{ alias {share}/; }}
    location /common/ {{ alias {share}/common/; }}
  }}"#,
                access_log = s(&access_log),
                certificate = s(&certificate),
                key = s(&key),
                share = s(share),
            )
        });
        Nginx {
            port: server.port,
            _server: server,
            access_log,
            certificate,
            marks: std::cell::Cell::new(0),
        }
    }

    /// Every request logged so far, in order. A mark request (logged 404) is made and
    /// waited for first: with one process, every request that ended before it is then in
    /// the log. Marks are left out.
    fn requests(&self) -> Vec<Request> {
        let mark = self.marks.get() + 1;
        self.marks.set(mark);
        let uri = format!("/polstore-test-mark-{mark}");
        let status = Command::new("curl")
            .args(["--silent", "--output", "/dev/null", "--cacert"])
            .arg(&self.certificate)
            .arg(format!("https://127.0.0.1:{}{uri}", self.port))
            .status()
            .expect("cannot run curl");
        assert!(status.success(), "the mark request failed: {status}");
        let deadline = Instant::now() + SERVER_START_MAX;
        loop {
            let log = fs::read_to_string(&self.access_log).unwrap_or_default();
            if log.lines().any(|line| line == format!("404 {uri}")) {
                return log
                    .lines()
                    .filter(|line| !line.contains("/polstore-test-mark-"))
                    .map(|line| {
                        let (status, uri) = line.split_once(' ').expect("status uri");
                        Request {
                            status: status.parse().unwrap(),
                            uri: uri.to_string(),
                        }
                    })
                    .collect();
            }
            assert!(Instant::now() < deadline, "nginx never logged {uri}: {log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A Rudder server with its nginx, and a node set up as `integrations/rudder/node/install`
/// sets one up, with its paths under the temporary directory.
struct Site {
    node: Node,
    server: Server,
    nginx: Nginx,
    /// The node's ncf view (`node.view` is its inputs view).
    ncf: PathBuf,
    /// The agent's private work directory.
    workdir: PathBuf,
    /// The fetch command's settings (POLSTORE_RUDDER_FETCH_CONF).
    fetch_conf: PathBuf,
    /// Requests already looked at by [`Site::new_requests`].
    seen: std::cell::Cell<usize>,
}

/// What the node's views show, and which generation is active.
#[derive(Debug, PartialEq, Eq)]
struct Views {
    active: Option<u64>,
    inputs: Option<BTreeMap<String, (u32, Vec<u8>)>>,
    ncf: Option<BTreeMap<String, (u32, Vec<u8>)>>,
}

impl Site {
    fn new() -> Site {
        let node = Node::new();
        let ncf = node.root.join("node").join("ncf");
        let server = Server::new(&node.root.join("server"), NODE_ID, &ncf, POLSTORE);
        let nginx = Nginx::start(&node.root.join("nginx"), &server.share);

        let workdir = node.root.join("cfengine");
        fs::create_dir_all(workdir.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/cf-promises", workdir.join("bin/cf-promises"))
            .unwrap();
        let status = Command::new("cf-key")
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &workdir)
            .stdout(Stdio::null())
            .status()
            .expect("cannot run cf-key");
        assert!(status.success(), "cf-key failed");

        // The shipped configuration, with this site's paths: as install does, and for
        // Debian's cfengine3 in /usr/bin.
        let state = node.root.join("polstore-rudder");
        let shipped = fs::read_to_string(Path::new(NODE_DIR).join("polstore.toml")).unwrap();
        let config = replace_all(
            &shipped,
            &[
                (
                    "\"/var/rudder/cfengine-community/inputs",
                    &format!("\"{}", s(&node.view)),
                ),
                ("\"/var/rudder/ncf\"", &format!("\"{}\"", s(&ncf))),
                (
                    "\"/etc/polstore/rudder-server.pub\"",
                    &format!("\"{}\"", s(&server.public_key)),
                ),
                (
                    "\"/var/lib/polstore-rudder/drop\"",
                    &format!("\"{}\"", s(&node.drop)),
                ),
                (
                    "\"/usr/local/bin/polstore-rudder-fetch\"",
                    &format!("\"{NODE_DIR}/polstore-rudder-fetch\""),
                ),
                (
                    "bin_dirs = [\"/opt/rudder/bin\"]",
                    "bin_dirs = [\"/usr/bin\"]",
                ),
            ],
        );
        let config_path = node.root.join("polstore.toml");
        fs::write(&config_path, config).unwrap();
        node.run(&["init", "--config", s(&config_path)]).success();

        let fetch_conf = node.root.join("rudder-fetch.conf");
        fs::write(
            &fetch_conf,
            format!(
                "# the node's fetch settings\nRUDDER_PROTOCOL=https\nRUDDER_SERVER=127.0.0.1\n\
                 RUDDER_HTTPS_PORT={}\nRUDDER_UUID={NODE_ID}\nRUDDER_CURL_ARGS=--cacert {}\n\
                 POLSTORE_RUDDER_STATE={}\n",
                nginx.port,
                s(&nginx.certificate),
                s(&state)
            ),
        )
        .unwrap();
        Site {
            node,
            server,
            nginx,
            ncf,
            workdir,
            fetch_conf,
            seen: std::cell::Cell::new(0),
        }
    }

    /// Runs a shipped node command (`agent-update`, `agent-reset`) as Rudder's `rudder
    /// agent` runs it, with the site's polstore, store, fetch settings and agent workdir.
    fn rudder_agent(&self, command: &str, args: &[&str]) -> Out {
        let output = Command::new(Path::new(NODE_DIR).join(command))
            .args(args)
            .env("POLSTORE", POLSTORE)
            .env("POLSTORE_STORE", &self.node.store)
            .env("POLSTORE_RUDDER_FETCH_CONF", &self.fetch_conf)
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &self.workdir)
            .env("RUDDER_WORKDIR", &self.workdir)
            .env_remove("RUDDER_PROTOCOL")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {command}: {error}"));
        Out {
            code: output.status.code().expect("killed by a signal"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn update(&self, args: &[&str]) -> Out {
        self.rudder_agent("agent-update", args)
    }

    fn views(&self) -> Views {
        let content = |path: &Path| path.is_dir().then(|| tree_content(path));
        Views {
            active: self.node.active_generation(),
            inputs: content(&self.node.view),
            ncf: content(&self.ncf),
        }
    }

    /// The requests nginx served since the last call.
    fn new_requests(&self) -> Vec<Request> {
        let all = self.nginx.requests();
        let new = all[self.seen.get()..].to_vec();
        self.seen.set(all.len());
        new
    }

    /// Asserts that generation `generation`, made from the server's serial `serial`, is
    /// active and that both views show it: the rule reporting `rule_label`, the library
    /// `library_label`, and every file of the generation's manifest.
    fn assert_active(&self, generation: u64, serial: u64, rule_label: &str, library_label: &str) {
        let status = self.node.status();
        assert_eq!(status["active"]["generation"], generation, "{status:#}");
        assert_eq!(status["active"]["serial"], serial, "{status:#}");
        assert_eq!(
            viewed_generation(&self.node.store, &self.node.view, Some("inputs")),
            Some(generation)
        );
        assert_eq!(
            viewed_generation(&self.node.store, &self.ncf, Some("ncf")),
            Some(generation)
        );
        assert_eq!(
            fs::read_to_string(self.node.view.join("rules/rule.cf")).unwrap(),
            rule(rule_label)
        );
        assert_eq!(
            fs::read_to_string(self.node.view.join("promises.cf")).unwrap(),
            promises(&self.ncf)
        );
        assert_eq!(
            fs::read_to_string(self.ncf.join("common/lib.cf")).unwrap(),
            library(library_label)
        );
        assert!(self.ncf.join("local/local.cf").is_file());
        assert_tree_matches_manifest(
            &self.node.generation_tree(generation),
            &self.node.generation_manifest(generation),
        );
        // The server's own signed manifest is the generation's.
        assert_eq!(
            fs::read_to_string(
                self.server
                    .published()
                    .join(serial.to_string())
                    .join("polstore.manifest")
            )
            .unwrap(),
            self.node.generation_manifest(generation)
        );
    }

    /// Runs `agent-update` and asserts a refusal: exit 3, one `polstore: ` line on standard
    /// error with `fragment` and naming the active generation as staying active, and the
    /// active generation and both views' content unchanged.
    fn assert_update_refused(&self, fragment: &str) -> Out {
        let before = self.views();
        let active = before.active.expect("a generation is active");
        let out = self.update(&[]);
        assert_eq!(out.code, 3, "{out:#?}");
        assert!(
            out.stderr.starts_with("polstore: ") && out.stderr.lines().count() == 1,
            "{out:#?}"
        );
        assert!(out.stderr.contains(fragment), "{out:#?}");
        assert!(
            out.stderr
                .trim_end()
                .ends_with(&format!("; generation {active} stays active")),
            "{out:#?}"
        );
        assert_eq!(
            self.views(),
            before,
            "a refusal changed the active generation or a view"
        );
        out
    }
}

fn replace_all(text: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "the shipped polstore.toml has no {from}"
        );
        text = text.replace(from, to);
    }
    text
}

/// The statuses of the requests whose URI ends with `end`.
fn statuses(requests: &[Request], end: &str) -> Vec<u16> {
    requests
        .iter()
        .filter(|request| request.uri.ends_with(end))
        .map(|request| request.status)
        .collect()
}

/// A fresh node follows its server through Rudder's cycle: first policy, a one-rule
/// change (the library answered 304), a library change, a broken rule and a broken
/// library refused, a fix, an unchanged policy (one request), a tampered archive refused,
/// a damaged store reset through `agent-reset`, and `agent-update -f`.
#[test]
fn a_rudder_node_follows_its_server_over_https() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let site = Site::new();
    let server = &site.server;
    assert!(!site.node.view.exists() && !site.ncf.exists());

    // 1. The first policy: both views appear, from the one signed version.
    let ran = server.generate(&rule("one"), &library("one"));
    assert_eq!(ran.code, 0, "{ran:#?}");
    let serial_1 = server.head().expect("the hook published a head");
    assert_eq!(
        serial_1, 1_787_304_310,
        "the generation's start time in seconds"
    );
    assert_eq!(
        ran.stdout,
        format!("polstore-rudder-sign: {NODE_ID}: serial {serial_1} published\n")
    );
    let out = site.update(&[]).success();
    assert!(
        out.stdout
            .contains(&format!("generation 1 active: serial {serial_1},")),
        "{out:#?}"
    );
    site.assert_active(1, serial_1, "one", "one");
    let requests = site.new_requests();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    assert!(
        requests.iter().all(|request| request.status == 200),
        "{requests:#?}"
    );

    // 2. One rule changes: a new generation; the library is not downloaded again.
    server.generate(&rule("two"), &library("one"));
    let serial_2 = server.head().unwrap();
    assert!(serial_2 > serial_1);
    site.update(&[]).success();
    site.assert_active(2, serial_2, "two", "one");
    let requests = site.new_requests();
    assert_eq!(statuses(&requests, LIBRARY_URL_END), [304], "{requests:#?}");
    assert_eq!(
        statuses(&requests, "/rudder.tar.bz2"),
        [200],
        "{requests:#?}"
    );
    assert_eq!(statuses(&requests, "/head"), [200], "{requests:#?}");

    // 3. The library changes (outside a generation), the rules do not: both views switch
    // together, and the rules archive is not downloaded again.
    let ran = server.change_library(&library("three"));
    assert_eq!(ran.code, 0, "{ran:#?}");
    let serial_3 = server.head().unwrap();
    site.update(&[]).success();
    site.assert_active(3, serial_3, "two", "three");
    let requests = site.new_requests();
    assert_eq!(statuses(&requests, LIBRARY_URL_END), [200], "{requests:#?}");
    assert_eq!(
        statuses(&requests, "/rudder.tar.bz2"),
        [304],
        "{requests:#?}"
    );

    // 4. A rule with a syntax error: refused by the parse check.
    server.generate(BROKEN_RULE, &library("three"));
    site.assert_update_refused("rejected by the parse check: inputs/promises.cf:");
    site.assert_active(3, serial_3, "two", "three");

    // 5. A library with a syntax error, the rules as active: refused by the parse check,
    // which sees the candidate's library at the ncf view's path.
    server.generate(&rule("two"), BROKEN_LIBRARY);
    let out = site.assert_update_refused("rejected by the parse check: inputs/promises.cf:");
    assert!(out.stderr.contains("lib.cf"), "{out:#?}");
    site.assert_active(3, serial_3, "two", "three");

    // 6. The fix: a new generation.
    server.generate(&rule("six"), &library("six"));
    let serial_6 = server.head().unwrap();
    site.update(&[]).success();
    site.assert_active(4, serial_6, "six", "six");
    site.new_requests();

    // 7. Nothing changed: a no-op that costs one request, the head answered 304.
    let before = site.views();
    let out = site.update(&[]).success();
    assert!(out.stdout.contains("unchanged"), "{out:#?}");
    assert_eq!(
        site.new_requests(),
        [Request {
            status: 304,
            uri: format!("/policies/{NODE_ID}/polstore/head")
        }]
    );
    assert_eq!(site.views(), before);

    // 8. An archive changed on the server after it was signed: refused by integrity.
    server.generate(&rule("eight"), &library("six"));
    let serial_8 = server.head().unwrap();
    let signed = server
        .published()
        .join(serial_8.to_string())
        .join("rudder.tar.bz2");
    let other = site.node.root.join("other");
    fs::create_dir_all(other.join("cfengine-community/rules")).unwrap();
    fs::write(
        other.join("cfengine-community/promises.cf"),
        promises(&site.ncf),
    )
    .unwrap();
    fs::write(other.join("cfengine-community/failsafe.cf"), FAILSAFE).unwrap();
    fs::write(
        other.join("cfengine-community/rules/rule.cf"),
        rule("tampered with"),
    )
    .unwrap();
    let tampered = other.join("tampered.tar.bz2");
    let status = Command::new("tar")
        .args([
            "-cjf",
            s(&tampered),
            "--mode=go=-rwx",
            "--owner=0",
            "--group=0",
        ])
        .args([
            "--transform",
            "s|^cfengine-community|policies_next|",
            "cfengine-community",
        ])
        .current_dir(&other)
        .status()
        .unwrap();
    assert!(status.success());
    // In place, as a disk or an intruder would: the signed file's own bytes.
    fs::write(&signed, fs::read(&tampered).unwrap()).unwrap();
    site.assert_update_refused("rejected by the integrity check: inputs/rules/rule.cf:");
    site.assert_active(4, serial_6, "six", "six");
    // The server publishes again (the next generation): taken.
    server.generate(&rule("nine"), &library("six"));
    let serial_9 = server.head().unwrap();
    site.update(&[]).success();
    site.assert_active(5, serial_9, "nine", "six");

    // 9. A damaged generation, reset through polstore: repaired from verified data.
    let damaged = site.node.generation_tree(5).join("ncf/common/lib.cf");
    fs::remove_file(&damaged).unwrap();
    fs::write(&damaged, library("damaged")).unwrap();
    assert_eq!(site.node.run(&["verify"]).code, 4);
    let out = site.rudder_agent("agent-reset", &[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("REPAIRED "), "{out:#?}");
    site.assert_active(5, serial_9, "nine", "six");
    site.node.run(&["verify"]).success();

    // 10. agent-update -f: everything fetched again without etags, checked against the
    // signed manifest, and the store verified with it; no new generation.
    site.new_requests();
    let out = site.update(&["-f"]).success();
    assert!(out.stdout.contains("generation 5 is active"), "{out:#?}");
    let requests = site.new_requests();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    assert!(
        requests.iter().all(|request| request.status == 200),
        "{requests:#?}"
    );
    site.assert_active(5, serial_9, "nine", "six");
    assert_eq!(site.node.generations().len(), 5);
}

/// The server side alone: the hook publishes versions and head, skips unchanged content,
/// keeps its serials growing when the generation time goes back, keeps three versions,
/// refuses what is not a node id and skips the root server.
#[test]
fn the_generation_hook_publishes_signed_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let server = Server::new(&root, NODE_ID, &root.join("node/ncf"), POLSTORE);

    let ran = server.generate_at(&rule("one"), &library("one"), "2026-08-21T09:24:10.123Z");
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert_eq!(ran.stderr, "");
    let first = 1_787_304_250;
    assert_eq!(server.head(), Some(first));
    assert_eq!(server.versions(), [first]);
    let version = server.published().join(first.to_string());
    let mut names: Vec<String> = fs::read_dir(&version)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "policies-library-linux.tar.bz2",
            "polstore.manifest",
            "polstore.manifest.sig",
            "rudder.tar.bz2"
        ]
    );
    // The archives are the very files Rudder made (hard links), and the manifest lists
    // both views' files.
    assert_eq!(
        fs::read(version.join("rudder.tar.bz2")).unwrap(),
        fs::read(server.rules_archive()).unwrap()
    );
    let manifest = fs::read_to_string(version.join("polstore.manifest")).unwrap();
    let (serial, entries) = parse_manifest(&manifest);
    assert_eq!(serial, first);
    let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "inputs/failsafe.cf",
            "inputs/promises.cf",
            "inputs/rules/rule.cf",
            "ncf/common/lib.cf",
            "ncf/common/ncf_hash_file",
            "ncf/local/local.cf"
        ]
    );
    // Signed by the server's key: polstore's own verifier accepts it.
    let signature = fs::read_to_string(version.join("polstore.manifest.sig")).unwrap();
    assert!(signature.starts_with("untrusted comment: "), "{signature}");

    // The same content again (the hook run once more, or `all` after a library rebuild
    // that changed nothing for this node): no new version.
    let ran = server.hook("2026-08-21T10:00:00.000Z", &[]);
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert_eq!(
        ran.stdout,
        format!("polstore-rudder-sign: {NODE_ID}: unchanged since serial {first}\n")
    );
    assert_eq!(server.versions(), [first]);
    let ran = server.sign(&["all"]);
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert!(ran.stdout.contains("unchanged since serial"), "{ran:#?}");

    // A generation whose start time is before the last one: the serial still grows.
    let ran = server.generate_at(&rule("two"), &library("one"), "2026-08-21T08:00:00.000Z");
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert_eq!(server.head(), Some(first + 1));

    // Three versions are kept; the newest is head.
    for (index, minute) in ["10", "11", "12"].iter().enumerate() {
        let datetime = format!("2026-08-21T10:{minute}:00.500Z");
        let ran = server.generate_at(&rule(&format!("v{index}")), &library("one"), &datetime);
        assert_eq!(ran.code, 0, "{ran:#?}");
    }
    let versions = server.versions();
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(server.head(), versions.last().copied());
    assert_eq!(versions.last(), Some(&1_787_307_120));
    let leftovers: Vec<_> = fs::read_dir(server.published())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());

    // A new rules archive with the same size and time as a kept version's but other bytes
    // (two generations within a second) would have its etag: its time is moved on.
    let newest = server
        .published()
        .join(format!("{}/rudder.tar.bz2", versions[2]));
    let identity = |path: &Path| {
        let metadata = fs::metadata(path).unwrap();
        (metadata.mtime(), metadata.len())
    };
    // Labels as long as the newest's ("v2"): bzip2 makes most of them the same size.
    let same_size = ('a'..='z')
        .flat_map(|letter| (0..10).map(move |digit| format!("{letter}{digit}")))
        .filter(|label| label != "v2")
        .find(|label| {
            server.write_rules(&rule(label));
            fs::metadata(server.rules_archive()).unwrap().len() == identity(&newest).1
        })
        .expect("no rules archive of the same size");
    let seconds = newest.metadata().unwrap().mtime();
    tool(
        "touch",
        &[
            "-m",
            "-d",
            &format!("@{seconds}"),
            s(&server.rules_archive()),
        ],
    );
    assert_eq!(
        identity(&server.rules_archive()),
        identity(&newest),
        "{same_size}"
    );
    let ran = server.hook("2026-08-21T10:13:00.000Z", &[]);
    assert_eq!(ran.code, 0, "{ran:#?}");
    let published = server
        .published()
        .join(format!("{}/rudder.tar.bz2", server.head().unwrap()));
    assert_ne!(identity(&published), identity(&newest));
    assert_eq!(
        fs::read(&published).unwrap(),
        fs::read(server.rules_archive()).unwrap()
    );

    // What is not a node id is refused, naming it, and nothing is written for it.
    for bad in ["../common", "a b", ".."] {
        let ran = server.sign(&[bad]);
        assert_eq!(ran.code, 1, "{ran:#?}");
        assert_eq!(
            ran.stderr,
            format!("polstore-rudder-sign: {bad}: not a node id\n")
        );
    }
    assert!(!server.share.join("common/polstore").exists());
    // The root server is skipped: it updates itself from its own files.
    fs::create_dir_all(server.share.join("root/rules")).unwrap();
    fs::copy(
        server.rules_archive(),
        server.share.join("root/rules/rudder.tar.bz2"),
    )
    .unwrap();
    let root_policies = server.share.join("root/rules/cfengine-community");
    let ran = server.hook(
        "2026-08-21T11:00:00.000Z",
        &[
            ("RUDDER_NODE_ID", "root"),
            ("RUDDER_POLICIES_DIRECTORY_CURRENT", s(&root_policies)),
        ],
    );
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert!(ran.stderr.contains("root: skipped"), "{ran:#?}");
    assert!(!server.share.join("root/polstore").exists());

    // Without a key: one line, nothing published, and Rudder's warning status, so that
    // the generation goes on for the other nodes.
    let before = server.versions();
    let ran = server.hook(
        "2026-08-21T12:00:00.000Z",
        &[("POLSTORE_RUDDER_KEY", s(&root.join("missing.sec")))],
    );
    assert_eq!(ran.code, 32, "{ran:#?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:#?}");
    assert!(ran.stderr.contains("no signing key at"), "{ran:#?}");
    assert_eq!(server.versions(), before);
}

/// With POLSTORE_RUDDER_EXPIRES_IN, content that did not change is signed again when its
/// newest manifest has no expiry or is past half of its validity, so that signing again
/// (a timer running `polstore-rudder-sign all`) keeps every node on an unexpired version.
#[test]
fn unchanged_content_is_signed_again_before_its_manifest_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let server = Server::new(&root, NODE_ID, &root.join("node/ncf"), POLSTORE);
    let expiring = [("POLSTORE_RUDDER_EXPIRES_IN", "30")];
    let ran = server.generate_at(&rule("one"), &library("one"), "2026-08-21T09:24:10.123Z");
    assert_eq!(ran.code, 0, "{ran:#?}");
    let first = server.head().unwrap();

    // Expiry asked for now; the newest manifest has none.
    let ran = server.hook("2026-08-21T10:00:00.000Z", &expiring);
    assert_eq!(ran.code, 0, "{ran:#?}");
    let second = server.head().unwrap();
    assert!(second > first, "{ran:#?}");
    let manifest = server
        .published()
        .join(second.to_string())
        .join("polstore.manifest");
    let text = fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\nexpires "), "{text}");

    // Within the first half of its 30 days: unchanged.
    let ran = server.hook("2026-08-21T11:00:00.000Z", &expiring);
    assert_eq!(
        ran.stdout,
        format!("polstore-rudder-sign: {NODE_ID}: unchanged since serial {second}\n")
    );

    // Made 40 days ago, so 70 days valid and past half (the script reads the dates, not
    // the signature): signed again.
    let created = text
        .lines()
        .find_map(|line| line.strip_prefix("created "))
        .unwrap();
    let earlier = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{created} - 40 days"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    let earlier = String::from_utf8(earlier.stdout).unwrap();
    fs::remove_file(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace(
            &format!("created {created}"),
            &format!("created {}", earlier.trim()),
        ),
    )
    .unwrap();
    let ran = server.hook("2026-08-21T12:00:00.000Z", &expiring);
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert!(server.head().unwrap() > second, "{ran:#?}");
}

/// A signer that died after it moved a version into place and before it replaced
/// `head` left a version above `head`: the hook run again for that generation (same start
/// time) publishes above it, instead of failing on the name taken.
#[test]
fn a_version_left_above_head_by_a_signer_that_died_is_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let server = Server::new(&root, NODE_ID, &root.join("node/ncf"), POLSTORE);
    let ran = server.generate_at(&rule("one"), &library("one"), "2026-08-21T09:24:10.123Z");
    assert_eq!(ran.code, 0, "{ran:#?}");
    let first = 1_787_304_250;
    // What the signer of the generation of 09:30:00 left when it died before head.
    let left = first + 350;
    tool(
        "cp",
        &[
            "-a",
            s(&server.published().join(first.to_string())),
            s(&server.published().join(left.to_string())),
        ],
    );
    let ran = server.generate_at(&rule("two"), &library("one"), "2026-08-21T09:30:00.000Z");
    assert_eq!(ran.code, 0, "{ran:#?}");
    assert_eq!(ran.stderr, "");
    assert_eq!(server.head(), Some(left + 1));
    assert_eq!(server.versions(), [first, left, left + 1]);
}

/// A web server that sends a response in chunks, announcing no length (which curl's
/// --max-filesize lets through), as a broken or hostile relay or mirror can: the fetch
/// cuts it a byte past its limit (the head's 4 KiB, an archive's POLSTORE_RUDDER_BYTES_MAX)
/// and fails naming the limit, before the node's disk fills; the active generation and
/// both views are unchanged.
#[test]
fn a_response_that_announces_no_length_is_cut_at_the_limit() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let site = Site::new();
    let ran = site.server.generate(&rule("one"), &library("one"));
    assert_eq!(ran.code, 0, "{ran:#?}");
    let out = site.update(&[]);
    assert_eq!(out.code, 0, "{out:#?}");

    // The hostile server: a serial as the head (or, in mode "head", 64 MiB of digits),
    // small manifests, and 64 MiB for each archive, all sent in chunks.
    let dir = site.node.root.join("hostile");
    fs::create_dir_all(&dir).unwrap();
    let mode = dir.join("mode");
    fs::write(&mode, "head").unwrap();
    let port = TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = r#"
import http.server, socketserver, ssl, sys
port, certificate, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        huge = self.path.endswith(".tar.bz2") or (
            self.path.endswith("/head") and open(mode).read() == "head")
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"1" * 65536 if huge else b"1999999999\n"
        try:
            for _ in range(1024 if huge else 1):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
    def log_message(self, *arguments):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
server = socketserver.TCPServer(("127.0.0.1", port), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    let nginx_dir = site.node.root.join("nginx");
    let child = Command::new("python3")
        .args([
            "-c",
            script,
            &port.to_string(),
            s(&nginx_dir.join("server.cert")),
            s(&nginx_dir.join("server.key")),
            s(&mode),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot run python3");
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Killed(child);
    let deadline = Instant::now() + SERVER_START_MAX;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the hostile server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let conf = fs::read_to_string(&site.fetch_conf).unwrap().replace(
        &format!("RUDDER_HTTPS_PORT={}\n", site.nginx.port),
        &format!("RUDDER_HTTPS_PORT={port}\nPOLSTORE_RUDDER_BYTES_MAX=1048576\n"),
    );
    fs::write(&site.fetch_conf, conf).unwrap();
    let state = site.node.root.join("polstore-rudder");
    let base = format!("https://127.0.0.1:{port}/policies/{NODE_ID}/polstore");

    for (what, url, limit) in [
        ("head", format!("{base}/head"), 4096),
        (
            "archive",
            format!("{base}/1999999999/rudder.tar.bz2"),
            1_048_576,
        ),
    ] {
        fs::write(&mode, what).unwrap();
        let before = site.views();
        let out = site.update(&[]);
        assert_eq!(out.code, 1, "{what}: {out:#?}");
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {out:#?}");
        assert!(
            out.stderr.contains(&format!(
                "polstore-rudder-fetch: {url}: more than {limit} bytes"
            )),
            "{what}: {out:#?}"
        );
        assert_eq!(site.views(), before, "{what}");
        // What was written of it: a byte past the limit, no more.
        let written: u64 = fs::read_dir(state.join("incoming"))
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum();
        assert!(
            written <= 1_048_576 + 4096,
            "{what}: {written} bytes written"
        );
    }
}

/// The node's directory on the server can belong to a less trusted user than root
/// (Rudder's webapp writes the rules there). The signer, run as root by the hook, never
/// writes through what that user can plant there: it publishes only into a `polstore/`
/// that root owns and no one else can write, refuses one that is someone else's (one
/// line, Rudder's warning status, nothing published), and a symlink that user keeps
/// planting at the head's temporary name while the hook runs redirects no write.
#[test]
fn the_signer_never_writes_through_what_the_node_directory_s_owner_plants() {
    if skip_unless_root(NEEDS_ROOT) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    tool("chmod", &["0755", s(&root)]);
    let server = Server::new(&root, NODE_ID, &root.join("node/ncf"), POLSTORE);
    server.write_library(&library("one"));
    server.write_rules(&rule("one"));
    // The webapp's: the node's directory and the rules in it.
    tool("chown", &["-R", "nobody", s(&server.node_dir())]);
    let victim = root.join("victim");
    fs::write(&victim, "root's\n").unwrap();
    tool("chmod", &["0600", s(&victim)]);
    let untouched = |victim: &Path| {
        let metadata = fs::symlink_metadata(victim).unwrap();
        assert_eq!(fs::read_to_string(victim).unwrap(), "root's\n");
        assert_eq!((metadata.uid(), metadata.mode() & 0o7777), (0, 0o600));
    };
    let out = server.published();
    let as_nobody = |script: &str| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "timeout", "120", "sh", "-c", script])
            .spawn()
            .expect("cannot run runuser")
    };

    // polstore/ made by that user beforehand: refused, nothing written into it.
    let status = as_nobody(&format!("mkdir {}", s(&out))).wait().unwrap();
    assert!(status.success());
    let ran = server.hook("2026-08-21T09:24:10.123Z", &[]);
    assert_eq!(ran.code, 32, "{ran:#?}");
    assert_eq!(
        ran.stderr,
        format!(
            "polstore-rudder-sign: {NODE_ID}: {} is not a directory of root's (or changed while \
             it was entered); refusing to write into it\n",
            out.display()
        )
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    assert_eq!(server.head(), None);
    fs::remove_dir(&out).unwrap();

    // While the hook runs, that user plants a symlink to a file of root's at the head's
    // temporary name, again and again, as soon as polstore/ is there.
    let stop = root.join("stop");
    let mut planter = as_nobody(&format!(
        "while [ ! -d {out} ]; do [ -e {stop} ] && exit 0; done
         while [ ! -e {stop} ]; do ln -sfn {victim} {out}/.head.new 2>/dev/null; done; true",
        out = s(&out),
        stop = s(&stop),
        victim = s(&victim)
    ));
    let ran = server.hook("2026-08-21T09:25:10.123Z", &[]);
    fs::write(&stop, "").unwrap();
    assert!(planter.wait().unwrap().success());
    assert_eq!(ran.code, 0, "{ran:#?}");
    untouched(&victim);
    let serial = server.head().expect("a version was published");
    assert_eq!(server.versions(), [serial]);
    // Root's and writable by no one else: polstore/, head, the version and its files.
    let version = out.join(serial.to_string());
    let mut published = vec![out.clone(), out.join("head"), version.clone()];
    published.extend(
        fs::read_dir(&version)
            .unwrap()
            .map(|entry| entry.unwrap().path()),
    );
    for path in published {
        let metadata = fs::symlink_metadata(&path).unwrap();
        assert!(!metadata.file_type().is_symlink(), "{}", path.display());
        assert_eq!(metadata.uid(), 0, "{}", path.display());
        assert_eq!(metadata.mode() & 0o022, 0, "{}", path.display());
    }
}

/// The integration's shell scripts pass shellcheck (tools/setup installs it).
#[test]
fn the_rudder_scripts_pass_shellcheck() {
    let scripts: Vec<String> = [
        "node/polstore-rudder-fetch",
        "node/agent-update",
        "node/agent-reset",
        "node/install",
        "server/polstore-rudder-sign",
        "server/92-polstore-sign",
    ]
    .iter()
    .map(|script| format!("{NODE_DIR}/../{script}"))
    .collect();
    let output = Command::new("shellcheck")
        .args(&scripts)
        .output()
        .expect("cannot run shellcheck (tools/setup installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Run by sudo for another user (a Rudder web application that is not root and may pass
/// its environment on), the hook runs nothing that user's environment names: not a script
/// of its choosing, not a key or share of its choosing.
#[test]
fn the_hook_run_through_sudo_keeps_none_of_the_caller_s_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let server = Server::new(&root, NODE_ID, &root.join("node/ncf"), POLSTORE);
    let marker = root.join("ran-as-root");
    let planted = root.join("planted-sign");
    fs::write(&planted, format!("#!/bin/sh\ntouch {}\n", s(&marker))).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o755)).unwrap();
    let before = server.versions();
    let ran = server.hook(
        "2026-08-21T09:24:10.123Z",
        &[
            ("SUDO_USER", "rudder-webapp"),
            ("POLSTORE_RUDDER_SIGN", s(&planted)),
        ],
    );
    assert!(!marker.exists(), "the planted script ran: {ran:#?}");
    // The installed signer (at /usr/local/bin) signs with the installed key, if any: not
    // with this tree's, so this tree gets no version either way.
    assert_eq!(ran.code, 32, "{ran:#?}");
    assert_eq!(server.versions(), before);
}
