//! A hub with a repository (`publish --repo`) served by a real nginx on 127.0.0.1, and
//! nodes that pull from it (`[fetch] url`), as a user sets them up.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

/// nginx serving a repository directory, over HTTP or HTTPS (`super::nginx`), stopped
/// when dropped.
pub struct Web {
    _nginx: super::nginx::Nginx,
    pub port: u16,
    /// With HTTPS: the certificate of the CA that signed the server's, the node's
    /// `fetch.ca_file`.
    pub certificate: Option<PathBuf>,
}

impl Web {
    pub fn start(dir: &Path, repo: &Path, https: bool) -> Web {
        fs::create_dir_all(dir).unwrap();
        let certificate = dir.join("server.cert");
        let key = dir.join("server.key");
        let ca = dir.join("ca.cert");
        let tls = if https {
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
                " ssl; ssl_certificate {}; ssl_certificate_key {}; ssl_protocols TLSv1.3",
                s(&certificate),
                s(&key)
            )
        } else {
            String::new()
        };
        let logs = dir.join("logs");
        let nginx = super::nginx::Nginx::start(dir, |port| {
            format!(
                "access_log {}/access.log;\n  server {{ listen 127.0.0.1:{port}{tls}; location / {{ root {}; }} }}",
                s(&logs),
                s(repo)
            )
        });
        Web {
            port: nginx.port,
            _nginx: nginx,
            certificate: https.then_some(ca),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.certificate.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }
}

/// A signify key pair made by `polstore keygen`, in a root-only directory.
pub struct Key {
    pub public: PathBuf,
    pub secret: PathBuf,
}

pub fn key(dir: &Path, name: &str) -> Key {
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
pub struct Hub {
    pub dir: PathBuf,
    pub src: PathBuf,
    pub repo: PathBuf,
    pub keys: Vec<Key>,
    pub head: Key,
    /// Root version 1, signed by a and b: what nodes are given.
    pub root: PathBuf,
}

impl Hub {
    pub fn new(dir: &Path) -> Hub {
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

    pub fn polstore(&self, args: &[&str]) -> Out {
        run_polstore(&self.dir, args, &[], None)
    }

    /// `root create` with `keys` (indexes into `self.keys`) for root and manifest, 2 of them
    /// required, and `head` for heads.
    pub fn create_root(&self, path: &Path, version: u64, keys: &[usize], head: &Key) {
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

    pub fn sign_root(&self, path: &Path, keys: &[usize]) {
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
    pub fn publish_with(&self, signers: &[usize], head: &Key, node: &str) -> Out {
        let args = self.publish_args(signers, head, &["--node", node, "--json"]);
        self.polstore(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The arguments of `publish --repo` signed by the keys `signers` (indexes into
    /// `self.keys`), the head by `head`, then `extra`.
    pub fn publish_args(&self, signers: &[usize], head: &Key, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["publish", s(&self.src), "--repo", s(&self.repo)];
        for index in signers {
            args.extend(["--key", s(&self.keys[*index].secret)]);
        }
        args.extend(["--head-key", s(&head.secret)]);
        args.extend(extra);
        args.into_iter().map(str::to_string).collect()
    }

    pub fn publish(&self) -> Value {
        let out = self.publish_with(&[0, 1], &self.head, "default").success();
        serde_json::from_str(&out.stdout).unwrap()
    }
}

/// A node whose store pulls from `url` and trusts `root` (copied into a root-only
/// directory, as an operator installs it).
pub fn pulling_node(root: &Path, url: &str, extra_fetch: &str) -> Node {
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

pub fn update(node: &Node) -> Value {
    let out = node.run(&["update", "--json"]).success();
    serde_json::from_str(&out.stdout).unwrap()
}

pub fn pulled(outcome: &Value) -> (u64, u64, u64, bool) {
    let pulled = &outcome["pulled"];
    (
        pulled["requests"].as_u64().unwrap(),
        pulled["bytes"].as_u64().unwrap(),
        pulled["objects"].as_u64().unwrap(),
        pulled["delta"].as_bool().unwrap(),
    )
}

/// The compressed size of the object that holds `content` in the repository.
pub fn object_size(repo: &Path, content: &[u8]) -> u64 {
    let hash = blake3::hash(content).to_hex().to_string();
    fs::metadata(repo.join("objects").join(&hash[..2]).join(&hash))
        .unwrap()
        .len()
}
