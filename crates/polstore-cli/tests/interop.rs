//! Interoperability: signify-openbsd keys and signatures work with polstore and back, and a manifest made with b3sum and a shell script is accepted.

mod util;

use std::fs;
use std::path::Path;
use std::process::Command;

use polstore::format::signify::{self, COMMENT_BYTES_MAX, PublicKey, SecretKey, Signature};
use util::{Node, POLICY, assert_ingest_refused, s, set_mode, tree_content};

const SIGNIFY: &str = "signify-openbsd";

/// The shell recipe for a manifest, as documented in store-format.md: `DIR SERIAL`.
const MANIFEST_SCRIPT: &str = r#"set -euo pipefail
cd "$1"
{
  printf 'polstore-manifest 1\nserial %s\ncreated %s\n\n' "$2" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  find . -type f ! -path ./polstore.manifest ! -path ./polstore.manifest.sig -printf '%P\n' | LC_ALL=C sort | while IFS= read -r f; do
    hash=$(b3sum --no-names -- "$f")
    mode=$(stat -c %#a -- "$f")
    size=$(stat -c %s -- "$f")
    printf '%s %04o %s %s\n' "$hash" "$((mode))" "$size" "$f"
  done
} > polstore.manifest
"#;

/// Runs signify-openbsd and returns whether it succeeded.
fn signify(args: &[&str]) -> bool {
    let output = Command::new(SIGNIFY).args(args).output().unwrap();
    if !output.status.success() {
        eprintln!(
            "{SIGNIFY} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

/// A key pair made by `signify-openbsd -G -n`.
fn signify_keygen(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.sec")),
    );
    assert!(signify(&["-G", "-n", "-p", s(&public), "-s", s(&secret)]));
    (public, secret)
}

fn policy_tree(node: &Node, name: &str) -> std::path::PathBuf {
    node.tree(
        name,
        &[("promises.cf", POLICY), ("lib/common.cf", "# common\n")],
    )
}

#[test]
fn manifest_signed_by_signify_is_accepted() {
    let node = Node::new();
    let (public, secret) = signify_keygen(&node.root, "server");
    node.run(&["init", "--view", s(&node.view), "--trust", s(&public)])
        .success();
    node.configure_for_tests();

    let tree = policy_tree(&node, "tree");
    let manifest = tree.join("polstore.manifest");
    node.run(&["manifest", s(&tree), "--serial", "1", "-o", s(&manifest)])
        .success();
    assert!(signify(&[
        "-S",
        "-s",
        s(&secret),
        "-m",
        s(&manifest),
        "-x",
        s(&tree.join("polstore.manifest.sig")),
    ]));
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(1));
    let content = tree_content(&node.view);
    assert_eq!(
        content.keys().collect::<Vec<_>>(),
        ["lib/common.cf", "promises.cf"]
    );
    // `polstore sign` with signify's secret key makes a signature polstore accepts too.
    let tree = policy_tree(&node, "tree2");
    let manifest = tree.join("polstore.manifest");
    node.run(&["manifest", s(&tree), "--serial", "2", "-o", s(&manifest)])
        .success();
    node.run(&["sign", "--key", s(&secret), s(&manifest)])
        .success();
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(2));
    // A signature signify made with another key is not trusted.
    let (_, other) = signify_keygen(&node.root, "other");
    let tree = policy_tree(&node, "tree3");
    let manifest = tree.join("polstore.manifest");
    node.run(&["manifest", s(&tree), "--serial", "3", "-o", s(&manifest)])
        .success();
    assert!(signify(&[
        "-S",
        "-s",
        s(&other),
        "-m",
        s(&manifest),
        "-x",
        s(&tree.join("polstore.manifest.sig")),
    ]));
    assert_ingest_refused(&node, &tree, "which is not trusted");
}

#[test]
fn polstore_signatures_verify_with_signify() {
    let node = Node::new();
    let tree = policy_tree(&node, "tree");
    let manifest = tree.join("polstore.manifest");
    let signature = tree.join("polstore.manifest.sig");
    node.sign_tree(&tree, 1);
    assert!(signify(&[
        "-V",
        "-q",
        "-p",
        s(&node.public_key),
        "-m",
        s(&manifest),
        "-x",
        s(&signature),
    ]));
    // signify is not just agreeing: a changed manifest fails with it.
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("serial 1\n", "serial 9\n")).unwrap();
    assert!(!signify(&[
        "-V",
        "-q",
        "-p",
        s(&node.public_key),
        "-m",
        s(&manifest),
        "-x",
        s(&signature),
    ]));

    // signify signs with a secret key `polstore keygen` wrote, and polstore accepts it.
    node.init_signed();
    fs::write(&manifest, text).unwrap();
    fs::remove_file(&signature).unwrap();
    assert!(signify(&[
        "-S",
        "-s",
        s(&node.secret_key),
        "-m",
        s(&manifest),
        "-x",
        s(&signature),
    ]));
    node.ingest(&tree).success();
    assert_eq!(node.active_generation(), Some(1));
}

#[test]
fn manifest_made_by_the_shell_script_is_accepted() {
    let node = Node::signed();
    let tree = node.tree(
        "tree",
        &[
            ("promises.cf", POLICY),
            ("lib/common.cf", "# common\n"),
            ("lib/empty.cf", ""),
            ("dir with space/file name.cf", "# spaces\n"),
            ("-dash.cf", "# leading dash\n"),
            ("é/ünïcode.cf", "# utf-8 names\n"),
            ("a.b/x.cf", "# sorts after a/ by byte\n"),
            ("a/x.cf", "# sorts before a.b/ by byte\n"),
            ("bin/check.sh", "#!/bin/sh\nexit 0\n"),
            ("secret.dat", "private\n"),
        ],
    );
    set_mode(&tree.join("bin/check.sh"), 0o755);
    set_mode(&tree.join("secret.dat"), 0o600);
    let big: String = (0..20_000).map(|index| format!("{index}\n")).collect();
    fs::write(tree.join("lib/big.cf"), big).unwrap();
    set_mode(&tree.join("lib/big.cf"), 0o644);
    let script = node.root.join("make-manifest.sh");
    fs::write(&script, MANIFEST_SCRIPT).unwrap();

    util::tool("bash", &[s(&script), s(&tree), "4"]);
    let scripted = fs::read_to_string(tree.join("polstore.manifest")).unwrap();
    // Byte for byte what `polstore manifest` writes, but for the creation time.
    let reference = node
        .run(&["manifest", s(&tree), "--serial", "4"])
        .success()
        .stdout;
    let body = |text: &str| text.split_once("\n\n").unwrap().1.to_string();
    assert_eq!(body(&scripted), body(&reference));
    assert!(scripted.starts_with("polstore-manifest 1\nserial 4\ncreated "));
    for (mode, path) in [
        ("0755", "bin/check.sh"),
        ("0600", "secret.dat"),
        ("0644", "lib/empty.cf"),
        ("0644", "lib/big.cf"),
    ] {
        let content = fs::read(tree.join(path)).unwrap();
        let line = format!(
            "{} {mode} {} {path}\n",
            blake3::hash(&content).to_hex(),
            content.len()
        );
        assert!(scripted.contains(&line), "{line:?} not in {scripted}");
    }

    node.sign(&tree.join("polstore.manifest"));
    node.ingest(&tree).success();
    let status = node.status();
    assert_eq!(status["active"]["serial"], 4);
    assert_eq!(status["active"]["files"], 11);
    let mut expected = tree_content(&tree);
    expected.remove("polstore.manifest");
    expected.remove("polstore.manifest.sig");
    assert_eq!(tree_content(&node.view), expected);
}

/// The library against the real signify: the files signify writes are read and written
/// back byte for byte, a signature polstore makes with signify's key is the one signify
/// makes and signify verifies it, and neither accepts it over another message.
#[test]
fn signify_files_and_signatures_round_trip_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = signify_keygen(dir.path(), "key");
    let message = dir.path().join("message");
    let signify_signature = dir.path().join("signify.sig");
    let polstore_signature = dir.path().join("polstore.sig");
    fs::write(&message, b"policy bundle contents\n").unwrap();
    assert!(signify(&[
        "-S",
        "-s",
        s(&secret),
        "-m",
        s(&message),
        "-x",
        s(&signify_signature),
    ]));

    let public_text = fs::read_to_string(&public).unwrap();
    let public_key = PublicKey::parse(public_text.as_bytes()).unwrap();
    let secret_key = SecretKey::parse(&fs::read(&secret).unwrap()).unwrap();
    assert_eq!(secret_key.public_key(), public_key);
    assert_eq!(public_key.to_file_text("signify public key"), public_text);
    let signature_text = fs::read_to_string(&signify_signature).unwrap();
    let signature = Signature::parse(signature_text.as_bytes()).unwrap();
    assert_eq!(signature.keynum(), public_key.keynum());
    assert_eq!(
        signature.to_file_text("verify with key.pub"),
        signature_text
    );
    let message_bytes = fs::read(&message).unwrap();
    assert_eq!(
        signify::verify(
            std::slice::from_ref(&public_key),
            &message_bytes,
            &signature
        )
        .unwrap(),
        0
    );

    let own = secret_key
        .sign(&message_bytes)
        .to_file_text("verify with key.pub");
    assert_eq!(own, signature_text, "Ed25519 signatures are deterministic");
    fs::write(&polstore_signature, own).unwrap();
    let verify_args = [
        "-V",
        "-q",
        "-p",
        s(&public),
        "-m",
        s(&message),
        "-x",
        s(&polstore_signature),
    ];
    assert!(signify(&verify_args));
    // Over another message, signify refuses the signature, and so does polstore.
    fs::write(&message, b"another message").unwrap();
    assert!(!signify(&verify_args));
    assert_eq!(
        signify::verify(&[public_key], b"another message", &signature)
            .unwrap_err()
            .to_string(),
        format!("signature does not verify with key {}", signature.keynum())
    );
}

/// signify signs with secret key files whose comment polstore sanitized: the longest one
/// it accepts, one with a line break, and the default for an empty one.
#[test]
fn signify_reads_secret_keys_with_sanitized_comments() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.sec");
    let message = dir.path().join("message");
    fs::write(&message, b"policy bundle contents\n").unwrap();
    let secret_key = SecretKey::generate().unwrap();
    let longest = "a".repeat(2 * COMMENT_BYTES_MAX);
    for comment in [longest.as_str(), "two\nlines", ""] {
        fs::write(&key, secret_key.to_file_text(comment)).unwrap();
        assert!(
            signify(&[
                "-S",
                "-s",
                s(&key),
                "-m",
                s(&message),
                "-x",
                s(&dir.path().join("message.sig")),
            ]),
            "signify refused the comment {comment:?}"
        );
    }
}
