//! Review of fleet distribution (issue 13): what a network attacker, a local user on the
//! hub and an operator's slip can do to a repository, a pull and a node's root of trust.
//! Each test is a problem found in review, and holds the fix to it.

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use polstore::format::head::Head;
use polstore::format::manifest::Hash;
use polstore::format::signatures::split_signed;
use polstore::format::signify::SecretKey;
use util::repo::*;
use util::server::{Answer, Server};
use util::*;

/// The paths of what the server served.
fn paths(log: Vec<(String, u64)>) -> Vec<String> {
    log.into_iter().map(|(path, _)| path).collect()
}

fn head_of(repo: &Path, node: &str) -> Head {
    let file = fs::read(repo.join("heads").join(node)).unwrap();
    Head::parse(split_signed(&file).unwrap().1).unwrap()
}

/// `head` as a head file signed by the secret key at `key`.
fn signed_head(head: &Head, key: &Path) -> Vec<u8> {
    let key = SecretKey::parse(&fs::read(key).unwrap()).unwrap();
    let text = head.render();
    format!(
        "{}{text}",
        key.sign(text.as_bytes()).to_file_text("polstore head")
    )
    .into_bytes()
}

/// A hub (`util::repo::Hub`: keys a, b, c 2 of 3, head key h, root version 1) whose
/// repository `server` serves, and a node that trusts root version 1 and pulls from it.
struct Fleet {
    hub: Hub,
    server: Server,
    node: Node,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(dir.path());
        let server = Server::start(&hub.repo);
        let node = pulling_node(&hub.root, &server.url(), "");
        Fleet {
            hub,
            server,
            node,
            _dir: dir,
        }
    }

    /// Root version 2: the same root and manifest keys, head key `h2` instead of `h`;
    /// published, the tree published again under it, and followed by the node.
    fn rotate_head_key(&self) -> Key {
        let h2 = key(&self.hub.dir.join("hub-keys"), "h2");
        let root = self.hub.dir.join("root-2");
        self.hub.create_root(&root, 2, &[0, 1, 2], &h2);
        self.hub.sign_root(&root, &[0, 1]);
        self.hub
            .polstore(&["root", "publish", s(&root), "--repo", s(&self.hub.repo)])
            .success();
        write_tree(&self.hub.src, &[("version.cf", "# version 2\n")]);
        self.hub.publish_with(&[0, 1], &h2, "default").success();
        let json = update(&self.node);
        assert_eq!(json["generation"], 2, "{json}");
        h2
    }
}

/// A root the node followed is its only memory of a rotation: the configured root is
/// older. A record that others can read but not write was never at risk, yet a writer
/// refused the store for it and `verify --repair` moved it into `untrusted/`, so that the
/// node trusted root version 1 again and the head key version 2 dropped counted again.
#[test]
fn a_followed_root_others_can_read_is_made_private_not_forgotten() {
    let fleet = Fleet::new();
    fleet.hub.publish();
    assert_eq!(update(&fleet.node)["generation"], 1);
    fleet.rotate_head_key();
    let recorded = fleet.node.store.join("trusted-root");
    let followed = fs::read(&recorded).unwrap();
    // A restore from a backup, a copy with the wrong umask: readable by others, not
    // writable by them.
    fs::set_permissions(&recorded, fs::Permissions::from_mode(0o644)).unwrap();
    let out = fleet.node.run(&["verify", "--repair"]);
    assert!(
        fs::read(&recorded).is_ok_and(|now| now == followed),
        "verify --repair forgot the followed root: {out:#?}"
    );
    assert_eq!(fs::metadata(&recorded).unwrap().mode() & 0o7777, 0o600);

    // The current head, signed by the head key root version 2 dropped, as under root 1.
    let head = Head {
        root: 1,
        ..head_of(&fleet.hub.repo, "default")
    };
    fleet.server.answer(
        "heads/default",
        Answer::Body(signed_head(&head, &fleet.hub.head.secret)),
    );
    assert_refused(
        &fleet.node,
        &["update"],
        3,
        "heads/default: signed under root version 1, older than the trusted root version 2",
    );
}

/// The same, reached through `update`: a writer makes the record private again, as it
/// does the database, rather than refuse every update until `verify --repair`.
#[test]
fn an_update_makes_a_followed_root_others_can_read_private_and_goes_on() {
    let fleet = Fleet::new();
    fleet.hub.publish();
    assert_eq!(update(&fleet.node)["generation"], 1);
    let h2 = fleet.rotate_head_key();
    let recorded = fleet.node.store.join("trusted-root");
    fs::set_permissions(&recorded, fs::Permissions::from_mode(0o640)).unwrap();
    write_tree(&fleet.hub.src, &[("version.cf", "# version 3\n")]);
    fleet.hub.publish_with(&[0, 1], &h2, "default").success();
    let out = fleet.node.run(&["update", "--json"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(fs::metadata(&recorded).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fleet.node.active_generation(), Some(3));
}

/// `publish --repo` checked that DIR is its own and that others cannot write it, but not
/// the directories below it, and it keeps any file already at an immutable name. Where an
/// admin's slip left `objects/` writable by others, a local user planted wrong content
/// under the name of a file about to be published: the publish kept it, and every node
/// then refused every pull that named it, with nothing on the hub to say why.
#[test]
fn a_repository_directory_others_can_write_is_refused_before_anything_is_kept_from_it() {
    let fleet = Fleet::new();
    fleet.hub.publish();
    assert_eq!(update(&fleet.node)["generation"], 1);
    let objects = fleet.hub.repo.join("objects");
    fs::set_permissions(&objects, fs::Permissions::from_mode(0o777)).unwrap();
    // What user nobody (65534) can do there: a directory of theirs, a file of theirs
    // under the name of the next version's content.
    let content = "# version 2\n";
    let hex = Hash::of(content.as_bytes()).to_hex();
    let planted_dir = objects.join(&hex[..2]);
    if !planted_dir.exists() {
        fs::create_dir(&planted_dir).unwrap();
        std::os::unix::fs::chown(&planted_dir, Some(65534), Some(65534)).unwrap();
    }
    let planted = planted_dir.join(&hex);
    fs::write(
        &planted,
        polstore::format::repo::compress(b"# version 666\n"),
    )
    .unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let head_before = fs::read(fleet.hub.repo.join("heads/default")).unwrap();

    write_tree(&fleet.hub.src, &[("version.cf", content)]);
    let out = fleet.hub.publish_with(&[0, 1], &fleet.hub.head, "default");
    assert_ne!(out.code, 0, "published over a planted object: {out:#?}");
    assert!(
        out.stderr.contains(&format!("{}", objects.display()))
            && out.stderr.contains("others could plant"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read(fleet.hub.repo.join("heads/default")).unwrap(),
        head_before,
        "the head moved"
    );

    // Put right by the operator, the publish goes through and the node gets it.
    fs::set_permissions(&objects, fs::Permissions::from_mode(0o755)).unwrap();
    let out = fleet.hub.publish_with(&[0, 1], &fleet.hub.head, "default");
    assert_ne!(out.code, 0, "a file of another user was kept: {out:#?}");
    assert!(
        out.stderr.contains(&format!("{}", planted_dir.display())),
        "{}",
        out.stderr
    );
    fs::remove_dir_all(&planted_dir).unwrap();
    fleet
        .hub
        .publish_with(&[0, 1], &fleet.hub.head, "default")
        .success();
    assert_eq!(update(&fleet.node)["generation"], 2);
}

/// A head binds a node name to a manifest hash, and the head key is the hub's online key,
/// the one most exposed. Were a manifest silent about the node or group it was published
/// for, that key alone would move any node to the policy of any other. A repository
/// manifest names it (`node NAME`, signed by the manifest keys), and a pull refuses one
/// that does not name `fetch.node`.
#[test]
fn a_head_key_alone_cannot_give_a_node_the_policy_of_another_node() {
    let fleet = Fleet::new();
    fleet.node.set_config("fetch", "node", "\"db\"");
    write_tree(
        &fleet.hub.src,
        &[("role.cf", "# the web servers' policy\n")],
    );
    fleet
        .hub
        .publish_with(&[0, 1], &fleet.hub.head, "web")
        .success();
    // What the thief of h signs: the head of db, naming web's manifest.
    let web = head_of(&fleet.hub.repo, "web");
    let forged = Head {
        node: "db".into(),
        ..web
    };
    fleet.server.answer(
        "heads/db",
        Answer::Body(signed_head(&forged, &fleet.hub.head.secret)),
    );
    let out = fleet.node.run(&["update"]);
    assert_ne!(
        out.code, 0,
        "node db activated the manifest published for web: {out:#?}"
    );
    assert_eq!(fleet.node.active_generation(), None);
}

/// Recovery from stolen root keys (a threshold of them) or lost ones is a new root given
/// to every node out of band, as the first was. A node keeps the root it followed in
/// `STORE/trusted-root`, with the chain it followed (the blake3 of each root's text), and
/// trusts it over `trust.root` only while `trust.root` is in that chain: the operator's
/// new root version 1, of another chain, is the new anchor. (An older root of the same
/// chain still loses to the record: `an_older_root_of_the_followed_chain_loses_to_the_record`.)
#[test]
fn a_root_the_operator_installs_from_a_new_chain_is_trusted_over_the_followed_one() {
    let fleet = Fleet::new();
    fleet.hub.publish();
    assert_eq!(update(&fleet.node)["generation"], 1);
    fleet.rotate_head_key();
    // A new hub, with new keys and a root version 1 of its own, and its repository.
    let other = tempfile::tempdir().unwrap();
    let hub = Hub::new(other.path());
    write_tree(&hub.src, &[("version.cf", "# the new chain\n")]);
    // A serial above the old hub's (both hubs publish within one second here).
    let args = hub.publish_args(&[0, 1], &hub.head, &["--serial", "9999999999"]);
    hub.polstore(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .success();
    let server = Server::start(&hub.repo);
    // The operator installs its root where trust.root points, and its URL.
    let configured = fleet.node.root.join("etc").join("root");
    fs::write(&configured, fs::read(&hub.root).unwrap()).unwrap();
    fleet
        .node
        .set_config("fetch", "url", &toml_string(&server.url()));
    let out = fleet.node.run(&["update", "--json"]);
    assert_eq!(
        out.code, 0,
        "the configured root of the new chain was passed over: {out:#?}"
    );
    assert_eq!(fleet.node.active_generation(), Some(3));
}

/// A signature list holds at most 16 signatures, and a root file with more is refused
/// whole. `root sign` added a 17th all the same: the root then could not be read, by
/// nodes, by `root publish` or by `root sign` itself.
#[test]
fn root_sign_refuses_a_seventeenth_signature_and_leaves_the_root_readable() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Key> = (0..17)
        .map(|index| key(&dir.path().join("keys"), &format!("k{index}")))
        .collect();
    let root = dir.path().join("root");
    let mut args = vec!["root", "create", "-o", s(&root), "--version", "1"];
    for key in &keys {
        args.extend(["--root-key", s(&key.public)]);
    }
    args.extend(["--manifest-key", s(&keys[0].public)]);
    args.extend(["--head-key", s(&keys[0].public)]);
    run_polstore(dir.path(), &args, &[], None).success();
    for key in &keys[..16] {
        run_polstore(
            dir.path(),
            &["root", "sign", s(&root), "--key", s(&key.secret)],
            &[],
            None,
        )
        .success();
    }
    let out = run_polstore(
        dir.path(),
        &["root", "sign", s(&root), "--key", s(&keys[16].secret)],
        &[],
        None,
    );
    assert_ne!(out.code, 0, "a 17th signature was added: {out:#?}");
    assert!(out.stderr.contains("16 signatures"), "{}", out.stderr);
    run_polstore(dir.path(), &["root", "show", s(&root)], &[], None).success();
}

/// A policy a check refused stays named by the head until the hub publishes a fix, and a
/// node updates every few minutes. Were the refusal forgotten, each update would fetch
/// the manifest and every new object again and run every check again, to be refused
/// again (for a first deployment, the whole tree on every run of every node). The store
/// remembers the manifest hash the last pull's candidate was refused with by a check that
/// judged it (`fetched/refused`), and a head naming it costs one request and reports the
/// refusal again; `update --force` checks it again.
#[test]
fn a_policy_a_check_refused_is_not_fetched_again_until_the_head_changes() {
    let fleet = Fleet::new();
    fleet.hub.publish();
    assert_eq!(update(&fleet.node)["generation"], 1);
    fleet.node.add_check("refuse", "#!/bin/sh\nexit 1\n");
    write_tree(&fleet.hub.src, &[("version.cf", "# version 2\n")]);
    fleet.hub.publish();
    assert_refused(&fleet.node, &["update"], 3, "refuse");
    let first = paths(fleet.server.take_log());
    assert!(first.len() >= 3, "{first:?}");
    assert_refused(&fleet.node, &["update"], 3, "refuse");
    assert_eq!(
        paths(fleet.server.take_log()),
        ["heads/default"],
        "the refused policy was fetched again"
    );
}

/// The operator puts back the first root of the chain a node followed (an old copy
/// restored, say): the newer root the node recorded still wins, so keys it dropped stay
/// dropped.
#[test]
fn an_older_root_of_the_followed_chain_loses_to_the_record() {
    let fleet = Fleet::new();
    fleet.hub.publish();
    assert_eq!(update(&fleet.node)["generation"], 1);
    fleet.rotate_head_key();
    let configured = fleet.node.root.join("etc").join("root");
    fs::write(&configured, fs::read(&fleet.hub.root).unwrap()).unwrap();
    assert_eq!(fleet.node.status()["trust"]["root_version"], 2);
}
