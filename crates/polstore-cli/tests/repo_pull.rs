//! Fleet distribution as a user sets it up: a hub publishes into a repository
//! (`publish --repo`) that a real nginx serves on 127.0.0.1, and nodes configured with
//! `[fetch] url` pull and activate only what changed; what that costs on the wire; roots of
//! trust with thresholds (2 of 3), signed with polstore and with `signify-openbsd`; a
//! root rotation every node follows, after which the old keys are refused; HTTPS with a
//! CA file. Hostile servers are in `repo_hostile.rs`.

mod util;

use std::fs;

use util::repo::*;
use util::*;

#[test]
fn nodes_pull_only_what_changed_and_an_unchanged_head_costs_one_small_request() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(tmp.path());
    let web = Web::start(&tmp.path().join("web"), &hub.repo, false);
    hub.publish();
    let node = pulling_node(&hub.root, &web.url(), "");

    // The first pull fetches everything.
    let first = update(&node);
    assert_eq!(first["generation"], 1, "{first}");
    let (_, _, objects, delta) = pulled(&first);
    assert_eq!(objects, 41);
    assert!(!delta);
    assert_eq!(
        fs::read_to_string(node.view.join("promises.cf")).unwrap(),
        POLICY
    );

    // Nothing new: one request, the head, under 1 KB.
    let unchanged = update(&node);
    assert_eq!(unchanged["outcome"], "unchanged", "{unchanged}");
    let (requests, bytes, objects, _) = pulled(&unchanged);
    assert_eq!((requests, objects), (1, 0));
    assert!(bytes < 1024, "{bytes}");

    // One file changed: the head, the manifest's delta and the one object; the metadata
    // (all but the object) under 4 KB.
    let changed = "# library file 7, changed\n";
    fs::write(hub.src.join("lib-07.cf"), changed).unwrap();
    let published = hub.publish();
    assert_eq!(published["objects_written"], 1, "{published}");
    let second = update(&node);
    assert_eq!(second["generation"], 2, "{second}");
    assert_eq!(second["files_written"], 1, "{second}");
    let (requests, bytes, objects, delta) = pulled(&second);
    assert_eq!((requests, objects), (3, 1));
    assert!(delta);
    let object = object_size(&hub.repo, changed.as_bytes());
    assert!(
        bytes <= object + 4096,
        "{bytes} bytes for a {object}-byte object"
    );
    assert_eq!(
        fs::read_to_string(node.view.join("lib-07.cf")).unwrap(),
        changed
    );

    // A second node, set up with init's own options, gets the whole manifest (it has no
    // base) and every object.
    let other = Node::new();
    let root = other.root.join("root");
    fs::copy(&hub.root, &root).unwrap();
    other
        .run(&[
            "init",
            "--view",
            s(&other.view),
            "--trust-root",
            s(&root),
            "--url",
            &web.url(),
        ])
        .success();
    other.configure_for_tests();
    let config = fs::read_to_string(other.config_path()).unwrap();
    assert!(config.contains("\nrequire_signature = true\n"), "{config}");
    let (_, _, objects, delta) = pulled(&update(&other));
    assert_eq!((objects, delta), (41, false));
    // A node or group of its own shares every object: publishing it writes none.
    let out = hub.publish_with(&[0, 1], &hub.head, "web").success();
    let web_node: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(web_node["objects_written"], 0, "{web_node}");

    // The hub's timer with nothing changed: the manifest is kept, only the head is new,
    // and nodes stay on what they have.
    let refreshed = hub.publish();
    assert_eq!(refreshed["outcome"], "refreshed", "{refreshed}");
    assert_eq!(refreshed["serial"], published["serial"]);
    assert_eq!(update(&node)["outcome"], "unchanged");
}

#[test]
fn a_two_of_three_root_refuses_one_signature_and_accepts_two_signify_signers_included() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(tmp.path());
    // A node that takes its policy from a drop, with the same root of trust.
    let web = Web::start(&tmp.path().join("web"), &hub.repo, false);
    let node = pulling_node(&hub.root, &web.url(), "");
    node.set_config("fetch", "url", "\"http://127.0.0.1:1/\"");
    let tree = node.tree("gen1", &[("promises.cf", POLICY)]);
    let manifest = tree.join("polstore.manifest");
    node.run(&["manifest", s(&tree), "--serial", "5", "-o", s(&manifest)])
        .success();
    let signature = tree.join("polstore.manifest.sig");
    node.run(&["sign", "--key", s(&hub.keys[0].secret), s(&manifest)])
        .success();
    let refused = assert_ingest_refused(
        &node,
        &tree,
        "rejected by the integrity check: polstore.manifest.sig: signed by 1 of the 2 keys the manifest role requires",
    );
    assert!(refused.stderr.contains("valid: "), "{}", refused.stderr);
    // The second signer uses signify itself, and joins its signature to the list.
    let second = tmp.path().join("b.sig");
    tool(
        "signify-openbsd",
        &[
            "-S",
            "-s",
            s(&hub.keys[1].secret),
            "-m",
            s(&manifest),
            "-x",
            s(&second),
        ],
    );
    let mut list = fs::read(&signature).unwrap();
    list.extend(fs::read(&second).unwrap());
    fs::write(&signature, list).unwrap();
    let out = node.ingest(&tree).success();
    assert!(out.stdout.contains("generation 1 active"), "{}", out.stdout);
    // `sign --append` adds a signature as well, and signing twice with one key counts once.
    let tree = node.tree("gen2", &[("promises.cf", POLICY), ("x.cf", "# x\n")]);
    let manifest = tree.join("polstore.manifest");
    node.run(&["manifest", s(&tree), "--serial", "6", "-o", s(&manifest)])
        .success();
    for _ in 0..2 {
        node.run(&[
            "sign",
            "--append",
            "--key",
            s(&hub.keys[2].secret),
            s(&manifest),
        ])
        .success();
    }
    assert_ingest_refused(&node, &tree, "signed by 1 of the 2 keys");
    node.run(&[
        "sign",
        "--append",
        "--key",
        s(&hub.keys[0].secret),
        s(&manifest),
    ])
    .success();
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(2));
    // A root whose threshold no set of its keys can meet is refused, and not written.
    let impossible = tmp.path().join("root-impossible");
    let out = hub.polstore(&[
        "root",
        "create",
        "-o",
        s(&impossible),
        "--version",
        "1",
        "--root-key",
        s(&hub.keys[0].public),
        "--root-threshold",
        "2",
        "--manifest-key",
        s(&hub.keys[0].public),
        "--head-key",
        s(&hub.head.public),
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .starts_with("polstore: cannot make the root: line ")
            && out
                .stderr
                .contains("threshold 2 must be from 1 to the role's 1 keys"),
        "{}",
        out.stderr
    );
    assert!(!impossible.exists());
    // The publisher refuses to sign with fewer keys than the root's threshold.
    let out = hub.publish_with(&[0], &hub.head, "default");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("needs 2 of its manifest keys to sign, and 1 of the keys given are"),
        "{}",
        out.stderr
    );
    assert!(!hub.repo.join("heads/default").exists());
}

#[test]
fn every_node_follows_a_root_rotation_and_the_old_keys_alone_are_then_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hub = Hub::new(tmp.path());
    let web = Web::start(&tmp.path().join("web"), &hub.repo, false);
    hub.publish();
    let old_head = fs::read(hub.repo.join("heads/default")).unwrap();
    let nodes: Vec<Node> = (0..3)
        .map(|_| pulling_node(&hub.root, &web.url(), ""))
        .collect();
    for node in &nodes {
        assert_eq!(update(node)["generation"], 1);
    }
    let trust = &nodes[0].status()["trust"];
    assert_eq!(trust["root_version"], 1, "{trust}");
    assert_eq!(
        (&trust["manifest_threshold"], &trust["manifest_keys"]),
        (&2.into(), &3.into())
    );

    // Keys c, d, e replace a, b, c (a stolen, say), and h2 replaces the head key.
    let keys_dir = tmp.path().join("hub-keys");
    hub.keys.push(key(&keys_dir, "d"));
    hub.keys.push(key(&keys_dir, "e"));
    let head2 = key(&keys_dir, "h2");
    let root2 = tmp.path().join("root-2");
    hub.create_root(&root2, 2, &[2, 3, 4], &head2);
    // Signed by the new keys alone, the repository refuses it: the old root must agree.
    hub.sign_root(&root2, &[3, 4]);
    let out = hub.polstore(&["root", "publish", s(&root2), "--repo", s(&hub.repo)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains(
            "root version 2: by the trusted root: signed by 0 of the 2 keys the root role requires"
        ),
        "{}",
        out.stderr
    );
    hub.sign_root(&root2, &[0, 1]);
    hub.polstore(&["root", "publish", s(&root2), "--repo", s(&hub.repo)])
        .success();
    // The old manifest keys can no longer publish.
    let out = hub.publish_with(&[0, 1], &head2, "default");
    assert!(
        out.stderr.contains(
            "root version 2 needs 2 of its manifest keys to sign, and 0 of the keys given are"
        ),
        "{}",
        out.stderr
    );
    fs::write(hub.src.join("lib-01.cf"), "# after the rotation\n").unwrap();
    hub.publish_with(&[3, 4], &head2, "default").success();
    for node in &nodes {
        let outcome = update(node);
        assert_eq!(outcome["generation"], 2, "{outcome}");
        // The new root is recorded in the store, and the node's own file is untouched.
        let recorded = fs::read_to_string(node.store.join("trusted-root")).unwrap();
        assert!(recorded.contains("\nversion 2\n"), "{recorded}");
        assert_eq!(node.status()["trust"]["root_version"], 2);
    }

    // A manifest signed by the old keys a and b (once enough) is now refused, whatever
    // transport brings it.
    let node = &nodes[0];
    let tree = node.tree("old-keys", &[("promises.cf", POLICY)]);
    let manifest = tree.join("polstore.manifest");
    node.run(&[
        "manifest",
        s(&tree),
        "--serial",
        "9999999999",
        "-o",
        s(&manifest),
    ])
    .success();
    for index in [0, 1] {
        node.run(&[
            "sign",
            "--append",
            "--key",
            s(&hub.keys[index].secret),
            s(&manifest),
        ])
        .success();
    }
    assert_ingest_refused(
        node,
        &tree,
        "signed by 0 of the 2 keys the manifest role requires",
    );
    // So is a head signed under the old root, replayed by a mirror after the rotation.
    fs::write(hub.repo.join("heads/default"), old_head).unwrap();
    assert_refused(
        node,
        &["update"],
        3,
        "rejected by the freshness check: heads/default: signed under root version 1, older than the trusted root version 2",
    );
}

#[test]
fn https_with_the_ca_file_and_refused_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(tmp.path());
    let web = Web::start(&tmp.path().join("web"), &hub.repo, true);
    hub.publish();
    let certificate = web.certificate.clone().unwrap();
    let node = pulling_node(
        &hub.root,
        &web.url(),
        &format!("ca_file = {}\n", toml_string(s(&certificate))),
    );
    assert_eq!(update(&node)["generation"], 1);
    // Without it, Mozilla's roots do not vouch for the test server's certificate.
    let stranger = pulling_node(&hub.root, &web.url(), "");
    let out = assert_refused(&stranger, &["update"], 1, "pull of https://127.0.0.1:");
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
}

/// A root of version 1 with the hub's keys, signed by a and b, that expires at `expires`.
fn root_expiring(hub: &Hub, expires: polstore::format::timestamp::Timestamp) -> Vec<u8> {
    use polstore::format::root::{Root, SignedRoot};
    use polstore::format::signify::{PublicKey, SecretKey};
    let public = |key: &Key| PublicKey::parse(&fs::read(&key.public).unwrap()).unwrap();
    let secret = |key: &Key| SecretKey::parse(&fs::read(&key.secret).unwrap()).unwrap();
    let keys: Vec<PublicKey> = hub.keys.iter().map(public).collect();
    let root = Root::new(
        1,
        expires,
        [(2, keys.clone()), (2, keys), (1, vec![public(&hub.head)])],
    )
    .unwrap();
    let text = root.render().into_bytes();
    let signatures = hub.keys[..2]
        .iter()
        .map(|key| secret(key).sign(&text))
        .collect();
    SignedRoot {
        root,
        signatures,
        text,
    }
    .render()
}

#[test]
fn a_root_near_its_expiry_is_a_warning_and_an_expired_one_refuses_every_update() {
    use polstore::format::timestamp::Timestamp;
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(tmp.path());
    let web = Web::start(&tmp.path().join("web"), &hub.repo, false);
    hub.publish();
    let soon = tmp.path().join("root-soon");
    fs::write(
        &soon,
        root_expiring(&hub, Timestamp::now().plus_secs(10 * 86_400)),
    )
    .unwrap();
    let node = pulling_node(&soon, &web.url(), "");
    assert_eq!(update(&node)["generation"], 1);
    let warnings = node.status()["warnings"].to_string();
    assert!(
        warnings.contains("the trusted root (version 1) expires at"),
        "{warnings}"
    );

    let expired = tmp.path().join("root-expired");
    fs::write(
        &expired,
        root_expiring(&hub, Timestamp::from_unix_secs(1_000_000_000)),
    )
    .unwrap();
    fs::copy(&expired, node.root.join("etc/root")).unwrap();
    fs::write(hub.src.join("lib-05.cf"), "# new\n").unwrap();
    hub.publish();
    assert_refused(
        &node,
        &["update"],
        3,
        "rejected by the freshness check: heads/default: the trusted root (version 1) expired at 2001-09-09T01:46:40Z",
    );
    let warnings = node.status()["warnings"].to_string();
    assert!(
        warnings.contains("the trusted root (version 1) expired at"),
        "{warnings}"
    );
    // A drop signed by enough keys is refused as well: the root vouches for nothing.
    let tree = node.tree("signed", &[("promises.cf", POLICY)]);
    let manifest = tree.join("polstore.manifest");
    node.run(&[
        "manifest",
        s(&tree),
        "--serial",
        "99999999999",
        "-o",
        s(&manifest),
    ])
    .success();
    for key in &hub.keys[..2] {
        node.run(&["sign", "--append", "--key", s(&key.secret), s(&manifest)])
            .success();
    }
    assert_ingest_refused(&node, &tree, "the trusted root (version 1) expired at");
}

#[test]
fn verify_repair_gets_lost_content_back_from_the_repository_by_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::new(tmp.path());
    let web = Web::start(&tmp.path().join("web"), &hub.repo, false);
    hub.publish();
    let node = pulling_node(&hub.root, &web.url(), "");
    assert_eq!(update(&node)["generation"], 1);
    let first = fs::read_to_string(node.view.join("lib-07.cf")).unwrap();
    for (generation, file) in [(2, "lib-07.cf"), (3, "lib-08.cf")] {
        fs::write(hub.src.join(file), format!("# changed for {generation}\n")).unwrap();
        hub.publish();
        assert_eq!(update(&node)["generation"], generation);
    }
    // Generation 1 keeps no tree on disk after gc: its lib-07.cf is in the database alone.
    node.run(&["gc"]).success();
    assert!(!node.generation_tree(1).exists());
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "restored 1 objects from the repository {}",
            web.url().trim_end_matches('/')
        )),
        "{}",
        out.stdout
    );
    node.run(&["rollback", "1"]).success();
    assert_eq!(
        fs::read_to_string(node.view.join("lib-07.cf")).unwrap(),
        first
    );
}
