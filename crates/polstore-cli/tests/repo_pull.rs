//! Fleet distribution as a user sets it up: a hub publishes into a repository
//! (`publish --repo`) that a real nginx serves on 127.0.0.1, and nodes configured with
//! `[fetch] url` pull and activate only what changed; what that costs on the wire; roots of
//! trust with thresholds (2 of 3), signed with polstore and with `signify-openbsd`; a
//! root rotation every node follows, after which the old keys are refused; HTTPS with a
//! CA file. Hostile servers are in `repo_hostile.rs`.

mod util;

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// How long nginx may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(20);

/// nginx serving a repository directory, over HTTP or HTTPS, as a child process killed
/// on drop.
struct Web {
    child: Child,
    port: u16,
    /// With HTTPS: the certificate of the CA that signed the server's, the node's
    /// `fetch.ca_file`.
    certificate: Option<PathBuf>,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Web {
    fn start(dir: &Path, repo: &Path, https: bool) -> Web {
        for sub in ["logs", "temp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let certificate = dir.join("server.cert");
        let key = dir.join("server.key");
        let ca = dir.join("ca.cert");
        let listen = if https {
            // A CA of the site's own, and the server's certificate signed by it.
            let ca_key = dir.join("ca.key");
            tool(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=polstore test CA",
                    "-keyout",
                    s(&ca_key),
                    "-out",
                    s(&ca),
                ],
            );
            let request = dir.join("server.csr");
            tool(
                "openssl",
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    s(&key),
                    "-out",
                    s(&request),
                ],
            );
            let extensions = dir.join("server.ext");
            fs::write(
                &extensions,
                "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
            )
            .unwrap();
            tool(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    s(&request),
                    "-CA",
                    s(&ca),
                    "-CAkey",
                    s(&ca_key),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    s(&extensions),
                    "-out",
                    s(&certificate),
                ],
            );
            format!(
                "listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {}; ssl_protocols TLSv1.3;",
                s(&certificate),
                s(&key)
            )
        } else {
            format!("listen 127.0.0.1:{port};")
        };
        let temp = dir.join("temp");
        // One process, no workers: killing it on drop leaves nothing behind.
        let config = format!(
            r#"daemon off;
master_process off;
pid {pid};
error_log {logs}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {logs}/access.log;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  default_type application/octet-stream;
  server {{
    {listen}
    location / {{ root {repo}; }}
  }}
}}
"#,
            pid = s(&dir.join("nginx.pid")),
            logs = s(&dir.join("logs")),
            temp = s(&temp),
            repo = s(repo),
        );
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config).unwrap();
        let output = File::create(dir.join("nginx.out")).unwrap();
        let child = Command::new("nginx")
            .args(["-e", s(&dir.join("logs/error.log"))])
            .args(["-c", s(&config_path), "-p", s(dir)])
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("cannot start nginx");
        let mut web = Web {
            child,
            port,
            certificate: https.then_some(ca),
        };
        let deadline = Instant::now() + SERVER_START_MAX;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = web.child.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}): {}",
                    fs::read_to_string(dir.join("nginx.out")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "nginx did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        web
    }

    fn url(&self) -> String {
        let scheme = if self.certificate.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }
}

/// A signify key pair made by `polstore keygen`, in a root-only directory.
struct Key {
    public: PathBuf,
    secret: PathBuf,
}

fn key(dir: &Path, name: &str) -> Key {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    let key = Key {
        public: dir.join(format!("{name}.pub")),
        secret: dir.join(format!("{name}.sec")),
    };
    run_polstore(
        dir,
        &[
            "keygen",
            "--public",
            s(&key.public),
            "--secret",
            s(&key.secret),
        ],
        &[],
        None,
    )
    .success();
    key
}

/// A hub: a policy tree, a repository, the root keys a, b, c (2 of 3 for roots and
/// manifests) and the head key h, and root version 1 published.
struct Hub {
    dir: PathBuf,
    src: PathBuf,
    repo: PathBuf,
    keys: Vec<Key>,
    head: Key,
    /// Root version 1, signed by a and b: what nodes are given.
    root: PathBuf,
}

impl Hub {
    fn new(dir: &Path) -> Hub {
        let keys_dir = dir.join("hub-keys");
        let keys: Vec<Key> = ["a", "b", "c"]
            .iter()
            .map(|name| key(&keys_dir, name))
            .collect();
        let head = key(&keys_dir, "h");
        let src = dir.join("masterfiles");
        fs::create_dir_all(&src).unwrap();
        write_tree(&src, &[("promises.cf", POLICY)]);
        for index in 0..40 {
            fs::write(
                src.join(format!("lib-{index:02}.cf")),
                format!("# library file {index}\n{}", "# filler line\n".repeat(50)),
            )
            .unwrap();
        }
        let hub = Hub {
            dir: dir.to_path_buf(),
            root: dir.join("root-1"),
            repo: dir.join("repo"),
            src,
            keys,
            head,
        };
        let root = hub.root.clone();
        hub.create_root(&root, 1, &[0, 1, 2], &hub.head);
        hub.sign_root(&root, &[0, 1]);
        hub.polstore(&["root", "publish", s(&root), "--repo", s(&hub.repo)])
            .success();
        hub
    }

    fn polstore(&self, args: &[&str]) -> Out {
        run_polstore(&self.dir, args, &[], None)
    }

    /// `root create` with `keys` (indexes into `self.keys`) for root and manifest, 2 of them
    /// required, and `head` for heads.
    fn create_root(&self, path: &Path, version: u64, keys: &[usize], head: &Key) {
        let mut args = vec![
            "root".to_string(),
            "create".into(),
            "-o".into(),
            s(path).into(),
            "--version".into(),
            version.to_string(),
            "--root-threshold".into(),
            "2".into(),
            "--manifest-threshold".into(),
            "2".into(),
            "--head-key".into(),
            s(&head.public).into(),
        ];
        for index in keys {
            for role in ["--root-key", "--manifest-key"] {
                args.push(role.into());
                args.push(s(&self.keys[*index].public).into());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.polstore(&args).success();
    }

    fn sign_root(&self, path: &Path, keys: &[usize]) {
        for index in keys {
            self.polstore(&[
                "root",
                "sign",
                s(path),
                "--key",
                s(&self.keys[*index].secret),
            ])
            .success();
        }
    }

    /// `publish --repo` signed by the keys `signers` and the head key `head`.
    fn publish_with(&self, signers: &[usize], head: &Key, node: &str) -> Out {
        let mut args = vec!["publish", s(&self.src), "--repo", s(&self.repo)];
        for index in signers {
            args.extend(["--key", s(&self.keys[*index].secret)]);
        }
        args.extend(["--head-key", s(&head.secret), "--node", node, "--json"]);
        self.polstore(&args)
    }

    fn publish(&self) -> Value {
        let out = self.publish_with(&[0, 1], &self.head, "default").success();
        serde_json::from_str(&out.stdout).unwrap()
    }
}

/// A node whose store pulls from `url` and trusts `root` (copied into a root-only
/// directory, as an operator installs it).
fn pulling_node(root: &Path, url: &str, extra_fetch: &str) -> Node {
    let node = Node::new();
    let etc = node.root.join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(root, etc.join("root")).unwrap();
    let config = node.root.join("polstore.toml");
    fs::write(
        &config,
        format!(
            "view = {view}\n\
             [trust]\nroot = {root}\n\
             [checks]\nentry_points = [\"promises.cf\"]\ndir = {checks}\n\
             [agent]\ncommand = []\n\
             [fetch]\nurl = {url}\ntimeout_secs = 30\n{extra_fetch}",
            view = toml_string(s(&node.view)),
            root = toml_string(s(&etc.join("root"))),
            checks = toml_string(s(&node.checks)),
            url = toml_string(url),
        ),
    )
    .unwrap();
    node.run(&["init", "--config", s(&config)]).success();
    node
}

fn update(node: &Node) -> Value {
    let out = node.run(&["update", "--json"]).success();
    serde_json::from_str(&out.stdout).unwrap()
}

fn pulled(outcome: &Value) -> (u64, u64, u64, bool) {
    let pulled = &outcome["pulled"];
    (
        pulled["requests"].as_u64().unwrap(),
        pulled["bytes"].as_u64().unwrap(),
        pulled["objects"].as_u64().unwrap(),
        pulled["delta"].as_bool().unwrap(),
    )
}

/// The compressed size of the object that holds `content` in the repository.
fn object_size(repo: &Path, content: &[u8]) -> u64 {
    let hash = blake3::hash(content).to_hex().to_string();
    fs::metadata(repo.join("objects").join(&hash[..2]).join(&hash))
        .unwrap()
        .len()
}

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

    // A second node, new, gets the whole manifest (it has no base) and every object.
    let other = pulling_node(&hub.root, &web.url(), "");
    let (_, _, objects, delta) = pulled(&update(&other));
    assert_eq!((objects, delta), (41, false));

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
