//! A local attacker, a careless admin and a failing disk (issue 9's classes): each test
//! does what one of them would and checks the refusal's message and exit code, and that
//! the active generation, the view and everything outside the store are unchanged.

mod util;

use std::fs;
use std::os::unix::fs::symlink;

use util::*;

fn candidate(node: &Node, serial: u64) -> std::path::PathBuf {
    node.signed_tree(
        &format!("gen{serial}"),
        &[("promises.cf", POLICY), ("lib/common.cf", "# next\n")],
        serial,
    )
}

/// `polstore manifest TREE --serial SERIAL [EXTRA...] --output TREE/polstore.manifest`.
fn write_manifest(node: &Node, tree: &std::path::Path, serial: &str, extra: &[&str]) -> Out {
    let output = tree.join("polstore.manifest");
    let mut args = vec!["manifest", s(tree), "--serial", serial];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--output", s(&output)]);
    node.run(&args)
}

/// Runs `polstore ARGS` under `timeout 60`: a regression that makes polstore wait must
/// not hang the suite. Returns the exit code and standard error.
fn run_bounded_in_time(node: &Node, args: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new("timeout")
        .arg("60")
        .arg(POLSTORE)
        .args(args)
        .env("POLSTORE_STORE", &node.store)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- configuration

#[test]
fn a_configuration_that_leaves_sections_and_keys_out_takes_their_defaults() {
    let node = Node::unsigned();
    // Only what has no default: the view. No [fetch], [checks], [agent], [limits],
    // [verify] or [trust] section at all.
    fs::write(
        node.config_path(),
        format!(
            "view = {}\n[trust]\nrequire_signature = false\n[checks]\ncf_promises = []\n[agent]\ncommand = []\n",
            toml_string(s(&node.view))
        ),
    )
    .unwrap();
    let tree = node.tree("minimal", &[("promises.cf", POLICY)]);
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(1));
    node.run(&["status"]).success();
    node.run(&["verify"]).success();
    fs::write(
        node.config_path(),
        format!("view = {}\n", toml_string(s(&node.view))),
    )
    .unwrap();
    node.run(&["status"]).success();
}

#[test]
fn a_relative_path_in_the_configuration_stops_every_command() {
    let node = Node::with_generation();
    for (section, key, value, named) in [
        ("checks", "dir", "\"checks.d\"", "checks.dir"),
        (
            "checks",
            "cf_promises",
            "[\"bin/cf-promises\", \"-c\", \"-f\", \"{tree}/{entry}\"]",
            "checks.cf_promises",
        ),
        // A typo in a CFEngine program named bare.
        ("agent", "command", "[\"cf-agnet\"]", "agent.command"),
        ("cfengine", "bin_dirs", "[\"usr/bin\"]", "cfengine.bin_dirs"),
    ] {
        let config = fs::read_to_string(node.config_path()).unwrap();
        node.set_config(section, key, value);
        let tree = candidate(&node, 2);
        let out = assert_refused(&node, &["ingest", s(&tree)], 1, named);
        assert!(
            out.stderr.contains("must be an absolute path"),
            "{}",
            out.stderr
        );
        assert_refused(&node, &["status"], 1, named);
        fs::write(node.config_path(), config).unwrap();
        fs::remove_dir_all(&tree).unwrap();
    }
}

#[test]
fn a_cfengine_program_others_could_change_is_refused_not_run() {
    let node = Node::with_generation();
    let bin = node.root.join("bin");
    fs::create_dir(&bin).unwrap();
    set_mode(&bin, 0o755);
    let ran = node.root.join("planted-cf-promises-ran");
    let program = bin.join("cf-promises");
    fs::write(&program, format!("#!/bin/sh\ntouch {}\nexit 0\n", s(&ran))).unwrap();
    set_mode(&program, 0o755);
    node.set_config(
        "cfengine",
        "bin_dirs",
        &format!("[{}, \"/usr/bin\"]", toml_string(s(&bin))),
    );
    let tree = candidate(&node, 2);
    // Anyone could put a cf-promises there, which root would run.
    set_mode(&bin, 0o777);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "the parse check cannot run: {}: {} must belong to root and be writable by no one else (owner {}, mode 0777); refusing to run it; generation 1 stays active",
            program.display(),
            bin.display(),
            std::os::unix::fs::MetadataExt::uid(&fs::metadata(&bin).unwrap())
        ),
    );
    set_mode(&bin, 0o755);
    // Or change the program itself: it is refused, not passed over for /usr/bin's.
    set_mode(&program, 0o775);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "{}: {} must belong to root and be writable by no one else",
            program.display(),
            program.display()
        ),
    );
    // A symbolic link is followed to what runs, which is checked the same way.
    let elsewhere = node.root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    set_mode(&elsewhere, 0o777);
    fs::rename(&program, elsewhere.join("cf-promises")).unwrap();
    set_mode(&elsewhere.join("cf-promises"), 0o755);
    symlink(elsewhere.join("cf-promises"), &program).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "{}: {} must belong to root and be writable by no one else",
            program.display(),
            elsewhere.display()
        ),
    );
    assert!(!ran.exists(), "a refused cf-promises ran");
    // Put right, the same candidate goes through, checked by it.
    set_mode(&elsewhere, 0o755);
    node.ingest(&tree).success();
    assert!(ran.exists());
    assert_eq!(node.active_generation(), Some(2));
}

#[test]
fn a_checks_directory_named_but_missing_refuses_every_ingest() {
    let node = Node::with_generation();
    let missing = node.root.join("no-such-checks.d");
    node.set_config("checks", "dir", &toml_string(s(&missing)));
    let tree = candidate(&node, 2);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "user checks: the checks directory {} named in the configuration does not exist; generation 1 stays active",
            missing.display()
        ),
    );
}

// ---------------------------------------------------------------- who could have written it

#[test]
fn a_checks_directory_or_check_others_can_write_is_refused_not_run() {
    let node = Node::with_generation();
    let ran = node.root.join("check-ran");
    node.add_check("10-record", &format!("touch {}\nexit 0", s(&ran)));
    let check = node.checks.join("10-record");
    let tree = candidate(&node, 2);
    // World-writable directory: anyone could put a check there, which root would run.
    set_mode(&node.checks, 0o777);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "must belong to root and be writable by no one else (owner",
    );
    set_mode(&node.checks, 0o755);
    // A group-writable check.
    set_mode(&check, 0o775);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "user checks: {} must belong to root and be writable by no one else",
            check.display()
        ),
    );
    set_mode(&check, 0o755);
    // A symbolic link where a check is: not followed.
    let elsewhere = node.root.join("elsewhere-check");
    fs::write(&elsewhere, "#!/bin/sh\nexit 0\n").unwrap();
    set_mode(&elsewhere, 0o755);
    symlink(&elsewhere, node.checks.join("20-link")).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "20-link is not a regular file; a check must be one",
    );
    fs::remove_file(node.checks.join("20-link")).unwrap();
    // The checks directory itself a symbolic link: not followed.
    let real = node.root.join("real-checks.d");
    fs::rename(&node.checks, &real).unwrap();
    symlink(&real, &node.checks).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "is not a directory (a symbolic link is not followed)",
    );
    fs::remove_file(&node.checks).unwrap();
    fs::rename(&real, &node.checks).unwrap();
    assert!(!ran.exists(), "a refused check ran");
    // Put right, the same candidate goes through and the check runs.
    node.ingest(&tree).success();
    assert!(ran.exists());
    assert_eq!(node.active_generation(), Some(2));
}

// ---------------------------------------------------------------- inputs that real trees hold

#[test]
fn a_signed_serial_above_2_63_is_refused_and_blocks_nothing() {
    let node = Node::with_generation();
    // The server side refuses to make one...
    let tree = node.tree("huge", &[("promises.cf", POLICY)]);
    let out = write_manifest(&node, &tree, "18446744073709551615", &[]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("serial 18446744073709551615 is above 9223372036854775807"),
        "{}",
        out.stderr
    );
    // ...and a node refuses one made by hand and signed with the trusted key.
    let tree = node.signed_tree("top", &[("promises.cf", POLICY)], 5);
    let manifest = tree.join("polstore.manifest");
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replace("serial 5\n", "serial 18446744073709551615\n");
    fs::write(&manifest, text).unwrap();
    node.sign(&manifest);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        3,
        "rejected by the integrity check: polstore.manifest: manifest line 2: serial: 18446744073709551615 is above 9223372036854775807",
    );
    // The floor did not move: the next ordinary serial is accepted.
    node.ingest(&candidate(&node, 2)).success();
    assert_eq!(node.active_generation(), Some(2));
}

// ---------------------------------------------------------------- modes whatever the umask

/// Runs polstore under umask 000, as a careless admin's shell would.
fn run_under_umask_000(node: &Node, args: &[&str]) -> Out {
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(POLSTORE)
        .args(args)
        .env("POLSTORE_STORE", &node.store);
    let output = command.output().unwrap();
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn under_umask_000_the_store_is_writable_by_no_one_else_and_its_content_readable_by_no_one_else() {
    let node = Node::new();
    run_under_umask_000(&node, &["init", "--view", s(&node.view)]).success();
    node.configure_for_tests();
    let tree = node.tree("first", &[("promises.cf", POLICY), ("lib/a.cf", "# a\n")]);
    run_under_umask_000(&node, &["ingest", s(&tree)]).success();
    for (path, mode) in [
        (node.store.clone(), 0o755),
        (node.store.join("staging"), 0o700),
        (node.store.join("generations"), 0o700),
        (node.store.join("polstore.redb"), 0o600),
        (node.store.join("lock"), 0o600),
        (node.store.join("polstore.toml"), 0o644),
        (node.store.join("format"), 0o644),
        (node.generation_dir(1), 0o755),
        (node.generation_tree(1), 0o755),
        (node.generation_tree(1).join("lib"), 0o755),
    ] {
        assert_eq!(mode_of(&path), mode, "{}", path.display());
    }
    run_under_umask_000(&node, &["verify"]).success();
}

#[test]
fn another_user_cannot_read_the_database() {
    if !running_as_root() {
        eprintln!("skipped: needs root to run a command as the user nobody");
        return;
    }
    let node = Node::with_generation();
    let output = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "cat"])
        .arg(node.store.join("polstore.redb"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
        "{output:?}"
    );
}

#[test]
fn a_database_left_readable_by_a_store_made_before_is_made_private_by_the_next_writer() {
    let node = Node::with_generation();
    let database = node.store.join("polstore.redb");
    set_mode(&database, 0o644);
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr.contains("readable by root only (it was 0644)"),
        "{}",
        out.stderr
    );
    assert_eq!(mode_of(&database), 0o600);
}

// ---------------------------------------------------------------- things that are not what they seem

#[test]
fn a_symlink_planted_at_staging_is_never_followed_and_verify_repair_moves_it_aside() {
    let node = Node::with_generation();
    // What the symlink points at: someone else's files, which must survive.
    let victim = node.root.join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("precious"), "keep me\n").unwrap();
    let staging = node.store.join("staging");
    fs::remove_dir(&staging).unwrap();
    symlink(&victim, &staging).unwrap();
    let tree = candidate(&node, 2);
    for args in [&["ingest", s(&tree)][..], &["gc"], &["rollback"]] {
        let out = node.run(args);
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains(&format!(
                "store is not safe to use: {} is a symbolic link, not what polstore made there",
                staging.display()
            )),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1);
    }
    // Readers read; verify reports it and touches nothing through it.
    node.run(&["status"]).success();
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout
            .contains("is a symbolic link, not what polstore made there")
    );
    assert_eq!(
        fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me\n"
    );
    assert_eq!(node.active_generation(), Some(1));
    let out = node.run(&["verify", "--repair"]).success();
    assert!(
        out.stdout.contains("moved the symbolic link found at"),
        "{}",
        out.stdout
    );
    assert!(fs::symlink_metadata(&staging).unwrap().is_dir());
    assert_eq!(mode_of(&staging), 0o700);
    assert_eq!(
        fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me\n"
    );
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(2));
}

#[test]
fn an_unknown_directory_in_generations_is_reported_and_moved_aside_never_deleted() {
    let node = Node::with_generation();
    let planted = node.store.join("generations").join("7");
    fs::create_dir(&planted).unwrap();
    fs::write(planted.join("notes"), "someone's\n").unwrap();
    let stranger = node.store.join("generations").join("notes-dir");
    fs::create_dir(&stranger).unwrap();
    // A writer leaves both and says so.
    let out = node.run(&["gc"]).success();
    assert!(
        out.stderr
            .contains("is not a generation polstore knows; left alone"),
        "{}",
        out.stderr
    );
    assert!(planted.join("notes").exists() && stranger.exists());
    // verify names them; --repair moves them into untrusted/.
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4);
    assert!(out.stdout.contains("not a generation the database knows"));
    let out = node.run(&["verify", "--repair"]).success();
    assert!(
        out.stdout.contains("not a generation polstore knows, to"),
        "{}",
        out.stdout
    );
    assert!(!planted.exists() && !stranger.exists());
    let untrusted: Vec<String> = fs::read_dir(node.store.join("untrusted"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(untrusted.len(), 2, "{untrusted:?}");
    assert!(untrusted.iter().any(|name| {
        fs::read_to_string(node.store.join("untrusted").join(name).join("notes"))
            .is_ok_and(|text| text == "someone's\n")
    }));
    node.run(&["verify"]).success();
}

// ---------------------------------------------------------------- memory before trust

/// Writes a `.tar.gz` or `.tar.bz2` (by `path`'s name) whose first entry is an extension
/// header of type `kind` (`L`: GNU long name, `x`: PAX) claiming `size` bytes, all present
/// (zeros compress to almost nothing), followed by an ordinary file. The bzip2 archive is
/// a stream for the header, one stream of a mebibyte of zeros repeated (`size` must be a
/// whole number of mebibytes), and a stream for the rest: what a bzip2 decoder reads as
/// one.
fn archive_with_huge_extension_header(path: &std::path::Path, kind: char, size: u64) {
    let script = r#"
import bz2, gzip, sys, tarfile
path, kind, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
header = tarfile.TarInfo("././@LongLink")
header.type = kind.encode()
header.size = size
chunk = b"\0" * (1 << 20)

class Streams:
    """Each write a bzip2 stream of its own; a mebibyte of zeros is compressed once."""
    def __init__(self, path):
        self.file = open(path, "wb")
        self.zeros = bz2.compress(chunk)
    def write(self, data):
        self.file.write(self.zeros if data is chunk else bz2.compress(data))
    def __enter__(self):
        return self
    def __exit__(self, *_):
        self.file.close()

opened = Streams(path) if path.endswith(".bz2") else gzip.open(path, "wb", compresslevel=1)
with opened as out:
    out.write(header.tobuf(format=tarfile.GNU_FORMAT))
    left = size
    while left > 0:
        out.write(chunk if left >= len(chunk) else chunk[:left])
        left -= min(left, len(chunk))
    out.write(b"\0" * ((512 - size % 512) % 512))
    info = tarfile.TarInfo("promises.cf")
    body = b"bundle agent main {}\n"
    info.size = len(body)
    out.write(info.tobuf(format=tarfile.GNU_FORMAT))
    out.write(body + b"\0" * ((512 - len(body) % 512) % 512))
    out.write(b"\0" * 1024)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .arg(kind.to_string())
        .arg(size.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_gigabyte_extension_header_is_refused_within_a_small_memory_bound() {
    let node = Node::with_generation();
    for (kind, fragment, suffix) in [
        ('L', "a GNU long name: is larger than 1025 bytes", "gz"),
        ('x', "a PAX header: is larger than 65536 bytes", "gz"),
        ('L', "a GNU long name: is larger than 1025 bytes", "bz2"),
        ('x', "a PAX header: is larger than 65536 bytes", "bz2"),
    ] {
        let archive = node.root.join(format!("huge-{kind}.tar.{suffix}"));
        archive_with_huge_extension_header(&archive, kind, 1 << 30);
        assert!(fs::metadata(&archive).unwrap().len() < 8 << 20);
        // With 256 MiB of address space, reading the header whole (as the tar reader
        // would) fails; reading it with a bound refuses it in one line.
        let before = node.snapshot();
        let output = std::process::Command::new("prlimit")
            .arg(format!("--as={}", 256u64 << 20))
            .arg(POLSTORE)
            .args(["ingest", s(&archive)])
            .env("POLSTORE_STORE", &node.store)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{kind}, {suffix}: {stderr}");
        assert_eq!(
            stderr,
            format!(
                "polstore: rejected by the source check: {fragment}; generation 1 stays active\n"
            )
        );
        assert_eq!(node.snapshot(), before);
    }
}

#[test]
fn sparse_entries_and_pax_sizes_are_refused_not_turned_into_other_paths() {
    let node = Node::unsigned();
    let script = r#"
import io, sys, tarfile
path, case = sys.argv[1], sys.argv[2]
with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
    body = b"bundle agent main {}\n"
    info = tarfile.TarInfo("promises.cf")
    info.size = len(body)
    if case == "pax-sparse":
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                            "GNU.sparse.name": "promises.cf", "GNU.sparse.realsize": "21"}
    elif case == "pax-size":
        info.pax_headers = {"size": str(len(body))}
    elif case == "gnu-sparse":
        info.type = tarfile.GNUTYPE_SPARSE
    archive.addfile(info, io.BytesIO(body))
"#;
    for (case, fragment) in [
        (
            "pax-sparse",
            "sparse files are not accepted (a PAX GNU.sparse record)",
        ),
        ("pax-size", "a PAX size record is not accepted"),
        ("gnu-sparse", "sparse files are not accepted"),
    ] {
        let archive = node.root.join(format!("{case}.tar"));
        let status = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&archive)
            .arg(case)
            .status()
            .unwrap();
        assert!(status.success());
        assert_refused(
            &node,
            &["ingest", s(&archive)],
            3,
            &format!("rejected by the source check: {fragment}"),
        );
    }
    assert_eq!(node.active_generation(), None);
    // A long path in a PAX header is read as the path it names.
    let long = format!("lib/{}/x.cf", "d".repeat(200));
    let archive = node.root.join("pax-path.tar");
    let script = r##"
import io, sys, tarfile
path, name = sys.argv[1], sys.argv[2]
with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
    for member, body in (("promises.cf", b"bundle agent main {}\n"), (name, b"# deep\n")):
        info = tarfile.TarInfo(member)
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
"##;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&archive)
        .arg(&long)
        .status()
        .unwrap();
    assert!(status.success());
    node.ingest(&archive).success();
    assert_eq!(
        fs::read_to_string(node.generation_tree(1).join(&long)).unwrap(),
        "# deep\n"
    );
}

#[test]
fn a_fifo_planted_at_the_drop_or_its_manifest_is_refused_at_once() {
    let node = Node::with_generation();
    let drop = node.root.join("drop.tar.gz");
    node.set_config("fetch", "drop", &toml_string(s(&drop)));
    let make_fifo = |path: &std::path::Path| {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    };
    make_fifo(&drop);
    // `timeout` only keeps a regression from hanging the suite: polstore must answer at
    // once, without anyone writing to the FIFO.
    let before = node.snapshot();
    let (code, stderr) = run_bounded_in_time(&node, &["update"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "polstore: rejected by the source check: {}: is a fifo, not a regular file; generation 1 stays active\n",
            drop.display()
        )
    );
    assert_eq!(node.snapshot(), before);
    // A drop directory whose manifest is a FIFO.
    fs::remove_file(&drop).unwrap();
    let directory = node.root.join("drop-dir");
    fs::create_dir(&directory).unwrap();
    fs::write(directory.join("promises.cf"), POLICY).unwrap();
    make_fifo(&directory.join("polstore.manifest"));
    node.set_config("fetch", "drop", &toml_string(s(&directory)));
    let (code, stderr) = run_bounded_in_time(&node, &["update"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.starts_with("polstore: rejected by the source check: polstore.manifest: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
    assert_eq!(node.snapshot(), before);
}

// ---------------------------------------------------------------- damage that is not damage

#[test]
fn a_database_held_by_another_process_is_not_damage_and_nothing_is_rebuilt() {
    let node = Node::with_generation();
    let database = node.store.join("polstore.redb");
    let history_before = node.log().len();
    // Another process holds redb's lock on the file, as a stuck polstore or a backup
    // tool might: `flock` keeps it until the gate lets go.
    let gate = Gate::new(&node.root, "holder");
    let mut holder = std::process::Command::new("flock")
        .arg("--exclusive")
        .arg(&database)
        .args(["/bin/sh", "-c", &gate.script()])
        .spawn()
        .unwrap();
    gate.wait_started(PATIENCE);
    for args in [&["verify"][..], &["verify", "--repair"], &["gc"]] {
        let out = node.run(args);
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert_eq!(
            out.stderr, "polstore: database: in use by another process, which holds its lock\n",
            "{args:?}"
        );
    }
    gate.release();
    assert!(holder.wait().unwrap().success());
    assert!(!node.store.join("polstore.redb.damaged").exists());
    // Nothing was rebuilt: the history is all there.
    assert_eq!(node.log().len(), history_before);
    node.run(&["verify"]).success();
}

#[test]
fn a_lost_database_is_rebuilt_without_claiming_a_copy_was_kept() {
    let node = Node::with_generation();
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]).success();
    assert!(
        out.stdout.contains("(there was no database file to keep)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("was kept as"), "{}", out.stdout);
    assert!(!node.store.join("polstore.redb.damaged").exists());
    assert_eq!(node.active_generation(), Some(1));
}

#[test]
fn an_immutable_database_is_not_damage_and_nothing_is_rebuilt() {
    if !running_as_root() {
        eprintln!("skipped: chattr +i needs root");
        return;
    }
    let node = Node::with_generation();
    let database = node.store.join("polstore.redb");
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&database)
            .status()
            .is_ok_and(|status| status.success())
    };
    if !chattr("+i") {
        eprintln!("skipped: the file system of the test directory does not support chattr +i");
        return;
    }
    let history_before = node.log().len();
    for args in [&["verify", "--repair"][..], &["gc"]] {
        let out = node.run(args);
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert!(
            out.stderr.starts_with("polstore: database: ")
                && out.stderr.contains("Operation not permitted")
                && !out.stderr.contains("verify"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(chattr("-i"));
    assert!(!node.store.join("polstore.redb.damaged").exists());
    assert_eq!(node.log().len(), history_before);
    node.run(&["verify"]).success();
}

// ---------------------------------------------------------------- trust that a rebuild gives away

#[test]
fn a_rebuild_does_not_take_back_a_planted_generation_that_calls_itself_adopted() {
    let node = Node::with_generation();
    // Planted: an unsigned generation whose manifest says it was adopted, serial 0.
    let planted = node.store.join("generations").join("9");
    let tree = planted.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("promises.cf"), POLICY).unwrap();
    let out = node.run(&[
        "manifest",
        s(&tree),
        "--serial",
        "0",
        "--source",
        "adopted",
        "--output",
        s(&planted.join("polstore.manifest")),
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    // Point the view at it, as an attacker would, and lose the database.
    fs::remove_file(&node.view).unwrap();
    symlink(&tree, &node.view).unwrap();
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert!(
        out.stdout.contains("generation 9") && out.stdout.contains("moved its directory to"),
        "{out:#?}"
    );
    assert_eq!(node.active_generation(), Some(1));
    assert_eq!(node.viewed_generation(), Some(1));
    let generations: Vec<u64> = node
        .list()
        .iter()
        .map(|g| g["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(generations, [1]);
}

#[test]
fn a_store_that_adopted_keeps_its_adopted_generation_through_a_rebuild() {
    let node = Node::new();
    write_tree(&node.view, &[("promises.cf", POLICY)]);
    node.run(&["init", "--view", s(&node.view), "--adopt"])
        .success();
    node.configure_for_tests();
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    node.run(&["verify", "--repair"]).success();
    let list = node.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["origin"], "adopted");
    assert_eq!(node.active_generation(), Some(1));
}

#[test]
fn the_replay_floor_survives_a_rebuild_after_gc_removed_the_generation_that_held_it() {
    let node = Node::with_generation();
    let high = node.serial_tree("high", 9);
    node.ingest(&high).success();
    node.run(&["rollback", "1"]).success();
    node.run(&["gc", "--keep", "0"]).success();
    let serials: Vec<u64> = node
        .list()
        .iter()
        .map(|g| g["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials, [1], "the generation of serial 9 is gone");
    // The database is lost; no directory holds serial 9 any more.
    fs::remove_file(node.store.join("polstore.redb")).unwrap();
    node.run(&["verify", "--repair"]).success();
    assert_eq!(node.status()["serial_max"], 9);
    // An old signed serial below the floor is a replay.
    let old = node.serial_tree("old", 5);
    assert_refused(
        &node,
        &["ingest", s(&old)],
        3,
        "rejected by the freshness check: serial 5",
    );
}

// ---------------------------------------------------------------- messages

#[test]
fn a_check_s_hostile_output_becomes_one_bounded_line_with_control_characters_escaped() {
    let node = Node::with_generation();
    // A last line of 8 KB with an escape sequence and a carriage return in it.
    node.add_check(
        "10-noisy",
        "printf 'first\\n'; printf '\\033[31mred\\rover'; head -c 8192 /dev/zero | tr '\\0' A; printf '\\n'; exit 1",
    );
    let tree = candidate(&node, 2);
    let out = assert_refused(
        &node,
        &["ingest", s(&tree)],
        3,
        "rejected by the user check 10-noisy: exited with status 1: \\e[31mred\\rover",
    );
    let line = out.stderr.trim_end_matches('\n');
    assert!(!line.contains('\x1b') && !line.contains('\r'), "{line:?}");
    assert!(
        line.chars().count() < 1000,
        "{} characters",
        line.chars().count()
    );
    assert!(line.contains("AAA…"), "{line}");
    // The history keeps the same bounded line.
    let log = node.log();
    let message = log.last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(!message.contains('\x1b') && message.chars().count() < 1000);
}

#[test]
fn a_directory_at_the_view_s_temporary_name_wedges_nothing_and_is_left_alone() {
    let node = Node::with_generation();
    let temporary = node.view.with_file_name(".inputs.polstore-new");
    fs::create_dir(&temporary).unwrap();
    fs::write(temporary.join("someone's"), "keep\n").unwrap();
    node.ingest(&candidate(&node, 2)).success();
    assert_eq!(node.viewed_generation(), Some(2));
    node.run(&["rollback"]).success();
    assert_eq!(node.viewed_generation(), Some(1));
    assert_eq!(
        fs::read_to_string(temporary.join("someone's")).unwrap(),
        "keep\n"
    );
    // Nothing else was left beside the view.
    let mut siblings: Vec<String> = fs::read_dir(node.view.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("polstore"))
        .collect();
    siblings.sort();
    assert_eq!(siblings, [".inputs.polstore-new"]);
}

#[test]
fn a_rebuild_keeps_the_history_it_can_still_read() {
    let node = Node::with_generation();
    node.ingest(&candidate(&node, 2)).success();
    // An object's bytes overwritten inside the database file: its checksums fail, but the
    // attempts can still be read.
    let database = node.store.join("polstore.redb");
    let mut bytes = fs::read(&database).unwrap();
    let marker = b"# next\n";
    let mut overwritten = 0;
    for start in 0..bytes.len() - marker.len() {
        if &bytes[start..start + marker.len()] == marker {
            bytes[start..start + marker.len()].fill(0xa5);
            overwritten += 1;
        }
    }
    assert!(overwritten > 0);
    fs::write(&database, bytes).unwrap();
    let out = node.run(&["verify", "--repair"]);
    assert!(out.stdout.contains("rebuilt the database"), "{out:#?}");
    let messages: Vec<String> = node
        .log()
        .iter()
        .map(|attempt| attempt["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        messages
            .iter()
            .any(|message| message == "generation 1 (serial 1) activated"),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|message| message == "generation 2 (serial 2) activated"),
        "{messages:#?}"
    );
}

// ---------------------------------------------------------------- inputs that real trees hold

#[test]
fn empty_directories_are_part_of_the_tree_signed_materialized_verified_and_repaired() {
    let node = Node::with_generation();
    let tree = node.tree(
        "with-empty",
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
    );
    fs::create_dir_all(tree.join("modules/empty")).unwrap();
    fs::create_dir_all(tree.join("data")).unwrap();
    node.sign_tree(&tree, 2);
    let manifest = fs::read_to_string(tree.join("polstore.manifest")).unwrap();
    assert!(manifest.starts_with("polstore-manifest 2\n"), "{manifest}");
    assert!(manifest.contains("\ndirectory data\n"), "{manifest}");
    assert!(
        manifest.contains("\ndirectory modules/empty\n"),
        "{manifest}"
    );
    node.ingest(&tree).success();
    let generation = node.generation_tree(2);
    assert!(generation.join("modules/empty").is_dir());
    assert!(generation.join("data").is_dir());
    assert_eq!(mode_of(&generation.join("modules/empty")), 0o755);
    node.run(&["verify"]).success();
    // Gone: verify says so, and repair puts it back.
    fs::remove_dir(generation.join("modules/empty")).unwrap();
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4);
    assert!(
        out.stdout
            .contains("generation 2: modules/empty: empty directory is missing"),
        "{}",
        out.stdout
    );
    node.run(&["verify", "--repair"]).success();
    assert!(generation.join("modules/empty").is_dir());
    node.run(&["verify"]).success();
}

#[test]
fn a_source_whose_empty_directories_differ_from_its_signed_manifest_is_refused() {
    let node = Node::with_generation();
    let tree = node.tree("listed", &[("promises.cf", POLICY)]);
    fs::create_dir(tree.join("spool")).unwrap();
    node.sign_tree(&tree, 2);
    // Removed after signing: the manifest lists it, the source lacks it.
    fs::remove_dir(tree.join("spool")).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        3,
        "rejected by the integrity check: spool: the manifest lists this empty directory, the source does not have it",
    );
    // Added after signing a version 2 manifest: not covered by the signature.
    fs::create_dir(tree.join("spool")).unwrap();
    fs::create_dir(tree.join("extra")).unwrap();
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        3,
        "rejected by the integrity check: extra: an empty directory the manifest does not list",
    );
}

#[test]
fn empty_directories_of_a_tar_source_and_of_an_adopted_directory_are_kept() {
    let node = Node::unsigned();
    let archive = node.root.join("with-empty.tar");
    let source = node.root.join("tar-source");
    fs::create_dir_all(source.join("inputs/empty")).unwrap();
    fs::write(source.join("promises.cf"), POLICY).unwrap();
    let status = std::process::Command::new("tar")
        .args(["-cf", s(&archive), "-C", s(&source), "."])
        .status()
        .unwrap();
    assert!(status.success());
    node.ingest(&archive).success();
    assert!(node.generation_tree(1).join("inputs/empty").is_dir());
    node.run(&["verify"]).success();

    let adopter = Node::new();
    write_tree(&adopter.view, &[("promises.cf", POLICY)]);
    fs::create_dir(adopter.view.join("state")).unwrap();
    adopter
        .run(&["init", "--view", s(&adopter.view), "--adopt"])
        .success();
    adopter.configure_for_tests();
    assert!(adopter.generation_tree(1).join("state").is_dir());
    assert!(adopter.view.join("state").is_dir());
    adopter.run(&["verify"]).success();
}

#[test]
fn something_planted_in_the_store_directory_is_reported_and_moved_aside_never_deleted() {
    let node = Node::with_generation();
    let planted = node.store.join("notes.txt");
    fs::write(&planted, "someone's\n").unwrap();
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "{}: not something polstore keeps in a store",
            planted.display()
        )),
        "{}",
        out.stdout
    );
    assert!(planted.exists());
    let out = node.run(&["verify", "--repair"]).success();
    assert!(
        out.stdout
            .contains("not something polstore keeps in a store, to"),
        "{}",
        out.stdout
    );
    assert!(!planted.exists());
    let aside: Vec<_> = fs::read_dir(node.store.join("untrusted"))
        .unwrap()
        .collect();
    assert_eq!(aside.len(), 1);
    let moved = aside.into_iter().next().unwrap().unwrap().path();
    assert_eq!(fs::read_to_string(moved).unwrap(), "someone's\n");
    node.run(&["verify"]).success();
}

// ---------------------------------------------------------------- recovery gaps

#[test]
fn the_automatic_rollback_never_activates_a_tampered_generation() {
    let node = Node::with_generation();
    // Generation 1's tree is changed behind polstore's back.
    let tampered = node.generation_tree(1).join("lib/common.cf");
    set_mode(&tampered, 0o644);
    fs::write(&tampered, "# tampered\n").unwrap();
    set_mode(&tampered, 0o644);
    // Generation 2's agent run fails: the rollback must not land on generation 1.
    node.set_config("agent", "command", r#"["/bin/false"]"#);
    let out = node.ingest(&candidate(&node, 2));
    assert_eq!(out.code, 3, "{out:#?}");
    assert!(
        out.stderr.contains(
            "generation 2 failed: /bin/false exited with status 1; no earlier good generation to roll back to, it stays active; generation 1 was passed over: generation 1: lib/common.cf: has 11 bytes, the manifest says 9"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(node.active_generation(), Some(2));
    assert_eq!(node.viewed_generation(), Some(2));
    assert!(
        node.status()["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|warning| warning
                .as_str()
                .unwrap()
                .contains("the active generation is failed"))
    );
}

// ---------------------------------------------------------------- found by an adversarial review

#[test]
fn a_configuration_others_could_change_is_never_read_and_never_laundered() {
    let node = Node::with_generation();
    let config = node.config_path();
    set_mode(&config, 0o666);
    for args in [&["verify"][..], &["verify", "--repair"], &["gc"]] {
        let out = node.run(args);
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert_eq!(
            out.stderr,
            format!(
                "polstore: store is not safe to use: {} has mode 0666: others than polstore's user could change it; check what it holds, then give it back to root and take the others' write rights away\n",
                config.display()
            ),
            "{args:?}"
        );
    }
    // verify --repair did not make it look sound: the mode is still what it was.
    assert_eq!(mode_of(&config), 0o666);
    set_mode(&config, 0o644);
    node.run(&["verify"]).success();
}

#[test]
fn a_trusted_key_others_could_change_is_refused() {
    let node = Node::with_generation();
    set_mode(&node.public_key, 0o666);
    let tree = candidate(&node, 2);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        "must belong to root and be writable by no one else (owner",
    );
    set_mode(&node.public_key, 0o644);
    // Its directory too.
    let directory = node.public_key.parent().unwrap().to_path_buf();
    let mode = mode_of(&directory);
    set_mode(&directory, 0o777);
    assert_refused(
        &node,
        &["ingest", s(&tree)],
        1,
        &format!(
            "{}: {} must belong to root",
            node.public_key.display(),
            directory.display()
        ),
    );
    set_mode(&directory, mode);
    node.ingest(&tree).success();
}

#[test]
fn another_user_cannot_read_a_policy_file_or_a_manifest_through_the_store() {
    if !running_as_root() {
        eprintln!("skipped: needs root to run a command as the user nobody");
        return;
    }
    let node = Node::with_generation();
    for path in [
        node.generation_dir(1).join("polstore.manifest"),
        node.generation_tree(1).join("promises.cf"),
    ] {
        let output = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "cat"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{}: {output:?}", path.display());
    }
    assert_eq!(mode_of(&node.store.join("generations")), 0o700);
}

#[test]
fn a_fifo_at_the_format_or_configuration_file_is_refused_at_once() {
    for name in ["format", "polstore.toml"] {
        let node = Node::with_generation();
        let path = node.store.join(name);
        fs::remove_file(&path).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        for args in [&["status"][..], &["verify"], &["gc"]] {
            let (code, stderr) = run_bounded_in_time(&node, args);
            assert_eq!(code, Some(1), "{name} {args:?}: {stderr}");
            assert!(stderr.contains("is a fifo"), "{name} {args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1);
        }
    }
}

#[test]
fn a_source_of_nothing_but_directories_is_bounded_by_files_max() {
    let node = Node::unsigned();
    node.set_config("limits", "files_max", "50");
    let source = node.root.join("many-directories");
    fs::create_dir(&source).unwrap();
    fs::write(source.join("promises.cf"), POLICY).unwrap();
    for index in 0..60 {
        fs::create_dir(source.join(format!("d{index:03}"))).unwrap();
    }
    let archive = node.root.join("many-directories.tar");
    let status = std::process::Command::new("tar")
        .args(["-cf", s(&archive), "-C", s(&source), "."])
        .status()
        .unwrap();
    assert!(status.success());
    for candidate in [&archive, &source] {
        assert_refused(
            &node,
            &["ingest", s(candidate)],
            3,
            "more than 50 directories",
        );
    }
}

#[test]
fn an_unsigned_store_never_computes_a_serial_past_the_highest() {
    let node = Node::unsigned();
    let top = node.tree("top", &[("promises.cf", POLICY)]);
    let out = write_manifest(&node, &top, "9223372036854775807", &[]);
    assert_eq!(out.code, 0, "{out:#?}");
    node.ingest(&top).success();
    let next = node.tree("next", &[("promises.cf", POLICY), ("lib/x.cf", "# x\n")]);
    assert_refused(
        &node,
        &["ingest", s(&next)],
        1,
        "no serial is left above the highest accepted serial 9223372036854775807",
    );
    node.run(&["verify"]).success();
}

#[test]
fn generation_names_polstore_would_not_write_are_not_taken_for_generations() {
    let node = Node::with_generation();
    let copy = node.store.join("generations").join("01");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(node.generation_dir(1))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let out = node.run(&["verify"]);
    assert_eq!(out.code, 4, "{out:#?}");
    assert!(
        out.stdout
            .contains("01: not a generation the database knows"),
        "{}",
        out.stdout
    );
    node.run(&["verify", "--repair"]).success();
    assert!(!copy.exists());
    assert_eq!(node.generations(), [1]);
}

#[test]
fn init_refuses_a_directory_others_can_write_before_writing_into_it() {
    let node = Node::new();
    fs::create_dir_all(&node.store).unwrap();
    set_mode(&node.store, 0o777);
    let out = node.run(&["init", "--view", s(&node.view)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("a store must be polstore's user's and writable by no one else; refusing to initialize it"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_dir(&node.store).unwrap().count(), 0);
}
