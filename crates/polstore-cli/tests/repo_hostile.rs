//! `polstore update` pulling from a repository (`[fetch] url`, repo-format.md § Pulling)
//! served by a hostile HTTP server: wrong, truncated, endless and slow bodies, replayed,
//! expired, foreign and mixed heads and manifests, redirects, error statuses, and a
//! manifest or a root short of its signatures. Each is refused with one line, its exit
//! code and the active generation unchanged; verified objects fetched before a failure
//! are kept, and the next pull fetches only the rest; an unchanged head costs one small
//! request.
//!
//! The server is the test's own (`Server`): it serves the real repository a hub
//! published, except for the paths a test gives another `Answer`.

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use polstore::format::head::Head;
use polstore::format::manifest::Hash;
use polstore::format::repo::{compress, compressed_bytes_max, decompress};
use polstore::format::signatures::split_signed;
use polstore::format::signify::SecretKey;
use polstore::format::timestamp::Timestamp;
use serde_json::Value;
use util::server::{Answer, Framing, Server};
use util::*;

/// A hub and a node in the node's temp directory. The hub has keys `a`, `b`, `c` (the
/// root and manifest roles, 2 of 3 each) and `h` (the head role), root version 1, a policy
/// tree and a repository that `server` serves; the node's store trusts root version 1 and
/// pulls from `server`.
struct Fleet {
    node: Node,
    hub: PathBuf,
    src: PathBuf,
    repo: PathBuf,
    server: Server,
}

/// The file each publish changes: last of the tree in path order, so that it is the last
/// object a pull asks for.
const VERSION_FILE: &str = "version.cf";

impl Fleet {
    /// A fleet whose node pulls the head of `node` (`default` when `None`).
    fn new(node: Option<&str>) -> Fleet {
        let owner = Node::new();
        let hub = owner.root.join("hub");
        let (keys, src, repo) = (hub.join("keys"), hub.join("src"), hub.join("repo"));
        fs::create_dir_all(&keys).unwrap();
        let fleet = Fleet {
            server: Server::start(&repo),
            node: owner,
            src,
            repo,
            hub,
        };
        for name in ["a", "b", "c", "h"] {
            fleet.hub_run(&[
                "keygen",
                "--public",
                s(&fleet.key(&format!("{name}.pub"))),
                "--secret",
                s(&fleet.key(&format!("{name}.sec"))),
            ]);
        }
        let root_dir = fleet.node.root.join("etc").join("root");
        fs::create_dir_all(&root_dir).unwrap();
        set_mode(&root_dir, 0o755);
        let root = root_dir.join("root");
        fleet.create_root(&root, 1, "h.pub");
        fleet.hub_run(&["root", "publish", s(&root), "--repo", s(&fleet.repo)]);
        write_tree(
            &fleet.src,
            &[
                ("promises.cf", POLICY),
                ("lib/common.cf", "# common\n"),
                ("lib/extra.cf", "# extra\n"),
            ],
        );
        let config = fleet.node.root.join("polstore.toml");
        let node_line = node.map_or(String::new(), |node| format!("node = \"{node}\"\n"));
        fs::write(
            &config,
            format!(
                "view = {view}\n\n[trust]\nroot = {root}\n\n[checks]\ndir = {checks}\n\
                 entry_points = [\"promises.cf\"]\n\n[agent]\ncommand = []\n\n\
                 [fetch]\nurl = \"{url}\"\ntimeout_secs = 5\n{node_line}",
                view = toml_string(s(&fleet.node.view)),
                root = toml_string(s(&root)),
                checks = toml_string(s(&fleet.node.checks)),
                url = fleet.server.url(),
            ),
        )
        .unwrap();
        fleet.hub_run(&["init", "--config", s(&config)]);
        fleet
    }

    fn key(&self, name: &str) -> PathBuf {
        self.hub.join("keys").join(name)
    }

    /// Runs `polstore ARGS`, which must succeed.
    fn hub_run(&self, args: &[&str]) -> Out {
        self.node.run(args).success()
    }

    /// Writes root version `version` at `path`: keys `a`, `b` and `c` for the root and
    /// manifest roles, 2 of 3 each, and `head_key` for the head role; signed by `a` and
    /// `b`, and also, at `path-short`, by `a` alone.
    fn create_root(&self, path: &Path, version: u64, head_key: &str) {
        let (a, b, c) = (self.key("a.pub"), self.key("b.pub"), self.key("c.pub"));
        let (version, head_key) = (version.to_string(), self.key(head_key));
        let mut create = vec!["root", "create", "-o", s(path), "--version", &version];
        for role in ["--root-key", "--manifest-key"] {
            create.extend([role, s(&a), role, s(&b), role, s(&c)]);
        }
        create.extend(["--root-threshold", "2", "--manifest-threshold", "2"]);
        create.extend(["--head-key", s(&head_key)]);
        self.hub_run(&create);
        let short = path.with_extension("short");
        fs::copy(path, &short).unwrap();
        for (signer, file) in [("a.sec", short.as_path()), ("a.sec", path), ("b.sec", path)] {
            self.hub_run(&["root", "sign", s(file), "--key", s(&self.key(signer))]);
        }
    }

    /// Publishes version `version` of the tree (its `version.cf` changed) for `node`
    /// (`default` when `None`), its manifest signed by `a` and `b`, its head by `h`.
    fn publish(&self, version: u32, node: Option<&str>) {
        self.publish_with_head_key(version, node, "h.sec");
    }

    /// [`Fleet::publish`], its head signed by `head_key`.
    fn publish_with_head_key(&self, version: u32, node: Option<&str>, head_key: &str) {
        write_tree(
            &self.src,
            &[(VERSION_FILE, &format!("# version {version}\n"))],
        );
        let (a, b, h) = (self.key("a.sec"), self.key("b.sec"), self.key(head_key));
        let mut args = vec![
            "publish",
            s(&self.src),
            "--repo",
            s(&self.repo),
            "--key",
            s(&a),
            "--key",
            s(&b),
            "--head-key",
            s(&h),
        ];
        if let Some(node) = node {
            args.extend(["--node", node]);
        }
        self.hub_run(&args);
    }

    /// `heads/NODE` as the repository holds it now.
    fn head_file(&self, node: &str) -> Vec<u8> {
        fs::read(self.repo.join("heads").join(node)).unwrap()
    }

    fn head(&self, node: &str) -> Head {
        let file = self.head_file(node);
        Head::parse(split_signed(&file).unwrap().1).unwrap()
    }

    /// `head` as a head file signed by the hub's head key.
    fn signed_head(&self, head: &Head) -> Vec<u8> {
        self.signed_head_by(head, "h.sec")
    }

    /// `head` as a head file signed by the secret key `key`.
    fn signed_head_by(&self, head: &Head, key: &str) -> Vec<u8> {
        let key = SecretKey::parse(&fs::read(self.key(key)).unwrap()).unwrap();
        let text = head.render();
        let signature = key.sign(text.as_bytes()).to_file_text("polstore head");
        format!("{signature}{text}").into_bytes()
    }

    /// The compressed object of `content` as the repository holds it, and its path.
    fn object(&self, content: &str) -> (String, Vec<u8>) {
        let hex = Hash::of(content.as_bytes()).to_hex();
        let path = format!("objects/{}/{hex}", &hex[..2]);
        let bytes = fs::read(self.repo.join(&path)).unwrap();
        (path, bytes)
    }

    /// `update --json`, which must succeed, as JSON.
    fn update(&self) -> Value {
        let out = self.node.run(&["update", "--json"]).success();
        serde_json::from_str(&out.stdout).expect("update --json prints JSON")
    }

    /// `update`, refused with `exit` and `fragment` (util's `assert_refused`).
    fn refused(&self, exit: i32, fragment: &str) -> Out {
        assert_refused(&self.node, &["update"], exit, fragment)
    }

    /// The hashes of what `STORE/fetched/objects` holds.
    fn fetched(&self) -> BTreeSet<String> {
        let Ok(listing) = fs::read_dir(self.node.store.join("fetched").join("objects")) else {
            return BTreeSet::new();
        };
        listing
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    /// The URL of `path` on the server, as a refusal names it.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }
}

fn hashes(contents: &[&str]) -> BTreeSet<String> {
    contents
        .iter()
        .map(|content| Hash::of(content.as_bytes()).to_hex())
        .collect()
}

/// The objects of the tree a fresh node fetches before `version.cf`'s.
fn before_version_file() -> BTreeSet<String> {
    hashes(&[POLICY, "# common\n", "# extra\n"])
}

#[test]
fn a_wrong_object_is_refused_naming_its_file_and_the_verified_ones_are_kept() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let (object, real) = fleet.object("# version 1\n");
    let fragment = format!("rejected by the integrity check: {VERSION_FILE}: its object {object}");
    let flipped: Vec<u8> = real.iter().map(|byte| byte ^ 0xff).collect();
    let same_size_other_content = compress(b"# version 9\n");
    let larger_content = compress(b"# version 1 and then some more\n");
    for (wrong, reason) in [
        (flipped, "not a gzip stream"),
        (same_size_other_content, "does not match its hash"),
        (larger_content, "decompresses to more than 12 bytes"),
    ] {
        fleet.server.answer(&object, Answer::Body(wrong));
        let out = fleet.refused(3, &fragment);
        assert!(out.stderr.contains(reason), "{}", out.stderr);
        assert_eq!(fleet.node.active_generation(), None);
        assert_eq!(fleet.node.generations(), Vec::<u64>::new());
        assert_eq!(fleet.fetched(), before_version_file());
    }
    fleet.server.honest();
    let json = fleet.update();
    assert_eq!(json["generation"], 1, "{json}");
    assert_eq!(json["pulled"]["objects"], 1, "{json}");
    assert_eq!(fleet.fetched(), BTreeSet::new());
}

#[test]
fn a_truncated_body_is_refused() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let (object, real) = fleet.object("# version 1\n");
    fleet.server.answer(
        &object,
        Answer::Truncated {
            announced: real.len() as u64 + 100,
            body: real,
        },
    );
    let closed = "the server closed the connection before the end of its answer";
    fleet.refused(1, &format!("pull of {}: {closed}", fleet.url(&object)));
    assert_eq!(fleet.node.active_generation(), None);
    assert_eq!(fleet.fetched(), before_version_file());

    let head = fleet.head_file("default");
    fleet.server.answer(
        "heads/default",
        Answer::Truncated {
            announced: head.len() as u64,
            body: head[..head.len() / 2].to_vec(),
        },
    );
    let head_closed = format!("pull of {}: {closed}", fleet.url("heads/default"));
    fleet.refused(1, &head_closed);
    fleet.server.answer("heads/default", Answer::Hangup);
    fleet.refused(1, &head_closed);
    fleet.server.honest();
    assert_eq!(fleet.update()["generation"], 1);
}

/// Sets `fetch.timeout_secs`.
fn set_timeout(node: &Node, secs: u64) {
    node.set_config("fetch", "timeout_secs", &secs.to_string());
}

#[test]
fn an_endless_body_is_cut_at_its_kind_s_limit_at_once() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    // Long enough that only the limit, not the deadline, can end these pulls in time.
    set_timeout(&fleet.node, 60);
    let (object, _) = fleet.object("# version 1\n");
    let object_limit = compressed_bytes_max("# version 1\n".len() as u64);
    let head_limit = 16 << 10;
    // What the kernel's socket buffers may hold beyond what polstore read.
    let buffered = 16 << 20;
    for (path, limit) in [
        (object.as_str(), object_limit),
        ("heads/default", head_limit),
    ] {
        for framing in [Framing::Length, Framing::Chunked, Framing::Close] {
            fleet.server.honest();
            fleet.server.answer(path, Answer::Endless(framing));
            fleet.server.take_log();
            let started = Instant::now();
            fleet.refused(
                1,
                &format!(
                    "pull of {}: the server sent more than the {limit} bytes such a file may have",
                    fleet.url(path)
                ),
            );
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(15),
                "{path} {framing:?}: {took:?}"
            );
            let sent: u64 = fleet
                .server
                .take_log()
                .iter()
                .filter(|(served, _)| served == path)
                .map(|(_, bytes)| bytes)
                .sum();
            assert!(
                sent < limit + buffered,
                "{path} {framing:?}: the server could send {sent} bytes"
            );
            assert_eq!(fleet.node.active_generation(), None);
        }
    }
    fleet.server.honest();
    fleet.server.answer("heads/default", Answer::EndlessHeaders);
    let started = Instant::now();
    fleet.refused(1, &format!("pull of {}: ", fleet.url("heads/default")));
    assert!(started.elapsed() < Duration::from_secs(15));
    fleet.server.honest();
    assert_eq!(fleet.update()["generation"], 1);
}

#[test]
fn a_slow_server_is_given_up_when_the_fetch_timeout_runs_out() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    set_timeout(&fleet.node, 2);
    let (object, _) = fleet.object("# version 1\n");
    for (path, answer) in [
        (object.as_str(), Answer::Trickle),
        (object.as_str(), Answer::SilentBody),
        (object.as_str(), Answer::Silent),
        ("heads/default", Answer::Trickle),
        ("heads/default", Answer::Silent),
    ] {
        fleet.server.honest();
        fleet.server.answer(path, answer);
        let started = Instant::now();
        let out = fleet.refused(1, &format!("pull of {}: ", fleet.url(path)));
        let took = started.elapsed();
        assert!(out.stderr.contains("fetch.timeout_secs"), "{}", out.stderr);
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(20),
            "{path}: {took:?}"
        );
        assert_eq!(fleet.node.active_generation(), None);
    }
    assert_eq!(fleet.fetched(), before_version_file());
}

#[test]
fn a_replayed_head_of_a_version_the_node_skipped_is_refused() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    fleet.publish(2, None);
    let old = fleet.head_file("default");
    let old_serial = fleet.head("default").serial;
    fleet.publish(3, None);
    let json = fleet.update();
    let serial = fleet.head("default").serial;
    assert_eq!(json["serial"], serial, "{json}");
    fleet.server.answer("heads/default", Answer::Body(old));
    fleet.refused(
        3,
        &format!(
            "rejected by the freshness check: heads/default: names serial {old_serial}, not above the highest accepted serial {serial}"
        ),
    );
    assert_eq!(fleet.node.active_generation(), Some(1));
}

#[test]
fn a_replayed_head_of_a_kept_generation_is_refused() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    assert_eq!(fleet.update()["generation"], 1);
    let old = fleet.head_file("default");
    let old_serial = fleet.head("default").serial;
    fleet.publish(2, None);
    assert_eq!(fleet.update()["generation"], 2);
    let serial = fleet.head("default").serial;
    fleet.server.answer("heads/default", Answer::Body(old));
    fleet.refused(
        3,
        &format!(
            "rejected by the freshness check: heads/default: names serial {old_serial}, not above the highest accepted serial {serial}"
        ),
    );
    assert_eq!(fleet.node.active_generation(), Some(2));
    // The current head, signed again by the hub's timer, is still no news.
    fleet.server.honest();
    assert_eq!(fleet.update()["outcome"], "unchanged");
}

#[test]
fn a_head_out_of_its_validity_or_signed_by_another_role_is_refused() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let now = Timestamp::now().unix_secs();
    let head = fleet.head("default");

    let expired = Head {
        created: Timestamp::from_unix_secs(now - 7200),
        expires: Timestamp::from_unix_secs(now - 3600),
        ..head.clone()
    };
    fleet
        .server
        .answer("heads/default", Answer::Body(fleet.signed_head(&expired)));
    fleet.refused(
        3,
        &format!(
            "rejected by the freshness check: heads/default: expired at {}",
            expired.expires
        ),
    );

    let future = Head {
        created: Timestamp::from_unix_secs(now + 3600),
        expires: Timestamp::from_unix_secs(now + 7200),
        ..head.clone()
    };
    fleet
        .server
        .answer("heads/default", Answer::Body(fleet.signed_head(&future)));
    fleet.refused(3, "heads/default: created ");

    // Signed by a manifest key, which the head role does not name.
    fleet.server.answer(
        "heads/default",
        Answer::Body(fleet.signed_head_by(&head, "a.sec")),
    );
    fleet.refused(
        3,
        "rejected by the integrity check: heads/default: signed by 0 of the 1 keys the head role requires (not of the role: ",
    );
    assert_eq!(fleet.node.active_generation(), None);
    assert_eq!(fleet.fetched(), BTreeSet::new());
    fleet.server.honest();
    assert_eq!(fleet.update()["generation"], 1);
}

#[test]
fn a_root_short_of_signatures_and_a_head_under_the_older_root_are_refused() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    assert_eq!(fleet.update()["generation"], 1);
    let old_head = fleet.head_file("default");

    // Root version 2: the same root and manifest keys, the head key h2 for h.
    let (h2_pub, h2_sec) = (fleet.key("h2.pub"), fleet.key("h2.sec"));
    fleet.hub_run(&["keygen", "--public", s(&h2_pub), "--secret", s(&h2_sec)]);
    let root = fleet.hub.join("root-2");
    fleet.create_root(&root, 2, "h2.pub");
    fleet.hub_run(&["root", "publish", s(&root), "--repo", s(&fleet.repo)]);
    fleet.publish_with_head_key(2, None, "h2.sec");

    let trusted_root = fleet.node.store.join("trusted-root");
    fleet.server.answer(
        "roots/2.root",
        Answer::Body(fs::read(root.with_extension("short")).unwrap()),
    );
    fleet.refused(
        3,
        "rejected by the integrity check: roots/2.root: root version 2: by the trusted root: signed by 1 of the 2 keys the root role requires",
    );
    assert!(
        !trusted_root.exists(),
        "a root short of signatures was kept"
    );
    fleet.server.honest();
    assert_eq!(fleet.update()["generation"], 2);
    // The root as the repository served it, after the chain that led to it.
    assert!(
        fs::read(&trusted_root)
            .unwrap()
            .ends_with(&fs::read(&root).unwrap())
    );

    fleet.server.answer("heads/default", Answer::Body(old_head));
    fleet.refused(
        3,
        "rejected by the freshness check: heads/default: signed under root version 1, older than the trusted root version 2",
    );
    // The current head signed by h, which root version 2 no longer names.
    let head = fleet.head("default");
    fleet
        .server
        .answer("heads/default", Answer::Body(fleet.signed_head(&head)));
    fleet.refused(
        3,
        "rejected by the integrity check: heads/default: signed by 0 of the 1 keys the head role requires (not of the role: ",
    );
    assert_eq!(fleet.node.active_generation(), Some(2));
}

#[test]
fn the_head_of_another_node_is_refused() {
    let fleet = Fleet::new(Some("db"));
    fleet.publish(1, Some("web"));
    fleet.refused(
        1,
        &format!(
            "pull of {}: the server has no head for node db (404)",
            fleet.url("heads/db")
        ),
    );
    fleet
        .server
        .answer("heads/db", Answer::Body(fleet.head_file("web")));
    fleet.refused(
        3,
        "rejected by the integrity check: heads/db: is the head of node web, not of db",
    );
    assert_eq!(fleet.node.active_generation(), None);
    assert_eq!(fleet.fetched(), BTreeSet::new());
}

#[test]
fn a_manifest_of_another_version_than_the_head_s_is_refused() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let first = fleet.head("default");
    let first_manifest = format!("manifests/{}", first.manifest.to_hex());

    // A head signed with the hash of one manifest and the serial of another.
    let mixed = Head {
        serial: first.serial + 5,
        ..first.clone()
    };
    fleet
        .server
        .answer("heads/default", Answer::Body(fleet.signed_head(&mixed)));
    fleet.refused(
        3,
        &format!(
            "rejected by the integrity check: {first_manifest}: has serial {}, the head names {} (mixed versions)",
            first.serial, mixed.serial
        ),
    );
    fleet.server.honest();
    assert_eq!(fleet.update()["generation"], 1);

    // The new head, and the old manifest under the new one's name.
    fleet.publish(2, None);
    let second = fleet.head("default");
    let second_manifest = format!("manifests/{}", second.manifest.to_hex());
    fleet.server.answer("deltas/", Answer::Status(404, None));
    fleet.server.answer(
        &second_manifest,
        Answer::Body(fs::read(fleet.repo.join(&first_manifest)).unwrap()),
    );
    fleet.refused(
        3,
        &format!(
            "rejected by the integrity check: {second_manifest}: is not the manifest the head names"
        ),
    );
    // The old manifest's delta under the new one's name.
    fleet.server.honest();
    let delta = format!(
        "deltas/{}/{}",
        second.manifest.to_hex(),
        first.manifest.to_hex()
    );
    fleet.server.answer(
        &delta,
        Answer::Body(fs::read(fleet.repo.join(&first_manifest)).unwrap()),
    );
    fleet.refused(3, &format!("rejected by the integrity check: {delta}: "));
    assert_eq!(fleet.node.active_generation(), Some(1));
    assert_eq!(fleet.fetched(), BTreeSet::new());
    fleet.server.honest();
    let json = fleet.update();
    assert_eq!(json["generation"], 2, "{json}");
    assert_eq!(json["pulled"]["delta"], true, "{json}");
}

#[test]
fn a_redirect_is_refused_naming_where_it_points() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let (object, _) = fleet.object("# version 1\n");
    for (path, code) in [("heads/default", 301), (object.as_str(), 302)] {
        let target = format!("http://elsewhere.example/{path}");
        fleet
            .server
            .answer(path, Answer::Status(code, Some(target.clone())));
        fleet.refused(
            1,
            &format!(
                "pull of {}: redirect ({code}) to {target} refused",
                fleet.url(path)
            ),
        );
        fleet.server.honest();
    }
    assert_eq!(fleet.node.active_generation(), None);
    assert_eq!(fleet.fetched(), before_version_file());
}

#[test]
fn a_manifest_needs_its_role_s_threshold_of_keys_not_of_signatures() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let path = format!("manifests/{}", fleet.head("default").manifest.to_hex());
    let signed = decompress(&fs::read(fleet.repo.join(&path)).unwrap(), 1 << 20).unwrap();
    let (signatures, manifest) = split_signed(&signed).unwrap();
    assert_eq!(signatures.len(), 2);
    let by_a = signatures[0].to_file_text("polstore manifest signed by a");
    for list in [by_a.clone(), by_a.repeat(2)] {
        let mut file = list.into_bytes();
        file.extend_from_slice(manifest);
        fleet.server.answer(&path, Answer::Body(compress(&file)));
        fleet.refused(
            3,
            "rejected by the integrity check: polstore.manifest.sig: signed by 1 of the 2 keys the manifest role requires",
        );
        assert_eq!(fleet.node.active_generation(), None);
        assert_eq!(fleet.fetched(), BTreeSet::new());
    }
    fleet.server.honest();
    assert_eq!(fleet.update()["generation"], 1);
}

#[test]
fn an_error_status_is_refused_and_the_next_pull_fetches_only_the_rest() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    let (object, _) = fleet.object("# version 1\n");
    for code in [500, 403] {
        fleet.server.answer(&object, Answer::Status(code, None));
        fleet.refused(
            1,
            &format!(
                "pull of {}: the server answered HTTP {code}",
                fleet.url(&object)
            ),
        );
        assert_eq!(fleet.node.active_generation(), None);
        assert_eq!(fleet.fetched(), before_version_file());
    }
    fleet.server.honest();
    fleet.server.take_log();
    let json = fleet.update();
    assert_eq!(json["generation"], 1, "{json}");
    assert_eq!(json["pulled"]["objects"], 1, "{json}");
    assert_eq!(json["pulled"]["requests"], 3, "{json}");
    let head = fleet.head("default");
    let paths: Vec<String> = fleet
        .server
        .take_log()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        paths,
        [
            "heads/default".to_string(),
            format!("manifests/{}", head.manifest.to_hex()),
            object,
        ]
    );
    assert_eq!(fleet.fetched(), BTreeSet::new());
}

#[test]
fn an_unchanged_head_costs_one_small_request() {
    let fleet = Fleet::new(None);
    fleet.publish(1, None);
    assert_eq!(fleet.update()["generation"], 1);
    // Signed again by the hub's timer: the same manifest under a new head.
    fleet.publish(1, None);
    fleet.server.take_log();
    let json = fleet.update();
    assert_eq!(json["outcome"], "unchanged", "{json}");
    assert_eq!(json["pulled"]["requests"], 1, "{json}");
    let log = fleet.server.take_log();
    assert_eq!(log.len(), 1, "{:?}", log);
    let (path, bytes) = &log[0];
    assert_eq!(path, "heads/default");
    assert!(*bytes < 1024, "the unchanged head cost {bytes} bytes");
}
