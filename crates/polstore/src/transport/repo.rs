//! Pulling from a repository over HTTP(S) (`[fetch] url`): the node's signed head, then
//! the manifest (as a delta from the active one when the repository has it), then only
//! the objects the store lacks, each verified on arrival and kept in `STORE/fetched/`
//! until the ingest that uses it. `repo-format.md` § Pulling gives the order of checks.
//!
//! Everything a server sends is hostile until verified. Each request has a deadline (what
//! is left of `fetch.timeout_secs`), a size limit for its kind and follows no redirect;
//! a root is taken only through the chain (`format::root`), a head only with its role's
//! threshold of the trusted root, unexpired, for this node and not older than what was
//! accepted, a manifest only with the hash and size the head names, an object only with
//! its hash. Verified objects stay in `fetched/` when a pull is cut, so the next resumes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checks;
use crate::config::FetchConfig;
use crate::error::{Check, Error, Rejection, Result};
use crate::format::delta;
use crate::format::head::{HEAD_FILE_BYTES_MAX, Head};
use crate::format::manifest::{Hash, MANIFEST_BYTES_MAX, Manifest};
use crate::format::policy_path::{MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::repo;
use crate::format::root::{ROOT_FILE_BYTES_MAX, Role, Root, SignedRoot};
use crate::format::signatures::{self, SIGNATURE_LIST_BYTES_MAX};
use crate::format::text::{QUOTED_CHARS_MAX, one_line};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::read;
use crate::store::{Store, trust};

/// Objects fetched at once.
const PARALLEL_REQUESTS: usize = 4;
/// Roots followed in one pull; a longer chain is followed over several.
const ROOT_CHAIN_MAX: u64 = 64;
/// Why a response that ended early was refused.
const TRUNCATED: &str =
    "the server closed the connection before the end of its answer (a truncated response)";
/// The largest CA file read.
const CA_FILE_BYTES_MAX: usize = 1 << 20;
const POOL_MODE: u32 = 0o700;
/// `fetched/refused`: the manifest whose pulled candidate a check refused.
const REFUSED_NAME: &str = "refused";
const REFUSAL_REASON_CHARS_MAX: usize = 1024;

/// What a pull found.
pub enum Pulled {
    /// The head names the manifest of a kept generation: nothing more was fetched.
    Have { generation: u64, serial: u64 },
    /// The manifest and every object the store lacks are in `fetched/`.
    Ready { serial: u64, manifest: Hash },
    /// The head names the manifest whose candidate a check refused the last time: nothing
    /// more was fetched, and that refusal stands.
    Refused { rejection: Rejection },
}

/// What crossed the wire, for `update`'s report and the fleet simulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct PullStats {
    pub requests: u64,
    /// Response bodies, as received (compressed).
    pub bytes: u64,
    pub objects: u64,
    /// Whether the manifest came as a delta.
    pub delta: bool,
}

pub enum PullProgress {
    Objects { done: u64, total: u64, bytes: u64 },
}

/// An HTTP(S) client for one repository, with the pull's deadline.
struct Remote {
    agent: ureq::Agent,
    base: String,
    deadline: Instant,
    timeout: Duration,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Remote {
    fn new(fetch: &FetchConfig, url: &str) -> Result<Remote> {
        let timeout = Duration::from_secs(fetch.timeout_secs);
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("polstore/", env!("CARGO_PKG_VERSION")))
            .timeout_global(Some(timeout));
        if let Some(ca_file) = &fetch.ca_file {
            let pem = read::read_regular(ca_file, CA_FILE_BYTES_MAX).map_err(|error| {
                Error::Refused(format!("fetch.ca_file {}: {error}", ca_file.display()))
            })?;
            let mut certificates = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(certificate)) = item {
                    certificates.push(certificate);
                }
            }
            if certificates.is_empty() {
                return Err(Error::Refused(format!(
                    "fetch.ca_file {}: holds no PEM certificate",
                    ca_file.display()
                )));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certificates))
                    .build(),
            );
        }
        Ok(Remote {
            agent: config.build().into(),
            base: url.trim_end_matches('/').to_string(),
            deadline: Instant::now() + timeout,
            timeout,
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    fn stats(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// GETs `path` below the repository: the body, of at most `limit` bytes, or `None`
    /// when the server says 404.
    fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/{path}", self.base);
        let refuse = |reason: String| {
            Error::Refused(format!(
                "pull of {}: {reason}",
                one_line(&url, QUOTED_CHARS_MAX)
            ))
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(refuse(format!(
                "fetch.timeout_secs ({} s) ran out",
                self.timeout.as_secs()
            )));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let describe = |error: ureq::Error| match error {
            ureq::Error::Timeout(_) => format!(
                "timed out (fetch.timeout_secs is {} s)",
                self.timeout.as_secs()
            ),
            ureq::Error::BodyExceedsLimit(_) => {
                format!("the server sent more than the {limit} bytes such a file may have")
            }
            // ureq says only "io: Peer disconnected", in the headers as in the body.
            ureq::Error::Io(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                TRUNCATED.to_string()
            }
            error => one_line(&error.to_string(), QUOTED_CHARS_MAX),
        };
        let mut response = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(left))
            .build()
            .call()
            .map_err(|error| refuse(describe(error)))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("nowhere");
            return Err(refuse(format!(
                "redirect ({status}) to {} refused: a repository's server must serve it itself",
                one_line(location, QUOTED_CHARS_MAX)
            )));
        }
        if status != 200 {
            return Err(refuse(format!("the server answered HTTP {status}")));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|error| refuse(describe(error)))?;
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(Some(body))
    }
}

/// A repository's objects, asked for by hash alone (`verify --repair`): each at most
/// `limit` bytes, kept only when it hashes to what was asked.
pub struct RepositoryObjects {
    remote: Remote,
    limit: u64,
}

impl RepositoryObjects {
    pub fn new(fetch: &FetchConfig, url: &str, limit: u64) -> Result<RepositoryObjects> {
        Ok(RepositoryObjects {
            remote: Remote::new(fetch, url)?,
            limit,
        })
    }
}

impl crate::transport::ObjectSource for RepositoryObjects {
    fn describe(&self) -> String {
        format!("the repository {}", self.remote.base)
    }

    fn manifest(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn objects(
        &self,
        wanted: &HashSet<Hash>,
        found: &mut dyn FnMut(Hash, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut wanted: Vec<&Hash> = wanted.iter().collect();
        wanted.sort_by_key(|hash| hash.0);
        for hash in wanted {
            let object = repo::object_path(*hash);
            let Some(compressed) = self
                .remote
                .get(&object, repo::compressed_bytes_max(self.limit))?
            else {
                continue;
            };
            let content = repo::decompress(&compressed, self.limit)
                .map_err(|error| reject(Check::Integrity, &object, error))?;
            if Hash::of(&content) != *hash {
                return Err(reject(Check::Integrity, &object, "does not match its hash"));
            }
            found(*hash, content)?;
        }
        Ok(())
    }
}

fn reject(check: Check, path: &str, reason: impl Into<String>) -> Error {
    Rejection::new(check, Some(path), reason).into()
}

/// Pulls the node's head and what it names (module documentation).
/// `force`: check again a candidate a check refused before (`update --force`).
pub fn pull(
    store: &Store,
    url: &str,
    force: bool,
    progress: &mut dyn FnMut(PullProgress),
) -> (Result<Pulled>, PullStats) {
    let remote = match Remote::new(&store.config.fetch, url) {
        Ok(remote) => remote,
        Err(error) => return (Err(error), PullStats::default()),
    };
    let mut stats = PullStats::default();
    let result = pull_inner(store, &remote, force, &mut stats, progress);
    (stats.requests, stats.bytes) = remote.stats();
    (result, stats)
}

fn pull_inner(
    store: &Store,
    remote: &Remote,
    force: bool,
    stats: &mut PullStats,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<Pulled> {
    let config = &store.config;
    let node = config.fetch.node_name();
    let now = Timestamp::now();

    // The head, and the roots up to the one that signed it.
    let head_path = repo::head_path(node);
    let Some(head_file) = remote.get(&head_path, HEAD_FILE_BYTES_MAX as u64)? else {
        return Err(Error::Refused(format!(
            "pull of {}/{head_path}: the server has no head for node {node} (404)",
            remote.base
        )));
    };
    let (head_signatures, head_text) = signatures::split_signed(&head_file)
        .map_err(|error| reject(Check::Integrity, &head_path, error.to_string()))?;
    let head =
        Head::parse(head_text).map_err(|error| reject(Check::Integrity, &head_path, error))?;
    let trust = checks::trust(config, &store.layout)?;
    let mut root = trust.root.clone();
    if head.root > root.version && config.trust.root.is_some() {
        root = follow_roots(store, remote, trust, head.root)?;
    }
    if head.root < root.version {
        return Err(reject(
            Check::Freshness,
            &head_path,
            format!(
                "signed under root version {}, older than the trusted root version {}: a replayed head, or a repository not yet moved to the new root",
                head.root, root.version
            ),
        ));
    }
    if let Some(expires) = root.expired(now) {
        return Err(reject(
            Check::Freshness,
            &head_path,
            format!(
                "the trusted root (version {}) expired at {expires}; the repository offers no newer one",
                root.version
            ),
        ));
    }
    root.check(Role::Head, head_text, &head_signatures)
        .map_err(|error| reject(Check::Integrity, &head_path, error.to_string()))?;
    // Only now, signed, does what the head says count.
    if head.node != node {
        return Err(reject(
            Check::Integrity,
            &head_path,
            format!("is the head of node {}, not of {node}", head.node),
        ));
    }
    if head.expires <= now {
        return Err(reject(
            Check::Freshness,
            &head_path,
            format!(
                "expired at {} (now {now}): the repository is not being refreshed, or a mirror serves an old head",
                head.expires
            ),
        ));
    }
    let skew = config.trust.max_clock_skew_secs;
    if head.created > now.plus_secs(skew) {
        return Err(reject(
            Check::Freshness,
            &head_path,
            format!(
                "created {} is in the future (now {now}, allowed skew {skew} s)",
                head.created
            ),
        ));
    }

    // Already have it? Only the newest serial accepted may be had: a head naming an
    // older one, even one a kept generation holds, is a replay (TUF's rule for a
    // timestamp), and the hub's timer signs the newest again, never an older one.
    let read = store.db.read()?;
    let state = read.state()?;
    let generations = read.generations()?;
    let replayed = || {
        reject(
            Check::Freshness,
            &head_path,
            format!(
                "names serial {}, not above the highest accepted serial {} (replay or downgrade)",
                head.serial, state.serial_max
            ),
        )
    };
    if head.serial < state.serial_max {
        return Err(replayed());
    }
    // Only a generation of the head's serial can hold its manifest: no other is hashed.
    for (generation, record) in generations.iter().rev() {
        if record.serial == head.serial
            && Hash::of(&read.manifest(*generation)?.manifest) == head.manifest
        {
            return Ok(Pulled::Have {
                generation: *generation,
                serial: record.serial,
            });
        }
    }
    if head.serial <= state.serial_max {
        return Err(replayed());
    }
    if !force && let Some(rejection) = Pool::refused(&store.layout.fetched(), head.manifest) {
        return Ok(Pulled::Refused { rejection });
    }

    // The manifest: a delta from the active one, else whole.
    let limit = head.manifest_size.min(MANIFEST_BYTES_MAX as u64);
    let signed_limit = limit + SIGNATURE_LIST_BYTES_MAX as u64;
    let base = match state.active {
        Some(active) => Some(read.manifest(active)?.manifest),
        None => None,
    };
    drop(read);
    let mut fetched = None;
    if let Some(base) = &base {
        let path = repo::delta_path(head.manifest, Hash::of(base));
        if let Some(compressed) = remote.get(&path, repo::compressed_bytes_max(signed_limit))? {
            let signed = repo::decompress(&compressed, signed_limit)
                .map_err(|error| reject(Check::Integrity, &path, error))?;
            let (list, body) = signatures::split_signed(&signed)
                .map_err(|error| reject(Check::Integrity, &path, error.to_string()))?;
            let bytes = delta::apply(base, body, limit as usize)
                .map_err(|error| reject(Check::Integrity, &path, error))?;
            stats.delta = true;
            fetched = Some((path, list, bytes));
        }
    }
    let (path, list, manifest_bytes) = match fetched {
        Some(fetched) => fetched,
        None => {
            let path = repo::manifest_path(head.manifest);
            let compressed = remote
                .get(&path, repo::compressed_bytes_max(signed_limit))?
                .ok_or_else(|| {
                    reject(
                        Check::Integrity,
                        &path,
                        "missing from the repository, though the head names it",
                    )
                })?;
            let signed = repo::decompress(&compressed, signed_limit)
                .map_err(|error| reject(Check::Integrity, &path, error))?;
            let (list, bytes) = signatures::split_signed(&signed)
                .map_err(|error| reject(Check::Integrity, &path, error.to_string()))?;
            (path, list, bytes.to_vec())
        }
    };
    if manifest_bytes.len() as u64 != head.manifest_size
        || Hash::of(&manifest_bytes) != head.manifest
    {
        return Err(reject(
            Check::Integrity,
            &path,
            format!(
                "is not the manifest the head names (blake3 {}, {} bytes; the head says {}, {} bytes)",
                Hash::of(&manifest_bytes).to_hex(),
                manifest_bytes.len(),
                head.manifest.to_hex(),
                head.manifest_size
            ),
        ));
    }
    let manifest = Manifest::parse(&manifest_bytes, config.manifest_limits())
        .map_err(|error| reject(Check::Integrity, &path, error.to_string()))?;
    // The head key alone must not move a node to what was published for another.
    if manifest.node.as_deref() != Some(node) {
        return Err(reject(
            Check::Integrity,
            &path,
            match &manifest.node {
                Some(other) => format!("was published for node {other}, not for {node}"),
                None => format!("names no node, so it was not published for {node}"),
            },
        ));
    }
    if manifest.serial != head.serial {
        return Err(reject(
            Check::Integrity,
            &path,
            format!(
                "has serial {}, the head names {} (mixed versions)",
                manifest.serial, head.serial
            ),
        ));
    }
    root.check(Role::Manifest, &manifest_bytes, &list)
        .map_err(|error| reject(Check::Integrity, SIGNATURE_NAME, error.to_string()))?;

    // The objects the store lacks, into fetched/.
    let pool = Pool::open(&store.layout.fetched())?;
    let read = store.db.read()?;
    let mut sizes: HashMap<Hash, (u64, &str)> = HashMap::new();
    for entry in &manifest.entries {
        sizes.entry(entry.hash).or_insert((entry.size, &entry.path));
    }
    pool.keep_only(&sizes.keys().copied().collect())?;
    let mut wanted = Vec::new();
    for (hash, (size, path)) in &sizes {
        if !read.has_object(*hash)? && !pool.has(*hash, *size) {
            wanted.push((*hash, *size, *path));
        }
    }
    drop(read);
    wanted.sort_by_key(|(_, _, path)| *path);
    stats.objects = wanted.len() as u64;
    fetch_objects(remote, &pool, &wanted, progress)?;
    pool.put_envelope(&manifest_bytes, list)?;
    Ok(Pulled::Ready {
        serial: manifest.serial,
        manifest: head.manifest,
    })
}

/// Follows the chain of roots from `trusted` up to `version`, each verified by the one
/// before it, and records the newest in the store.
fn follow_roots(
    store: &Store,
    remote: &Remote,
    trusted: checks::Trust,
    version: u64,
) -> Result<Root> {
    let mut root = trusted.root;
    let mut chain = trusted.chain;
    let mut newest = None;
    let last = version.min(root.version.saturating_add(ROOT_CHAIN_MAX));
    while root.version < last {
        let next = root.version + 1;
        let path = repo::root_path(next);
        let bytes = remote
            .get(&path, ROOT_FILE_BYTES_MAX as u64)?
            .ok_or_else(|| {
                reject(
                    Check::Integrity,
                    &path,
                    format!(
                        "missing from the repository, though the head is signed under root version {version}"
                    ),
                )
            })?;
        let signed = SignedRoot::parse(&bytes)
            .map_err(|error| reject(Check::Integrity, &path, error.to_string()))?;
        signed
            .check_follows(&root)
            .map_err(|error| reject(Check::Integrity, &path, error))?;
        root = signed.root.clone();
        chain.push(Hash::of(&signed.text));
        newest = Some(signed);
    }
    if let Some(newest) = newest {
        trust::record_root(&store.layout, &newest, &chain)?;
        crate::crashpoint::point("pull-root-recorded");
    }
    Ok(root)
}

fn fetch_objects(
    remote: &Remote,
    pool: &Pool,
    wanted: &[(Hash, u64, &str)],
    progress: &mut dyn FnMut(PullProgress),
) -> Result<()> {
    let total = wanted.len() as u64;
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let (sender, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_REQUESTS.min(wanted.len()) {
            let sender = sender.clone();
            let (next, failed, first_error) = (&next, &failed, &first_error);
            scope.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((hash, size, path)) = wanted.get(index) else {
                        return;
                    };
                    if let Err(error) = fetch_object(remote, pool, *hash, *size, path) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("no panic holds it")
                            .get_or_insert(error);
                        return;
                    }
                    let _ = sender.send(());
                }
            });
        }
        // Every worker holds a sender: the loop ends when the last one is done.
        drop(sender);
        let mut done = 0;
        while finished.recv().is_ok() {
            done += 1;
            let (_, bytes) = remote.stats();
            progress(PullProgress::Objects { done, total, bytes });
        }
    });
    match first_error.into_inner().expect("no panic holds it") {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn fetch_object(remote: &Remote, pool: &Pool, hash: Hash, size: u64, path: &str) -> Result<()> {
    let object = repo::object_path(hash);
    let compressed = remote
        .get(&object, repo::compressed_bytes_max(size))?
        .ok_or_else(|| {
            reject(
                Check::Integrity,
                path,
                format!("its object {object} is missing from the repository"),
            )
        })?;
    let content = repo::decompress(&compressed, size).map_err(|error| {
        reject(
            Check::Integrity,
            path,
            format!("its object {object}: {error}"),
        )
    })?;
    if content.len() as u64 != size || Hash::of(&content) != hash {
        return Err(reject(
            Check::Integrity,
            path,
            format!(
                "its object {object} does not match its hash (blake3 {}, {} bytes)",
                Hash::of(&content).to_hex(),
                content.len()
            ),
        ));
    }
    pool.put(hash, &content)
}

/// `STORE/fetched/`: verified objects by hash, and the manifest and signature list of the
/// pull that is ready. Nothing here is trusted when read: ingest checks each object's hash.
pub struct Pool {
    root: PathBuf,
    objects: PathBuf,
}

impl Pool {
    pub fn open(root: &Path) -> Result<Pool> {
        let objects = root.join("objects");
        for directory in [root, objects.as_path()] {
            match durable::create_directory(directory, POOL_MODE) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(Error::io("cannot create", directory)(error)),
            }
            let metadata =
                fs::symlink_metadata(directory).map_err(Error::io("cannot read", directory))?;
            if !metadata.is_dir() {
                return Err(Error::Refused(format!(
                    "{} is a {}, not the directory polstore makes",
                    directory.display(),
                    crate::fs::type_name(metadata.file_type())
                )));
            }
        }
        Ok(Pool {
            root: root.to_path_buf(),
            objects,
        })
    }

    pub fn object(&self, hash: Hash) -> PathBuf {
        self.objects.join(hash.to_hex())
    }

    /// Whether the pool holds this object whole: objects are not synced, so a crash may
    /// have left one torn, which is then fetched again rather than refused at ingest.
    fn has(&self, hash: Hash, size: u64) -> bool {
        read_pooled(&self.root, hash, size).is_some()
    }

    /// Removes every object not among `wanted`: what an earlier pull of another manifest
    /// left. Anything that is not a name of ours is removed too.
    fn keep_only(&self, wanted: &HashSet<Hash>) -> Result<()> {
        let listing =
            fs::read_dir(&self.objects).map_err(Error::io("cannot read", &self.objects))?;
        for entry in listing {
            let entry = entry.map_err(Error::io("cannot read", &self.objects))?;
            let keep = entry
                .file_name()
                .to_str()
                .and_then(Hash::from_hex)
                .is_some_and(|hash| wanted.contains(&hash));
            if !keep {
                let path = entry.path();
                durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
            }
        }
        Ok(())
    }

    /// Writes a verified object: under a temporary name, then renamed. Not synced: a
    /// crash may leave it torn, and ingest, which checks its hash, then fetches it again.
    fn put(&self, hash: Hash, content: &[u8]) -> Result<()> {
        let target = self.object(hash);
        let temporary = self.objects.join(format!(".{}.part", hash.to_hex()));
        durable::remove_tree_if_exists(&temporary)
            .map_err(Error::io("cannot remove", &temporary))?;
        let file = durable::create_file(&temporary, content, 0o600)
            .map_err(Error::io("cannot write", &temporary))?;
        drop(file);
        fs::rename(&temporary, &target).map_err(Error::io("cannot rename", &target))
    }

    fn put_envelope(
        &self,
        manifest: &[u8],
        list: Vec<crate::format::signify::Signature>,
    ) -> Result<()> {
        let signatures: Vec<_> = list
            .into_iter()
            .map(|signature| {
                let comment = format!("signed by {}", signature.keynum());
                (signature, comment)
            })
            .collect();
        for (name, content) in [
            (MANIFEST_NAME, manifest.to_vec()),
            (
                SIGNATURE_NAME,
                signatures::render_list(&signatures).into_bytes(),
            ),
        ] {
            let path = self.root.join(name);
            durable::replace_file_synced(&path, &content, 0o600)
                .map_err(Error::io("cannot write", &path))?;
        }
        Ok(())
    }

    /// Empties the pool once an ingest used it (or refused what it held).
    pub fn clear(root: &Path) -> Result<()> {
        durable::remove_tree_if_exists(root).map_err(Error::io("cannot remove", root))
    }

    /// Remembers that a check refused the candidate of `manifest` (`fetched/refused`), so
    /// that a head still naming it costs one request: the hash, the check, the file and
    /// the reason, a line each. Written after [`Pool::clear`].
    pub fn record_refusal(root: &Path, manifest: Hash, rejection: &Rejection) -> Result<()> {
        let pool = Pool::open(root)?;
        let check = match &rejection.check {
            Check::User(name) => format!("user {name}"),
            check => check.to_string(),
        };
        let text = format!(
            "{}\n{check}\n{}\n{}\n",
            manifest.to_hex(),
            rejection.path.as_deref().unwrap_or(""),
            one_line(&rejection.reason, REFUSAL_REASON_CHARS_MAX)
        );
        let path = pool.root.join(REFUSED_NAME);
        durable::replace_file_synced(&path, text.as_bytes(), 0o600)
            .map_err(Error::io("cannot write", &path))
    }

    /// The refusal recorded for `manifest`, if the last pulled candidate was that one.
    fn refused(root: &Path, manifest: Hash) -> Option<Rejection> {
        let bytes =
            read::read_regular(&root.join(REFUSED_NAME), 4 * REFUSAL_REASON_CHARS_MAX).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if Hash::from_hex(lines.next()?)? != manifest {
            return None;
        }
        let check = match lines.next()? {
            "integrity" => Check::Integrity,
            "freshness" => Check::Freshness,
            "parse" => Check::Parse,
            other => Check::User(other.strip_prefix("user ")?.to_string()),
        };
        let path = lines.next().filter(|path| !path.is_empty());
        let reason = lines.next()?;
        Some(Rejection::new(
            check,
            path,
            format!(
                "{reason} (the same candidate as the last update's: not fetched again until the head names another; update --force checks it again)"
            ),
        ))
    }
}

/// Reads a pool object for ingest: bounded, not followed, checked against its hash.
pub fn read_pooled(root: &Path, hash: Hash, size: u64) -> Option<Vec<u8>> {
    let path = root.join("objects").join(hash.to_hex());
    let content = read::read_regular(&path, size as usize).ok()?;
    (content.len() as u64 == size && Hash::of(&content) == hash).then_some(content)
}
