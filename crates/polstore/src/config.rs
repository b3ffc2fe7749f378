//! `polstore.toml`: the store's configuration, read once per command.
//!
//! Every field has a default so that a store created by an older polstore keeps working;
//! unknown fields are refused so that a typo does not silently turn a check off.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::format::manifest::ManifestLimits;
use crate::format::policy_path::PathLimits;

pub const CONFIG_FILE_NAME: &str = "polstore.toml";
/// How many views a `[views]` table may name.
pub const VIEWS_MAX: usize = 16;
/// How long a view's name may be, in bytes.
pub const VIEW_NAME_BYTES_MAX: usize = 64;

/// One path the agent reads policy from: a symlink polstore puts there once, resolving
/// through `STORE/active` (store-format.md § Views).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// `None` for the one view of `view = PATH`, which shows the whole tree; `Some(NAME)`
    /// for a view of `[views]`, which shows the tree's top-level directory NAME.
    pub name: Option<String>,
    pub path: PathBuf,
}

/// Whether `name` is a view name: 1 to [`VIEW_NAME_BYTES_MAX`] bytes of `[a-z0-9_-]`.
pub fn is_view_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= VIEW_NAME_BYTES_MAX
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-'
        })
}
const CONFIG_BYTES_MAX: u64 = 1 << 20;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The one view: the symlink the agent reads, resolving to the active generation's
    /// tree. Exactly one of `view` and `views` is set; callers use [`Config::views`].
    #[serde(default)]
    view: Option<PathBuf>,
    /// Several views, NAME = PATH: each shows the top-level directory NAME of the active
    /// generation's tree, and all switch together (store-format.md § Views).
    #[serde(default)]
    views: Option<std::collections::BTreeMap<String, PathBuf>>,
    /// Whether the view reads the generations through a read-only bind mount, so that
    /// nothing (the agent, root) writes into a generation through it. Needs the privilege to
    /// mount; without it polstore falls back to a writable view and says so.
    #[serde(default = "defaults::yes")]
    pub protect_view: bool,
    /// How many of the newest generations `polstore gc` keeps, besides the active one, the
    /// last good one before it and pinned ones; absent, [`crate::ops::gc::DEFAULT_KEEP`].
    /// No ingest collects: gc is off the update path.
    #[serde(default)]
    pub keep: Option<u32>,
    #[serde(default)]
    pub trust: TrustConfig,
    #[serde(default)]
    pub checks: ChecksConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub fetch: FetchConfig,
    #[serde(default)]
    pub verify: VerifyConfig,
    #[serde(default)]
    pub cfengine: CfengineConfig,
}

/// Where CFEngine's programs are: a command that names one bare (`cf-agent`) runs the
/// first of `bin_dirs` that holds it ([`crate::programs`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CfengineConfig {
    #[serde(default = "defaults::bin_dirs")]
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CfengineConfig {
    fn default() -> Self {
        CfengineConfig {
            bin_dirs: defaults::bin_dirs(),
        }
    }
}

/// How `polstore update` gets new policy, and where `verify --repair` finds a fresh copy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Run by `update` (and by `verify --repair` when it needs a fresh copy); it leaves the
    /// policy tree or tarball at `drop`. `{drop}` and `{force}` (`1` with `--force`,
    /// else `0`) are replaced; POLSTORE_DROP and POLSTORE_FORCE are set too. Empty: the
    /// transport runs on its own and `update` only ingests what is at `drop`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Where new policy arrives: a directory, or a .tar/.tar.gz/.tar.bz2 file.
    pub drop: Option<PathBuf>,
    #[serde(default = "defaults::fetch_timeout_secs")]
    pub timeout_secs: u64,
    /// What a drop directory holds when the policy arrives as several archives (Rudder's
    /// rules and library): each part is one archive in the directory, and where its
    /// content goes in the candidate. Empty: a directory is the tree itself.
    #[serde(default)]
    pub parts: Vec<Part>,
    /// A polstore repository (`polstore publish --repo`) served over HTTP or HTTPS: the
    /// node pulls its head and only the objects it lacks. Excludes `command` and `drop`.
    pub url: Option<String>,
    /// The head the node pulls (`heads/NODE`); left out, `default`.
    pub node: Option<String>,
    /// PEM certificates the HTTPS server's must chain to, instead of the built-in
    /// (Mozilla's) roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            command: Vec::new(),
            drop: None,
            timeout_secs: defaults::fetch_timeout_secs(),
            parts: Vec::new(),
            url: None,
            node: None,
            ca_file: None,
        }
    }
}

impl FetchConfig {
    /// The head a pull asks for.
    pub fn node_name(&self) -> &str {
        self.node.as_deref().unwrap_or(DEFAULT_NODE)
    }
}

/// The head a node pulls, and `publish --repo` writes, when none is named.
pub const DEFAULT_NODE: &str = "default";

/// One archive of a drop directory made of parts (`[[fetch.parts]]`): the files under
/// `from` in the archive `file` are the candidate's files under `to`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The archive's name in the drop directory (`.tar`, `.tar.gz` or `.tar.bz2`).
    pub file: String,
    /// The directory inside the archive whose content is taken; empty: the whole archive.
    /// Anything in the archive outside it refuses the candidate.
    #[serde(default)]
    pub from: String,
    /// Where that content goes in the candidate: with several views, a view's name.
    pub to: String,
}

impl Part {
    /// Parses `TO:FROM:ARCHIVE` (the manifest command's `--part`); `FROM` may be empty.
    pub fn parse_argument(argument: &str) -> Result<(Part, PathBuf), String> {
        let mut fields = argument.splitn(3, ':');
        let (Some(to), Some(from), Some(archive)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "{:?} is not TO:FROM:ARCHIVE",
                text_prefix(argument)
            ));
        };
        let archive = PathBuf::from(archive);
        let file = archive
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = Part {
            file,
            from: from.to_string(),
            to: to.to_string(),
        };
        validate_parts(
            std::slice::from_ref(&part),
            LimitsConfig::default().path_limits(),
        )?;
        Ok((part, archive))
    }
}

fn text_prefix(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Refuses parts whose file is not a plain name in the drop directory, whose `from` or
/// `to` is not a policy path, or that put two archives in the same place.
pub fn validate_parts(parts: &[Part], limits: PathLimits) -> Result<(), String> {
    let mut places = std::collections::BTreeSet::new();
    for part in parts {
        let file = &part.file;
        if file.is_empty()
            || file == "."
            || file == ".."
            || file.contains('/')
            || file.contains('\0')
            || file == crate::format::policy_path::MANIFEST_NAME
            || file == crate::format::policy_path::SIGNATURE_NAME
        {
            return Err(format!(
                "fetch.parts: file {:?} must be the name of an archive in the drop directory",
                text_prefix(file)
            ));
        }
        if !part.from.is_empty() {
            crate::format::policy_path::validate(&part.from, limits).map_err(|error| {
                format!("fetch.parts: from {:?}: {error}", text_prefix(&part.from))
            })?;
        }
        crate::format::policy_path::validate(&part.to, limits)
            .map_err(|error| format!("fetch.parts: to {:?}: {error}", text_prefix(&part.to)))?;
        if !places.insert(part.to.as_str()) {
            return Err(format!(
                "fetch.parts: two parts go to {:?}",
                text_prefix(&part.to)
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Re-run the parse check (cf-promises) on the active generation in `verify`.
    #[serde(default = "defaults::yes")]
    pub parse: bool,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig { parse: true }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// A root of trust (`polstore root create`): keys, thresholds per role, version,
    /// expiry. Excludes `keys`. Newer roots a pull follows are kept in the store.
    pub root: Option<PathBuf>,
    #[serde(default = "defaults::yes")]
    pub require_signature: bool,
    #[serde(default = "defaults::clock_skew_secs")]
    pub max_clock_skew_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// For the parse check: each run of `cf_promises` (once per entry point).
    #[serde(default = "defaults::check_timeout_secs")]
    pub timeout_secs: u64,
    /// The files the agent starts from, relative to the tree. When `cf_promises` names
    /// `{entry}`, each must be in every candidate and it runs once for each.
    #[serde(default = "defaults::entry_points")]
    pub entry_points: Vec<String>,
    /// The parse check. With `{entry}`, run once per entry point; without (a
    /// configuration written before entry points), once. Empty: no parse check.
    #[serde(default = "defaults::cf_promises")]
    pub cf_promises: Vec<String>,
    /// The user checks' directory. Left out: [`defaults::CHECKS_DIR`], which may be
    /// missing (no user checks). Given: it must exist, or every ingest is refused, so that
    /// a typo never turns the checks off.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// In `checks.cf_promises`: the entry point it runs on, relative to `{tree}`.
pub const ENTRY: &str = "{entry}";

impl ChecksConfig {
    /// Whether the parse check runs once per entry point (its command names `{entry}`),
    /// rather than once (a configuration written before entry points).
    pub fn per_entry_point(&self) -> bool {
        self.cf_promises
            .iter()
            .any(|argument| argument.contains(ENTRY))
    }

    /// The checks directory, and whether the configuration names it.
    pub fn directory(&self) -> (PathBuf, bool) {
        match &self.dir {
            Some(dir) => (dir.clone(), true),
            None => (PathBuf::from(defaults::CHECKS_DIR), false),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default = "defaults::agent_command")]
    pub command: Vec<String>,
    #[serde(default = "defaults::yes")]
    pub confirm: bool,
    #[serde(default = "defaults::agent_timeout_secs")]
    pub timeout_secs: u64,
}

/// Bounds on what one candidate may hold. Hostile input is refused as soon as it crosses one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "defaults::files_max")]
    pub files_max: usize,
    #[serde(default = "defaults::file_bytes_max")]
    pub file_bytes_max: u64,
    #[serde(default = "defaults::tree_bytes_max")]
    pub tree_bytes_max: u64,
    #[serde(default = "defaults::depth_max")]
    pub depth_max: usize,
    #[serde(default = "defaults::path_bytes_max")]
    pub path_bytes_max: usize,
}

pub mod defaults {

    pub fn fetch_timeout_secs() -> u64 {
        600
    }
    pub fn yes() -> bool {
        true
    }
    pub fn clock_skew_secs() -> u64 {
        300
    }
    pub fn check_timeout_secs() -> u64 {
        300
    }
    pub fn agent_timeout_secs() -> u64 {
        600
    }
    /// The agent's own validation (cf-agent runs `cf-promises -c` before it uses a
    /// policy), on each entry point.
    pub fn cf_promises() -> Vec<String> {
        ["cf-promises", "-c", "-f", "{tree}/{entry}"]
            .map(String::from)
            .to_vec()
    }
    /// cf-agent runs `promises.cf`; cf-execd runs `update.cf` before it, to fetch policy.
    pub fn entry_points() -> Vec<String> {
        ["promises.cf", "update.cf"].map(String::from).to_vec()
    }
    pub fn agent_command() -> Vec<String> {
        ["cf-agent", "-K", "-f", "{tree}/promises.cf"]
            .map(String::from)
            .to_vec()
    }
    /// Where cfengine.com's packages, Rudder's and Debian's put CFEngine's programs.
    pub fn bin_dirs() -> Vec<std::path::PathBuf> {
        ["/var/cfengine/bin", "/opt/rudder/bin", "/usr/bin"]
            .map(std::path::PathBuf::from)
            .to_vec()
    }
    pub const CHECKS_DIR: &str = "/etc/polstore/checks.d";
    pub fn files_max() -> usize {
        100_000
    }
    pub fn file_bytes_max() -> u64 {
        32 << 20
    }
    pub fn tree_bytes_max() -> u64 {
        2 << 30
    }
    pub fn depth_max() -> usize {
        32
    }
    pub fn path_bytes_max() -> usize {
        1024
    }
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            keys: Vec::new(),
            root: None,
            require_signature: true,
            max_clock_skew_secs: defaults::clock_skew_secs(),
        }
    }
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            timeout_secs: defaults::check_timeout_secs(),
            entry_points: defaults::entry_points(),
            cf_promises: defaults::cf_promises(),
            dir: None,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            command: defaults::agent_command(),
            confirm: true,
            timeout_secs: defaults::agent_timeout_secs(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            files_max: defaults::files_max(),
            file_bytes_max: defaults::file_bytes_max(),
            tree_bytes_max: defaults::tree_bytes_max(),
            depth_max: defaults::depth_max(),
            path_bytes_max: defaults::path_bytes_max(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {CONFIG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_text(path).map(|(config, _)| config)
    }

    /// [`Config::load`], and the very text it was parsed from.
    pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        // Opened without following a symlink or blocking on a FIFO, read with a bound.
        let bytes = match crate::fs::read::read_regular(path, CONFIG_BYTES_MAX as usize) {
            Ok(bytes) => bytes,
            Err(crate::fs::read::ReadError::TooLarge { .. }) => {
                return Err(ConfigError::TooLarge {
                    path: path.to_path_buf(),
                });
            }
            Err(crate::fs::read::ReadError::NotFound) => {
                return Err(read_error(std::io::ErrorKind::NotFound.into()));
            }
            Err(crate::fs::read::ReadError::Io(error)) => return Err(read_error(error)),
            Err(refusal) => return Err(read_error(std::io::Error::other(refusal.to_string()))),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| read_error(std::io::Error::other("not valid UTF-8")))?;
        let config = Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok((config, text))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|error| {
            // toml's messages span several lines with a source excerpt; keep the first.
            error
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string()
                + &error
                    .span()
                    .map(|span| format!(" (at byte {})", span.start))
                    .unwrap_or_default()
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The views, whichever form the configuration uses: one unnamed view, or the named
    /// ones in name order.
    pub fn views(&self) -> Vec<View> {
        match (&self.view, &self.views) {
            (Some(path), _) => vec![View {
                name: None,
                path: path.clone(),
            }],
            (None, Some(views)) => views
                .iter()
                .map(|(name, path)| View {
                    name: Some(name.clone()),
                    path: path.clone(),
                })
                .collect(),
            // validate() refuses a configuration without either.
            (None, None) => Vec::new(),
        }
    }

    /// The view names of a several-view store (the top-level directories every candidate
    /// has, and only those), or `None` for a one-view store.
    pub fn view_names(&self) -> Option<Vec<String>> {
        self.views
            .as_ref()
            .map(|views| views.keys().cloned().collect())
    }

    fn validate(&self) -> Result<(), String> {
        validate_views(self.view.as_deref(), self.views.as_ref())?;
        if let Some(drop) = &self.fetch.drop
            && !drop.is_absolute()
        {
            return Err(format!("fetch.drop {drop:?} must be an absolute path"));
        }
        validate_parts(&self.fetch.parts, self.path_limits())?;
        if let Some(names) = self.view_names() {
            for part in &self.fetch.parts {
                if !names.contains(&part.to) {
                    return Err(format!(
                        "fetch.parts: to {:?} is not one of the views ({})",
                        text_prefix(&part.to),
                        names.join(", ")
                    ));
                }
            }
        }
        if !self.fetch.command.is_empty() && self.fetch.drop.is_none() {
            return Err(
                "fetch.command is set but fetch.drop is not: say where it leaves the policy".into(),
            );
        }
        for key in &self.trust.keys {
            if !key.is_absolute() {
                return Err(format!("trust key {key:?} must be an absolute path"));
            }
        }
        if let Some(root) = &self.trust.root {
            if !root.is_absolute() {
                return Err(format!("trust.root {root:?} must be an absolute path"));
            }
            if !self.trust.keys.is_empty() {
                return Err(
                    "trust.root and trust.keys are both set: a root names its keys itself".into(),
                );
            }
        }
        if let Some(url) = &self.fetch.url {
            if !self.fetch.command.is_empty() || self.fetch.drop.is_some() {
                return Err(
                    "fetch.url is set with fetch.command or fetch.drop: a pull needs neither"
                        .into(),
                );
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "fetch.url {:?} must start with http:// or https://",
                    text_prefix(url)
                ));
            }
            if !self.fetch.parts.is_empty() {
                return Err("fetch.url is set with fetch.parts: a repository has no parts".into());
            }
        }
        if let Some(node) = &self.fetch.node {
            crate::format::head::check_node(node)
                .map_err(|error| format!("fetch.node: {error}"))?;
        }
        if let Some(ca_file) = &self.fetch.ca_file
            && !ca_file.is_absolute()
        {
            return Err(format!(
                "fetch.ca_file {ca_file:?} must be an absolute path"
            ));
        }
        if let Some(dir) = &self.checks.dir
            && !dir.is_absolute()
        {
            return Err(format!("checks.dir {dir:?} must be an absolute path"));
        }
        for dir in &self.cfengine.bin_dirs {
            if !dir.is_absolute() {
                return Err(format!(
                    "cfengine.bin_dirs: {dir:?} must be an absolute path"
                ));
            }
        }
        for (name, command) in [
            ("checks.cf_promises", &self.checks.cf_promises),
            ("agent.command", &self.agent.command),
            ("fetch.command", &self.fetch.command),
        ] {
            let Some(program) = command.first() else {
                continue;
            };
            if crate::programs::is_cfengine_program(program) {
                if self.cfengine.bin_dirs.is_empty() {
                    return Err(format!(
                        "{name}: the program {program:?} is looked for in cfengine.bin_dirs, which is empty"
                    ));
                }
            } else if !Path::new(program).is_absolute() {
                return Err(format!(
                    "{name}: the program {program:?} must be an absolute path, or one of CFEngine's programs named bare ({}), found in cfengine.bin_dirs",
                    crate::programs::CFENGINE_PROGRAMS.join(", ")
                ));
            }
            if name != "checks.cf_promises"
                && command.iter().any(|argument| argument.contains(ENTRY))
            {
                return Err(format!(
                    "{name}: {ENTRY} means something only in checks.cf_promises"
                ));
            }
        }
        let mut entry_points = std::collections::BTreeSet::new();
        for entry in &self.checks.entry_points {
            crate::format::policy_path::validate(entry, self.path_limits())
                .map_err(|error| format!("checks.entry_points: {entry:?}: {error}"))?;
            if !entry_points.insert(entry) {
                return Err(format!("checks.entry_points: {entry:?} is listed twice"));
            }
        }
        if self.checks.per_entry_point() && entry_points.is_empty() {
            return Err(format!(
                "checks.entry_points is empty, so checks.cf_promises (which names {ENTRY}) would check nothing; set cf_promises = [] to turn the parse check off"
            ));
        }
        let limits = &self.limits;
        let positive = [
            ("limits.files_max", limits.files_max as u64),
            ("limits.file_bytes_max", limits.file_bytes_max),
            ("limits.tree_bytes_max", limits.tree_bytes_max),
            ("limits.path_bytes_max", limits.path_bytes_max as u64),
            ("checks.timeout_secs", self.checks.timeout_secs),
            ("agent.timeout_secs", self.agent.timeout_secs),
            ("fetch.timeout_secs", self.fetch.timeout_secs),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        Ok(())
    }

    /// `argv` with a CFEngine program named bare replaced by where it is found
    /// (`cfengine.bin_dirs`).
    pub fn resolve(&self, argv: &[String]) -> Result<Vec<String>, crate::programs::LocateError> {
        crate::programs::resolve(argv, &self.cfengine.bin_dirs)
    }

    pub fn manifest_limits(&self) -> ManifestLimits {
        self.limits.manifest_limits()
    }

    pub fn path_limits(&self) -> PathLimits {
        self.limits.path_limits()
    }
}

impl LimitsConfig {
    pub fn manifest_limits(&self) -> ManifestLimits {
        ManifestLimits {
            entries_max: self.files_max,
            file_bytes_max: self.file_bytes_max,
            tree_bytes_max: self.tree_bytes_max,
            paths: self.path_limits(),
        }
    }

    pub fn path_limits(&self) -> PathLimits {
        PathLimits {
            path_bytes_max: self.path_bytes_max,
            depth_max: self.depth_max,
        }
    }
}

/// Refuses views that are not exactly one of `view` and `[views]`, a bad name, more than
/// [`VIEWS_MAX`], a relative path, or two paths where one is the other or inside it.
fn validate_views(
    view: Option<&Path>,
    views: Option<&std::collections::BTreeMap<String, PathBuf>>,
) -> Result<(), String> {
    let paths: Vec<(String, &Path)> = match (view, views) {
        (Some(_), Some(_)) => {
            return Err("both view and [views] are set: use one of them".into());
        }
        (None, None) => {
            return Err("neither view nor [views] is set: say where the agent reads".into());
        }
        (Some(path), None) => vec![("view".into(), path)],
        (None, Some(views)) => {
            if views.is_empty() {
                return Err("[views] names no view".into());
            }
            if views.len() > VIEWS_MAX {
                return Err(format!(
                    "[views] names {} views, at most {VIEWS_MAX}",
                    views.len()
                ));
            }
            for name in views.keys() {
                if !is_view_name(name) {
                    return Err(format!(
                        "views: {:?} is not a view name (1 to {VIEW_NAME_BYTES_MAX} of a-z 0-9 _ -)",
                        name.chars().take(80).collect::<String>()
                    ));
                }
            }
            views
                .iter()
                .map(|(name, path)| (format!("views.{name}"), path.as_path()))
                .collect()
        }
    };
    for (key, path) in &paths {
        if !path.is_absolute() {
            return Err(format!("{key} {path:?} must be an absolute path"));
        }
    }
    for (index, (key, path)) in paths.iter().enumerate() {
        for (other_key, other) in &paths[index + 1..] {
            if path.starts_with(other) || other.starts_with(path) {
                return Err(format!(
                    "{key} {path:?} and {other_key} {other:?}: a view may not be another or inside it"
                ));
            }
        }
    }
    Ok(())
}

/// The commented configuration `polstore init` writes.
pub fn default_config_text(views: &[View], keys: &[PathBuf]) -> String {
    default_config_text_with(views, keys, None, None)
}

/// [`default_config_text`], trusting a root of trust instead of keys when `root` is given,
/// and pulling from the repository at `url` when one is given (`init --trust-root`,
/// `init --url`).
pub fn default_config_text_with(
    views: &[View],
    keys: &[PathBuf],
    root: Option<&Path>,
    url: Option<&str>,
) -> String {
    let quote = |path: &Path| toml_string(&path.to_string_lossy());
    let keys: Vec<String> = keys.iter().map(|key| quote(key)).collect();
    let (view_line, views_table) = match views {
        [View { name: None, path }] => (
            format!(
                "# The path the agent reads its policy from. polstore makes it a symlink that\n\
             # resolves, through STORE/active, to the active generation's tree.\n\
             view = {}\n",
                quote(path)
            ),
            String::new(),
        ),
        _ => {
            let mut lines = String::from(
                "# The paths the agent reads its policy from, NAME = PATH. Each is a symlink\n\
                 # that resolves, through STORE/active, to the directory NAME of the active\n\
                 # generation's tree: every candidate holds exactly these directories at its\n\
                 # top, and all views switch together.\n\
                 [views]",
            );
            for view in views {
                lines.push_str(&format!(
                    "\n{} = {}",
                    view.name.as_deref().unwrap_or("tree"),
                    quote(&view.path)
                ));
            }
            (String::new(), lines + "\n")
        }
    };
    let require_signature = !keys.is_empty() || root.is_some();
    let trust_source = match root {
        Some(root) => format!(
            "# The root of trust (`polstore root create`): which keys sign roots, manifests and\n\
             # heads, and how many of each must. Newer roots a pull follows are kept in the store.\n\
             root = {}",
            quote(root)
        ),
        None => format!(
            "# signify public keys (made by `polstore keygen` or `signify-openbsd -G`) whose\n\
             # signatures on polstore.manifest are accepted.\n\
             keys = [{}]",
            keys.join(", ")
        ),
    };
    let url_line = match url {
        Some(url) => format!(
            "# The repository `polstore update` pulls from (`polstore publish --repo`), and the\n\
             # head it pulls (heads/NODE).\n\
             url = {}\n\
             # node = \"default\"\n",
            toml_string(url)
        ),
        None => String::new(),
    };
    // With several views the agent starts from one of them: `inputs` when there is one
    // (Rudder's), else the first.
    let start = match views {
        [View { name: None, .. }] => String::new(),
        _ => views
            .iter()
            .filter_map(|view| view.name.as_deref())
            .find(|name| *name == "inputs")
            .or_else(|| views.first().and_then(|view| view.name.as_deref()))
            .map(|name| format!("{name}/"))
            .unwrap_or_default(),
    };
    format!(
        r#"# polstore configuration. Every key is optional except `view` (or [views]); a key
# left out takes its default, which is the value shown, except for `keep` (see
# below) and [trust] `keys` and `require_signature`, which init writes from its
# --trust options. Reference: README.md.

{view_line}
# The view reads the generations through a read-only bind mount of the store
# (STORE/readonly), so that nothing, root included, writes into a generation
# through it. Needs the privilege to mount (root, outside a restricted container);
# without it the view is writable and `status` and `verify` say so.
protect_view = true

# Generations `polstore gc` keeps: the newest `keep`, plus the active one, the last
# good one before it and pinned ones (`polstore pin`). No ingest or update collects,
# so that an update costs what changed: the verify timer runs gc
# (tools/systemd/polstore-verify.service). Left out, gc keeps the newest 10.
keep = 10

[trust]
{trust_source}
# With false, a candidate without a manifest is accepted with a manifest computed
# from its tree; a signature that is present must still verify.
require_signature = {require_signature}
# How far in the future a manifest's `created` time may be.
max_clock_skew_secs = 300

[checks]
# Each check (each run of the parse check) gets this long before it is killed and the
# candidate rejected.
timeout_secs = 300
# The files the agent starts from: cf-agent runs promises.cf, and cf-execd runs
# update.cf first to fetch new policy. Every candidate must hold each of them.
entry_points = ["{start}promises.cf", "{start}update.cf"]
# The parse check: the agent's own validation (cf-agent runs `cf-promises -c` before
# it uses a policy, and falls back to failsafe.cf when it fails), run once for each
# entry point. {{tree}} is the candidate's directory, {{entry}} the entry point; a
# command without {{entry}} runs once. [] turns it off.
cf_promises = ["cf-promises", "-c", "-f", "{{tree}}/{{entry}}"]
# Every executable file in `dir` runs against each candidate, in name order, with
# POLSTORE_TREE, POLSTORE_SERIAL and POLSTORE_GENERATION set. Non-zero rejects. The
# directory and each check must belong to root (or polstore's user) and be writable by
# no one else. Left out, it is /etc/polstore/checks.d, which may be missing (no user
# checks); a directory named here must exist.
# dir = "/etc/polstore/checks.d"

[agent]
# Run once on each new generation, pinned to its directory. [] turns it off.
command = ["cf-agent", "-K", "-f", "{{tree}}/{start}promises.cf"]
# With true, a failing run (non-zero exit, timeout, or a fall back to failsafe.cf,
# after which cf-agent may still exit 0) rolls back to the previous generation and
# marks the new one failed.
confirm = true
timeout_secs = 600

[limits]
# Bounds on one candidate; anything over them is refused.
files_max = 100000
file_bytes_max = 33554432      # 32 MiB
tree_bytes_max = 2147483648    # 2 GiB
depth_max = 32
path_bytes_max = 1024

[fetch]
# Run by `polstore update`, and by `verify --repair` when it needs a fresh copy. It
# must leave the policy tree (a directory) or a .tar/.tar.gz/.tar.bz2 at `drop`.
# {{drop}} and {{force}} (1 with `update --force` and when `verify --repair` fetches a
# fresh copy, else 0) are replaced; POLSTORE_DROP and POLSTORE_FORCE are set too.
# Examples:
#   command = ["/usr/bin/rsync", "-a", "--delete", "server::policy/", "{{drop}}/"]
#   command = ["/usr/bin/curl", "-fsSo", "{{drop}}", "https://server/policy.tar.gz"]
command = []
{url_line}# drop = "/var/lib/polstore-drop"
timeout_secs = 600
# A drop directory that holds the policy as several archives (Rudder's rules and
# library) says here what each is: the files under `from` in the archive `file` are
# the candidate's files under `to` (with several views, a view's name); anything else
# in the archive refuses it. The manifest and signature lie beside the archives.
#   [[fetch.parts]]
#   file = "rudder.tar.bz2"
#   from = "policies_next"
#   to = "inputs"

[verify]
# Re-run the parse check on the active generation: a policy can stop parsing when
# cf-promises or the node changes, even though its bytes did not.
parse = true

[cfengine]
# A command whose program is one of CFEngine's named bare (cf-agent, cf-promises,
# cf-runagent, cf-net, cf-key, cf-check, cf-secret) runs it from the first of these
# directories that holds it: cfengine.com's packages, Rudder's, Debian's. What runs,
# and its directory, must belong to root and be writable by no one else.
bin_dirs = ["/var/cfengine/bin", "/opt/rudder/bin", "/usr/bin"]
{views_table}"#,
        trust_source = trust_source,
        url_line = url_line,
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Replaces `{tree}`, `{serial}` and `{generation}` in each argument.
pub fn expand_command(
    command: &[String],
    tree: &Path,
    serial: u64,
    generation: u64,
) -> Vec<String> {
    expand(
        command,
        &[
            ("{tree}", &tree.to_string_lossy()),
            ("{serial}", &serial.to_string()),
            ("{generation}", &generation.to_string()),
        ],
    )
}

/// Replaces each placeholder of `values` by its value in each argument, in one pass, so
/// that a value holding a placeholder's name is never expanded again.
pub fn expand(command: &[String], values: &[(&str, &str)]) -> Vec<String> {
    command
        .iter()
        .map(|argument| {
            let mut expanded = String::with_capacity(argument.len());
            let mut rest = argument.as_str();
            'scan: while let Some(start) = rest.find('{') {
                expanded.push_str(&rest[..start]);
                rest = &rest[start..];
                for (name, value) in values {
                    if let Some(after) = rest.strip_prefix(name) {
                        expanded.push_str(value);
                        rest = after;
                        continue 'scan;
                    }
                }
                expanded.push('{');
                rest = &rest[1..];
            }
            expanded.push_str(rest);
            expanded
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_parses_to_the_documented_defaults() {
        let one = |path: &str| {
            vec![View {
                name: None,
                path: PathBuf::from(path),
            }]
        };
        let text = default_config_text(
            &one("/var/cfengine/inputs"),
            &[PathBuf::from("/etc/k\"ey.pub")],
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.views(), one("/var/cfengine/inputs"));
        assert_eq!(config.view_names(), None);
        assert_eq!(config.trust.keys, [PathBuf::from("/etc/k\"ey.pub")]);
        assert!(config.trust.require_signature);
        assert_eq!(config.keep, Some(10));
        assert!(config.verify.parse);
        assert!(config.fetch.command.is_empty());
        assert_eq!(config.checks.cf_promises, defaults::cf_promises());
        assert_eq!(config.checks.entry_points, defaults::entry_points());
        assert_eq!(config.agent.command, defaults::agent_command());
        assert_eq!(config.cfengine.bin_dirs, defaults::bin_dirs());
        assert_eq!(config.limits.file_bytes_max, 32 << 20);
        let unsigned = Config::parse(&default_config_text(&one("/v"), &[])).unwrap();
        assert!(!unsigned.trust.require_signature);
        let several = vec![
            View {
                name: Some("inputs".into()),
                path: PathBuf::from("/var/rudder/cfengine-community/inputs"),
            },
            View {
                name: Some("ncf".into()),
                path: PathBuf::from("/var/rudder/ncf"),
            },
        ];
        let config = Config::parse(&default_config_text(&several, &[])).unwrap();
        assert_eq!(config.views(), several);
        assert_eq!(
            config.view_names(),
            Some(vec!["inputs".into(), "ncf".into()])
        );
        assert_eq!(config.keep, Some(10));
        // The agent starts from the view `inputs`, or else from the first.
        assert_eq!(
            config.checks.entry_points,
            ["inputs/promises.cf", "inputs/update.cf"]
        );
        assert_eq!(config.agent.command[3], "{tree}/inputs/promises.cf");
        let named = |name: &str, path: &str| View {
            name: Some(name.into()),
            path: PathBuf::from(path),
        };
        let config = Config::parse(&default_config_text(
            &[named("lib", "/l"), named("rules", "/r")],
            &[],
        ))
        .unwrap();
        assert_eq!(
            config.checks.entry_points,
            ["lib/promises.cf", "lib/update.cf"]
        );
        assert_eq!(config.agent.command[3], "{tree}/lib/promises.cf");
    }

    #[test]
    fn refuses_views_that_are_not_one_form_of_distinct_absolute_paths() {
        for (text, expected) in [
            ("", "neither view nor [views] is set"),
            (
                "view = \"/v\"\n[views]\na = \"/a\"\n",
                "both view and [views] are set",
            ),
            ("[views]\n", "[views] names no view"),
            (
                "[views]\nInputs = \"/a\"\n",
                "\"Inputs\" is not a view name",
            ),
            (
                "[views]\na = \"a\"\n",
                "views.a \"a\" must be an absolute path",
            ),
            (
                "[views]\na = \"/x\"\nb = \"/x/y\"\n",
                "a view may not be another or inside it",
            ),
            (
                "[views]\na = \"/x\"\nb = \"/x\"\n",
                "a view may not be another or inside it",
            ),
        ] {
            let error = Config::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let many: String = (0..=VIEWS_MAX)
            .map(|n| format!("v{n} = \"/v{n}\"\n"))
            .collect();
        let error = Config::parse(&format!("[views]\n{many}")).unwrap_err();
        assert!(error.contains("at most 16"), "{error}");
    }

    #[test]
    fn parts_map_archives_to_views_and_bad_ones_are_refused() {
        let views = "[views]\ninputs = \"/a/inputs\"\nncf = \"/a/ncf\"\n";
        let part = |file: &str, from: &str, to: &str| {
            format!("[[fetch.parts]]\nfile = \"{file}\"\nfrom = \"{from}\"\nto = \"{to}\"\n")
        };
        let text = format!(
            "{views}{}{}",
            part("rudder.tar.bz2", "policies_next", "inputs"),
            part("policies-library-linux.tar.bz2", "ncf", "ncf")
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(
            config.fetch.parts,
            [
                Part {
                    file: "rudder.tar.bz2".into(),
                    from: "policies_next".into(),
                    to: "inputs".into()
                },
                Part {
                    file: "policies-library-linux.tar.bz2".into(),
                    from: "ncf".into(),
                    to: "ncf".into()
                }
            ]
        );
        for (parts, expected) in [
            (
                part("a/b.tar", "", "inputs"),
                "fetch.parts: file \"a/b.tar\" must be the name of an archive in the drop directory",
            ),
            (
                part("polstore.manifest", "", "inputs"),
                "fetch.parts: file \"polstore.manifest\" must be the name of an archive in the drop directory",
            ),
            (
                part("a.tar", "../x", "inputs"),
                "fetch.parts: from \"../x\": '..' or '.' component",
            ),
            (
                part("a.tar", "", "lib"),
                "fetch.parts: to \"lib\" is not one of the views (inputs, ncf)",
            ),
            (
                part("a.tar", "", "inputs") + &part("b.tar", "", "inputs"),
                "fetch.parts: two parts go to \"inputs\"",
            ),
        ] {
            let error = Config::parse(&format!("{views}{parts}")).unwrap_err();
            assert_eq!(error, expected);
        }
        let (part, archive) = Part::parse_argument("inputs:policies_next:/x/a:b.tar").unwrap();
        assert_eq!(archive, PathBuf::from("/x/a:b.tar"));
        assert_eq!(
            (part.to.as_str(), part.from.as_str(), part.file.as_str()),
            ("inputs", "policies_next", "a:b.tar")
        );
        assert_eq!(
            Part::parse_argument("inputs=x.tar").unwrap_err(),
            "\"inputs=x.tar\" is not TO:FROM:ARCHIVE"
        );
    }

    #[test]
    fn refuses_typos_and_relative_paths() {
        let error = Config::parse("view = \"/v\"\n[agent]\nconfirn = true\n").unwrap_err();
        assert!(error.contains("unknown field `confirn`"), "{error}");
        let error = Config::parse("view = \"v\"\n").unwrap_err();
        assert!(error.contains("must be an absolute path"), "{error}");
        let error =
            Config::parse("view = \"/v\"\n[fetch]\ncommand = [\"/bin/true\"]\n").unwrap_err();
        assert!(
            error.contains("fetch.command is set but fetch.drop is not"),
            "{error}"
        );
        // A pull: its URL, node and CA file, and what it excludes.
        for (text, expected) in [
            (
                "[fetch]\nurl = \"ftp://hub/\"\n",
                "fetch.url \"ftp://hub/\" must start with http:// or https://",
            ),
            (
                "[fetch]\nurl = \"https://hub/\"\ndrop = \"/d\"\n",
                "fetch.url is set with fetch.command or fetch.drop",
            ),
            (
                "[fetch]\nurl = \"https://hub/\"\nnode = \"../x\"\n",
                "fetch.node: node name \"../x\" must be",
            ),
            (
                "[fetch]\nurl = \"https://hub/\"\nca_file = \"ca.pem\"\n",
                "fetch.ca_file \"ca.pem\" must be an absolute path",
            ),
            (
                "[trust]\nroot = \"/etc/root\"\nkeys = [\"/etc/k.pub\"]\n",
                "trust.root and trust.keys are both set",
            ),
            (
                "[trust]\nroot = \"root\"\n",
                "trust.root \"root\" must be an absolute path",
            ),
        ] {
            let error = Config::parse(&format!("view = \"/v\"\n{text}")).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let pull = Config::parse("view = \"/v\"\n[fetch]\nurl = \"https://hub/\"\n").unwrap();
        assert_eq!(pull.fetch.node_name(), DEFAULT_NODE);
        let error = Config::parse("view = \"/v\"\n[fetch]\ndrop = \"d\"\n").unwrap_err();
        assert!(
            error.contains("fetch.drop \"d\" must be an absolute path"),
            "{error}"
        );
        let error = Config::parse("view = \"/v\"\n[limits]\nfiles_max = 0\n").unwrap_err();
        assert!(
            error.contains("limits.files_max must be greater than 0"),
            "{error}"
        );
    }

    #[test]
    fn expands_placeholders() {
        let command = ["x", "{tree}/promises.cf", "{serial}-{generation}"].map(String::from);
        assert_eq!(
            expand_command(&command, Path::new("/s/g/3/tree"), 42, 3),
            ["x", "/s/g/3/tree/promises.cf", "42-3"]
        );
        // One pass: a value holding a placeholder's name is not expanded again, and an
        // unknown placeholder stays as it is.
        let command = ["{tree}/{entry}", "{other}{", "{{entry}}"].map(String::from);
        assert_eq!(
            expand(
                &command,
                &[("{tree}", "/t/{entry}"), ("{entry}", "update.cf")]
            ),
            ["/t/{entry}/update.cf", "{other}{", "{update.cf}"]
        );
    }

    #[test]
    fn cfengine_programs_may_be_named_bare_and_nothing_else() {
        let config = Config::parse("view = \"/v\"\n").unwrap();
        assert!(config.checks.per_entry_point());
        assert_eq!(config.checks.entry_points, ["promises.cf", "update.cf"]);
        assert_eq!(config.cfengine.bin_dirs, defaults::bin_dirs());
        for (text, expected) in [
            (
                "[agent]\ncommand = [\"cf-agnet\"]\n",
                "agent.command: the program \"cf-agnet\" must be an absolute path, or one of CFEngine's programs named bare",
            ),
            (
                "[checks]\ncf_promises = [\"bin/cf-promises\"]\n",
                "checks.cf_promises: the program \"bin/cf-promises\" must be an absolute path",
            ),
            (
                "[cfengine]\nbin_dirs = []\n",
                "checks.cf_promises: the program \"cf-promises\" is looked for in cfengine.bin_dirs, which is empty",
            ),
            (
                "[cfengine]\nbin_dirs = [\"usr/bin\"]\n",
                "cfengine.bin_dirs: \"usr/bin\" must be an absolute path",
            ),
            (
                "[agent]\ncommand = [\"/bin/cf-agent\", \"{entry}\"]\n",
                "agent.command: {entry} means something only in checks.cf_promises",
            ),
            (
                "[checks]\nentry_points = []\n",
                "checks.entry_points is empty, so checks.cf_promises (which names {entry}) would check nothing",
            ),
            (
                "[checks]\nentry_points = [\"../promises.cf\"]\n",
                "checks.entry_points: \"../promises.cf\": '..' or '.' component",
            ),
            (
                "[checks]\nentry_points = [\"promises.cf\", \"promises.cf\"]\n",
                "checks.entry_points: \"promises.cf\" is listed twice",
            ),
        ] {
            let error = Config::parse(&format!("view = \"/v\"\n{text}")).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
        // A command written before entry points runs once, and needs none.
        let old = Config::parse(
            "view = \"/v\"\n[checks]\nentry_points = []\ncf_promises = [\"/usr/bin/cf-promises\", \"-f\", \"{tree}/promises.cf\"]\n[cfengine]\nbin_dirs = []\n[agent]\ncommand = [\"/usr/bin/cf-agent\"]\n",
        )
        .unwrap();
        assert!(!old.checks.per_entry_point());
    }
}
