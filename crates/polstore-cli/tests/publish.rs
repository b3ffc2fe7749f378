//! `polstore publish`, the hub side: what a publication holds (normalised modes, the
//! hub's own files left out) and that a node ingests it; the serial's rule; the switch of
//! `current` and `head`; refusals that leave OUT as it was; the lock; the hub's units.

mod util;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::*;

/// A hub beside a node: the policy tree `src` and the publication directory `out` in the
/// node's temp directory, signed with the node's key (which the node's store trusts).
struct Hub {
    node: Node,
    src: PathBuf,
    out: PathBuf,
}

impl Hub {
    /// A node trusting the key, and a hub whose `src` holds a small policy.
    fn new() -> Hub {
        let node = Node::signed();
        let src = node.root.join("masterfiles");
        fs::create_dir_all(&src).unwrap();
        write_tree(
            &src,
            &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
        );
        let out = node.root.join("published");
        Hub { node, src, out }
    }

    fn publish(&self, extra: &[&str]) -> Out {
        let mut args = vec![
            "publish",
            s(&self.src),
            "--out",
            s(&self.out),
            "--key",
            s(&self.node.secret_key),
        ];
        args.extend_from_slice(extra);
        self.node.run(&args)
    }

    /// Publishes and returns the new serial, from `--json`.
    fn published(&self, extra: &[&str]) -> u64 {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = self.publish(&args).success();
        let json: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(json["outcome"], "published", "{json}");
        let serial = json["serial"].as_u64().unwrap();
        assert_eq!(
            json["path"],
            s(&self.out.join("versions").join(serial.to_string()))
        );
        self.assert_switched_to(serial);
        serial
    }

    /// `current` names `versions/SERIAL`, relative, and `head` holds SERIAL.
    fn assert_switched_to(&self, serial: u64) {
        assert_eq!(
            fs::read_link(self.out.join("current")).unwrap(),
            Path::new("versions").join(serial.to_string())
        );
        assert_eq!(
            fs::read_to_string(self.out.join("head")).unwrap(),
            format!("{serial}\n")
        );
    }

    fn version(&self, serial: u64) -> PathBuf {
        self.out.join("versions").join(serial.to_string())
    }

    /// The serials in `versions/`, ascending.
    fn versions(&self) -> Vec<u64> {
        let mut serials: Vec<u64> = fs::read_dir(self.out.join("versions"))
            .unwrap()
            .map(|entry| {
                entry
                    .unwrap()
                    .file_name()
                    .into_string()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        serials.sort_unstable();
        serials
    }

    /// Changes the policy, so that the next publish has something to publish.
    fn change(&self, text: &str) {
        fs::write(self.src.join("lib/common.cf"), format!("# {text}\n")).unwrap();
    }
}

/// Everything under `dir`, not followed: each path with its type, mode and content (a
/// symlink's target). The content of OUT's `lock` is left out: a hint naming the last
/// holder, rewritten by every publish that takes the lock.
fn everything(dir: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>)> {
    let mut found = BTreeMap::new();
    if !fs::symlink_metadata(dir).unwrap().is_dir() {
        found.insert(
            dir.to_path_buf(),
            ("file".to_string(), mode_of(dir), fs::read(dir).unwrap()),
        );
        return found;
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            let mode = metadata.permissions().mode() & 0o7777;
            let kind = metadata.file_type();
            let (name, content) = if kind.is_dir() {
                pending.push(path.clone());
                ("directory", Vec::new())
            } else if kind.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if path == dir.join("lock") {
                ("lock", Vec::new())
            } else if kind.is_file() {
                ("file", fs::read(&path).unwrap())
            } else {
                ("other", Vec::new())
            };
            found.insert(path, (name.to_string(), mode, content));
        }
    }
    found
}

/// Runs `publish EXTRA` with `key` and asserts a refusal: exit 1, one `polstore: ` line
/// containing `fragment`, and nothing changed in OUT (but the lock's hint) or in SRC.
fn assert_publish_refused(hub: &Hub, source: &Path, key: &Path, extra: &[&str], fragment: &str) {
    let out_before = hub.out.exists().then(|| everything(&hub.out));
    let src_before = source.exists().then(|| everything(source));
    let mut args = vec!["publish", s(source), "--out", s(&hub.out), "--key", s(key)];
    args.extend_from_slice(extra);
    let out = hub.node.run(&args);
    assert_eq!(out.code, 1, "exit code of polstore {args:?}: {out:#?}");
    assert!(
        out.stderr.starts_with("polstore: ")
            && out.stderr.ends_with('\n')
            && out.stderr.lines().count() == 1,
        "not one 'polstore: ' line: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains(fragment),
        "{:?} lacks {fragment:?}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert_eq!(hub.out.exists().then(|| everything(&hub.out)), out_before);
    assert_eq!(source.exists().then(|| everything(source)), src_before);
}

#[test]
fn a_publication_is_a_drop_tree_that_a_node_trusting_the_key_ingests() {
    let hub = Hub::new();
    let serial = hub.published(&[]);
    let version = hub.version(serial);
    let manifest = fs::read_to_string(version.join("polstore.manifest")).unwrap();
    let (manifest_serial, _) = parse_manifest(&manifest);
    assert_eq!(manifest_serial, serial);
    assert!(
        manifest.contains("\nexpires "),
        "expires by default: {manifest}"
    );
    let out = hub.node.ingest(&version).success();
    assert!(
        out.stdout
            .starts_with(&format!("generation 1 active: serial {serial}, 2 files")),
        "{}",
        out.stdout
    );
    assert_eq!(
        tree_content(&hub.node.view),
        tree_content(&hub.src),
        "the node has exactly the policy"
    );
    // Published again with a change: the node takes the next one too.
    hub.change("second");
    let next = hub.published(&[]);
    assert!(next > serial);
    hub.node.ingest(&hub.version(next)).success();
    assert_eq!(hub.node.active_generation(), Some(2));
}

/// The stock masterfiles as a hub leaves them: validated by `cf-promises -T` (which writes
/// `cf_promises_validated` and `cf_promises_release_id`), and every file made 0600 and
/// every directory 0700 by the hub's update policy. A node ingests the publication
/// through the real parse check.
#[test]
fn the_stock_masterfiles_as_a_hub_leaves_them_publish_and_pass_cf_promises_on_a_node() {
    let hub = Hub::new();
    fs::remove_dir_all(&hub.src).unwrap();
    tool(
        "cp",
        &["-r", "/usr/share/cfengine3/masterfiles", s(&hub.src)],
    );
    let workdir = hub.node.root.join("cfengine");
    fs::create_dir_all(workdir.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/cf-promises", workdir.join("bin/cf-promises")).unwrap();
    let validated = Command::new("cf-promises")
        .arg("-T")
        .arg(&hub.src)
        .env("CFENGINE_TEST_OVERRIDE_WORKDIR", &workdir)
        .output()
        .unwrap();
    assert!(validated.status.success(), "cf-promises -T: {validated:?}");
    assert!(hub.src.join("cf_promises_validated").is_file());
    assert!(hub.src.join("cf_promises_release_id").is_file());
    tool(
        "find",
        &[
            s(&hub.src),
            "-type",
            "f",
            "-exec",
            "chmod",
            "0600",
            "{}",
            "+",
        ],
    );
    tool(
        "find",
        &[
            s(&hub.src),
            "-type",
            "d",
            "-exec",
            "chmod",
            "0700",
            "{}",
            "+",
        ],
    );

    let serial = hub.published(&[]);
    let out = hub
        .node
        .run_with(
            &["ingest", s(&hub.version(serial))],
            &[("CFENGINE_TEST_OVERRIDE_WORKDIR", s(&workdir))],
            None,
        )
        .success();
    assert!(out.stdout.starts_with("generation 1 active"), "{out:?}");
    let published = tree_content(&hub.node.view);
    let source = tree_content(&hub.src);
    assert!(!published.contains_key("cf_promises_validated"));
    assert_eq!(
        published["cf_promises_release_id"].1, source["cf_promises_release_id"].1,
        "the release id is policy's, kept for sys.policy_release_id on the nodes"
    );
    assert_eq!(published.len(), source.len() - 1);
    for (path, (mode, content)) in &published {
        assert_eq!(*mode, 0o644, "{path}");
        assert_eq!(content, &source[path].1, "{path}");
    }
}

#[test]
fn modes_are_normalised_and_the_hub_s_own_files_and_version_control_are_left_out() {
    let hub = Hub::new();
    write_tree(
        &hub.src,
        &[
            ("modules/promises/script.sh", "#!/bin/sh\n"),
            ("modules/packages/group-writable", "x\n"),
            ("lib/private.cf", "# private\n"),
            ("cf_promises_validated", "{ \"timestamp\": 1 }\n"),
            ("cf_promises_release_id", "{ \"releaseId\": \"abc\" }\n"),
            ("polstore.manifest", "not a manifest\n"),
            ("polstore.manifest.sig", "not a signature\n"),
            (".git/HEAD", "ref: refs/heads/main\n"),
            ("lib/.git", "gitdir: ../.git/modules/lib\n"),
            ("services/.svn/entries", "12\n"),
            ("services/.hg/store/data", "x\n"),
            ("lib/sub/cf_promises_validated", "kept below the top\n"),
        ],
    );
    set_mode(&hub.src.join("modules/promises/script.sh"), 0o700);
    set_mode(&hub.src.join("modules/packages/group-writable"), 0o664);
    set_mode(&hub.src.join("lib/private.cf"), 0o600);
    set_mode(&hub.src.join("lib/common.cf"), 0o4755);
    set_mode(&hub.src.join("lib"), 0o700);
    fs::create_dir_all(hub.src.join("templates/empty")).unwrap();
    set_mode(&hub.src.join("templates/empty"), 0o1777);

    let serial = hub.published(&[]);
    let version = hub.version(serial);
    let published = tree_content(&version);
    let modes: BTreeMap<&str, u32> = published
        .iter()
        .map(|(path, (mode, _))| (path.as_str(), *mode))
        .collect();
    assert_eq!(
        modes,
        BTreeMap::from([
            ("cf_promises_release_id", 0o644),
            ("lib/common.cf", 0o755),
            ("lib/private.cf", 0o644),
            ("lib/sub/cf_promises_validated", 0o644),
            ("modules/packages/group-writable", 0o644),
            ("modules/promises/script.sh", 0o755),
            ("polstore.manifest", 0o644),
            ("polstore.manifest.sig", 0o644),
            ("promises.cf", 0o644),
        ])
    );
    for directory in [
        "",
        "lib",
        "lib/sub",
        "modules",
        "templates",
        "templates/empty",
    ] {
        assert_eq!(mode_of(&version.join(directory)), 0o755, "{directory}");
    }
    assert_eq!(mode_of(&hub.out.join("versions")), 0o755);
    assert_eq!(mode_of(&hub.out), 0o700, "OUT is made root's alone");
    assert_eq!(mode_of(&hub.out.join("head")), 0o644);
    // The envelope is the publication's own, not what SRC held.
    assert_ne!(published["polstore.manifest"].1, b"not a manifest\n");
    hub.node.ingest(&version).success();
    assert_eq!(
        mode_of(&hub.node.view.join("modules/promises/script.sh")),
        0o755
    );
    assert!(hub.node.view.join("templates/empty").is_dir());
    assert!(!hub.node.view.join(".git").exists());
}

#[test]
fn the_serial_follows_the_clock_and_never_repeats_or_goes_back_even_when_head_is_lost() {
    let hub = Hub::new();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = now();
    let first = hub.published(&[]);
    assert!(
        (before..=now()).contains(&first),
        "{first} is not the time of publishing"
    );
    // Twice within the same second: still higher.
    hub.change("second");
    let second = hub.published(&[]);
    assert!(second > first);
    hub.change("third");
    let third = hub.published(&[]);
    assert!(third > second);
    // `head` and `current` lost: the versions still hold the floor.
    fs::remove_file(hub.out.join("head")).unwrap();
    fs::remove_file(hub.out.join("current")).unwrap();
    hub.change("fourth");
    let fourth = hub.published(&[]);
    assert!(fourth > third);
    // A serial given by hand far in the future: the clock no longer counts.
    let future = now() + 1_000_000;
    hub.change("fifth");
    assert_eq!(hub.published(&["--serial", &future.to_string()]), future);
    hub.change("sixth");
    assert_eq!(hub.published(&[]), future + 1);
    // Only `head` is left of the future serial: it counts too.
    fs::remove_dir_all(hub.out.join("versions")).unwrap();
    fs::remove_file(hub.out.join("current")).unwrap();
    hub.change("seventh");
    assert_eq!(hub.published(&[]), future + 2);
}

#[test]
fn a_serial_that_is_not_above_the_newest_is_refused_and_changes_nothing() {
    let hub = Hub::new();
    hub.published(&["--serial", "100"]);
    hub.change("second");
    for serial in ["100", "99", "0"] {
        assert_publish_refused(
            &hub,
            &hub.src,
            &hub.node.secret_key,
            &["--serial", serial],
            &format!(
                "serial {serial} is not above 100, the newest publication in {}",
                hub.out.display()
            ),
        );
    }
    assert_publish_refused(
        &hub,
        &hub.src,
        &hub.node.secret_key,
        &["--serial", "9223372036854775808"],
        "serial 9223372036854775808 is above 9223372036854775807",
    );
    assert_eq!(hub.published(&["--serial", "101"]), 101);
}

#[test]
fn each_publish_leaves_the_previous_ones_intact_and_keeps_the_newest_three() {
    let hub = Hub::new();
    let mut serials = Vec::new();
    let mut contents = BTreeMap::new();
    for round in 0..5 {
        hub.change(&format!("round {round}"));
        let serial = hub.published(&[]);
        // Every kept publication is byte for byte what it was when it was published.
        for (kept, content) in &contents {
            if hub.version(*kept).exists() {
                assert_eq!(&everything(&hub.version(*kept)), content, "version {kept}");
            }
        }
        contents.insert(serial, everything(&hub.version(serial)));
        serials.push(serial);
        let newest: Vec<u64> = serials.iter().rev().take(3).rev().copied().collect();
        assert_eq!(hub.versions(), newest);
    }
    // Each is a drop tree the node ingests, oldest first.
    for serial in hub.versions() {
        hub.node.ingest(&hub.version(serial)).success();
    }
    // --keep 1 removes all but the new one, and says which.
    hub.change("last");
    let out = hub.publish(&["--keep", "1"]).success();
    let serial = hub.versions()[0];
    assert_eq!(hub.versions(), [serial]);
    hub.assert_switched_to(serial);
    assert_eq!(
        out.stdout,
        format!(
            "published serial {serial}: 2 files, {} bytes, in {}; removed serial {}, {}, {}\n",
            POLICY.len() + "# last\n".len(),
            hub.version(serial).display(),
            serials[2],
            serials[3],
            serials[4]
        )
    );
    let names: Vec<String> = fs::read_dir(&hub.out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["current", "head", "lock", "versions"]);
}

#[test]
fn identical_content_publishes_nothing_unless_forced() {
    let hub = Hub::new();
    let serial = hub.published(&[]);
    let before = everything(&hub.out);
    // The hub's agent validates again: a new time stamp, the same policy.
    fs::write(
        hub.src.join("cf_promises_validated"),
        "{ \"timestamp\": 2 }\n",
    )
    .unwrap();
    let out = hub.publish(&[]).success();
    assert_eq!(
        out.stdout,
        format!(
            "unchanged: {} already publishes this content as serial {serial}\n",
            hub.version(serial).display()
        )
    );
    assert_eq!(everything(&hub.out), before);
    let json: Value = serde_json::from_str(&hub.publish(&["--json"]).success().stdout).unwrap();
    assert_eq!(json["outcome"], "unchanged");
    assert_eq!(json["serial"], serial);
    // A `head` a publish left behind `current` is put right even when nothing changed.
    fs::write(hub.out.join("head"), "1\n").unwrap();
    hub.publish(&[]).success();
    hub.assert_switched_to(serial);
    assert!(hub.published(&["--force"]) > serial);
}

#[test]
fn a_publication_past_half_of_its_validity_is_made_again() {
    let hub = Hub::new();
    // Expires in 1 day: made again once less than half a day is left, which a manifest
    // created a day ago (its serial given by hand) shows at once.
    let serial = hub.published(&["--expires-in", "1"]);
    let version = hub.version(serial);
    let manifest = fs::read_to_string(version.join("polstore.manifest")).unwrap();
    let created = manifest
        .lines()
        .find_map(|line| line.strip_prefix("created "))
        .unwrap()
        .to_string();
    let expires = manifest
        .lines()
        .find_map(|line| line.strip_prefix("expires "))
        .unwrap()
        .to_string();
    // Still fresh: unchanged.
    assert!(
        hub.publish(&["--expires-in", "1"])
            .success()
            .stdout
            .starts_with("unchanged")
    );
    // Re-signed as if it had been created a day earlier, expiring now plus a minute.
    let date = |offset: &str| {
        tool("date", &["-u", "-d", offset, "+%Y-%m-%dT%H:%M:%SZ"])
            .trim()
            .to_string()
    };
    let aged = manifest
        .replace(
            &format!("created {created}"),
            &format!("created {}", date("-1 day")),
        )
        .replace(
            &format!("expires {expires}"),
            &format!("expires {}", date("+1 minute")),
        );
    fs::write(version.join("polstore.manifest"), aged).unwrap();
    fs::remove_file(version.join("polstore.manifest.sig")).unwrap();
    hub.node.sign(&version.join("polstore.manifest"));
    assert!(hub.published(&["--expires-in", "1"]) > serial);
}

#[test]
fn a_failed_publish_leaves_out_and_src_exactly_as_they_were() {
    let hub = Hub::new();
    hub.published(&[]);
    hub.change("second");
    let key = hub.node.secret_key.clone();
    // A missing key, one that is not a key, and one that is a symlink.
    let missing = hub.node.root.join("keys/missing.sec");
    assert_publish_refused(&hub, &hub.src, &missing, &[], "missing.sec: does not exist");
    let public = hub.node.public_key.clone();
    set_mode(&public, 0o600);
    assert_publish_refused(&hub, &hub.src, &public, &[], "polstore.pub: ");
    let link = hub.node.root.join("keys/link.sec");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    assert_publish_refused(
        &hub,
        &hub.src,
        &link,
        &[],
        "link.sec: is a symbolic link, not a regular file",
    );
    // SRC missing, or a file.
    let absent = hub.node.root.join("absent");
    assert_publish_refused(&hub, &absent, &key, &[], "absent");
    assert_publish_refused(
        &hub,
        &hub.src.join("promises.cf"),
        &key,
        &[],
        "not a directory",
    );
    // A fifo, a symlink, a socket in SRC: refused by name, never opened or followed.
    let fifo = hub.src.join("lib/fifo");
    tool("mkfifo", &[&fifo]);
    assert_publish_refused(
        &hub,
        &hub.src,
        &key,
        &[],
        &format!(
            "cannot publish {}: lib/fifo: is a fifo; only regular files and directories are published",
            hub.src.display()
        ),
    );
    fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", hub.src.join("lib/passwd")).unwrap();
    assert_publish_refused(&hub, &hub.src, &key, &[], "lib/passwd: is a symbolic link;");
    fs::remove_file(hub.src.join("lib/passwd")).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(hub.src.join("socket")).unwrap();
    assert_publish_refused(&hub, &hub.src, &key, &[], "socket: is a socket;");
    drop(socket);
    fs::remove_file(hub.src.join("socket")).unwrap();
    // A name nodes would refuse, and a file over the limit nodes apply.
    fs::write(hub.src.join("bad\tname.cf"), "x").unwrap();
    assert_publish_refused(
        &hub,
        &hub.src,
        &key,
        &[],
        "bad\\tname.cf: control character in name",
    );
    fs::remove_file(hub.src.join("bad\tname.cf")).unwrap();
    let large = File::create(hub.src.join("large.dat")).unwrap();
    large.set_len(32 * 1024 * 1024 + 1).unwrap();
    assert_publish_refused(
        &hub,
        &hub.src,
        &key,
        &[],
        "large.dat: 33554433 bytes is over the limit of 33554432 bytes per file nodes accept",
    );
    fs::remove_file(hub.src.join("large.dat")).unwrap();
    // Only what publish leaves out at the top: an empty policy.
    let empty = hub.node.root.join("empty");
    write_tree(
        &empty,
        &[("cf_promises_validated", "{}\n"), (".git/HEAD", "x\n")],
    );
    assert_publish_refused(&hub, &empty, &key, &[], "holds no policy file");
    // After all that, the same publish goes through.
    hub.published(&[]);
}

#[test]
fn a_secret_key_others_can_read_is_refused_and_nothing_is_published() {
    let hub = Hub::new();
    let key = hub.node.secret_key.clone();
    for mode in [0o640, 0o604, 0o660, 0o644] {
        set_mode(&key, mode);
        assert_publish_refused(
            &hub,
            &hub.src,
            &key,
            &[],
            &format!(
                "secret key {}: has mode {mode:04o}: group or others can read or change it; make it 0600",
                key.display()
            ),
        );
    }
    assert!(!hub.out.exists(), "OUT was made for a refused key");
    set_mode(&key, 0o400);
    hub.published(&[]);
    if running_as_root() {
        set_mode(&key, 0o600);
        tool("chown", &["nobody", s(&key)]);
        assert_publish_refused(&hub, &hub.src, &key, &[], "belongs to user");
    } else {
        eprintln!("skipping the key owned by another user: needs root to chown it");
    }
}

#[test]
fn out_inside_src_src_inside_out_and_out_others_can_write_are_refused() {
    let hub = Hub::new();
    let key = hub.node.secret_key.clone();
    let inside = hub.src.join("published");
    let out = hub.node.run(&[
        "publish",
        s(&hub.src),
        "--out",
        s(&inside),
        "--key",
        s(&key),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("one is inside the other"), "{out:?}");
    assert!(!inside.exists());
    // SRC inside OUT: publish could remove it with an old version.
    fs::create_dir_all(&hub.out).unwrap();
    set_mode(&hub.out, 0o755);
    let nested = hub.out.join("src");
    write_tree(&nested, &[("promises.cf", POLICY)]);
    assert_publish_refused(&hub, &nested, &key, &[], "one is inside the other");
    fs::remove_dir_all(&nested).unwrap();
    // An OUT others can write: they could plant a publication or swap `current`.
    set_mode(&hub.out, 0o777);
    assert_publish_refused(
        &hub,
        &hub.src,
        &key,
        &[],
        &format!(
            "{}: has mode 0777: others could plant a publication there",
            hub.out.display()
        ),
    );
    set_mode(&hub.out, 0o755);
    hub.published(&[]);
    assert_eq!(mode_of(&hub.out), 0o755, "an existing OUT keeps its mode");
    set_mode(&hub.out.join("versions"), 0o775);
    hub.change("second");
    assert_publish_refused(&hub, &hub.src, &key, &[], "versions: has mode 0775");
}

#[test]
fn a_publish_waits_for_another_holding_the_lock_and_never_interleaves() {
    let hub = Hub::new();
    let first = hub.published(&[]);
    hub.change("second");
    // The test holds OUT's lock as another publish would.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(hub.out.join("lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    // The holder's hint, which the refusal quotes.
    lock.set_len(0).unwrap();
    std::io::Write::write_all(&mut &lock, b"pid 4242 (the test)\n").unwrap();
    let key = hub.node.secret_key.clone();
    assert_publish_refused(
        &hub,
        &hub.src,
        &key,
        &["--lock-timeout", "0"],
        &format!(
            "{} is locked by pid 4242 (the test), another publish; gave up after 0 s",
            hub.out.display()
        ),
    );
    hub.assert_switched_to(first);
    // One that waits goes on once the lock is let go, and only then.
    let mut waiting = Background::spawn(
        &hub.node,
        &[
            "publish",
            s(&hub.src),
            "--out",
            s(&hub.out),
            "--key",
            s(&key),
        ],
    );
    waiting.wait_for_stderr(&format!("waiting for the lock of {}", hub.out.display()));
    hub.assert_switched_to(first);
    assert_eq!(hub.versions(), [first]);
    drop(lock);
    let out = waiting.finish();
    assert_eq!(out.code, 0, "{out:?}");
    let second = hub.versions()[1];
    assert!(second > first);
    hub.assert_switched_to(second);
}

/// The value of `Key=` in a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in unit"))
        .to_string()
}

#[test]
fn the_hub_units_are_valid_and_publish_what_they_document() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integrations/cfengine/hub");
    let hub = Hub::new();
    let checked = hub.node.root.join("units");
    fs::create_dir_all(&checked).unwrap();
    let names = [
        "polstore-publish.path",
        "polstore-publish.service",
        "polstore-publish.timer",
    ];
    for name in names {
        let text = fs::read_to_string(units.join(name)).unwrap();
        fs::write(
            checked.join(name),
            text.replace("/usr/local/bin/polstore", POLSTORE),
        )
        .unwrap();
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipping systemd-analyze verify: systemd-analyze is not installed (tools/setup installs it)"
        );
    } else {
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .args(names.map(|name| checked.join(name)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The path unit watches what cf-promises -T writes in the masterfiles the service
    // publishes, and starts that service; the timer starts it too.
    let path_unit = fs::read_to_string(checked.join("polstore-publish.path")).unwrap();
    let service = fs::read_to_string(checked.join("polstore-publish.service")).unwrap();
    let timer = fs::read_to_string(checked.join("polstore-publish.timer")).unwrap();
    assert_eq!(unit_value(&path_unit, "Unit"), "polstore-publish.service");
    assert!(!timer.contains("Unit="), "the timer starts its namesake");
    let command = unit_value(&service, "ExecStart");
    assert_eq!(
        command,
        format!(
            "{POLSTORE} publish /var/cfengine/masterfiles --out /var/cfengine/polstore-published --key /etc/polstore/hub.sec"
        )
    );
    assert_eq!(
        unit_value(&path_unit, "PathChanged"),
        "/var/cfengine/masterfiles/cf_promises_validated"
    );
    assert_eq!(
        unit_value(&service, "ConditionPathExists"),
        "/etc/polstore/hub.sec"
    );
    // The service's command, on this hub's directories, publishes, then finds nothing new.
    let argv: Vec<String> = command
        .replace("/var/cfengine/masterfiles", s(&hub.src))
        .replace("/var/cfengine/polstore-published", s(&hub.out))
        .replace("/etc/polstore/hub.sec", s(&hub.node.secret_key))
        .split(' ')
        .map(str::to_string)
        .collect();
    for expected in ["published serial ", "unchanged: "] {
        let output = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).starts_with(expected),
            "{output:?}"
        );
    }
    let readme = fs::read_to_string(units.join("README.md")).unwrap();
    for name in names {
        assert!(readme.contains(name), "README.md does not mention {name}");
    }
}
