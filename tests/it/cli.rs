//! The command-line contract: names, help, one-line errors, publish → inspect → verify,
//! and a gateway that refuses to serve a bad snapshot.

use std::path::Path;

use crate::common::{assert_success, permitgate};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["serve", "--help"],
        vec!["config", "check", "--help"],
        vec!["publish", "--help"],
        vec!["snapshot", "inspect", "--help"],
        vec!["snapshot", "verify", "--help"],
        vec!["dev-pki", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["keys", "ed25519", "--help"],
        vec!["temp-permit", "issue", "--help"],
        vec!["temp-permit", "revoke", "--help"],
        vec!["temp-permit", "verify", "--help"],
        vec!["receipt", "verify", "--help"],
        vec!["receipt", "render", "--help"],
        vec!["verify-site", "--help"],
    ] {
        let out = permitgate(&sub);
        assert!(out.status.success(), "{sub:?}");
        assert!(text(&out.stdout).contains("Usage"), "{sub:?}");
    }
}

#[test]
fn wrong_arguments_give_one_line_and_non_zero_exit() {
    for args in [
        vec!["frobnicate"],
        vec!["serve"],
        vec!["demo", "--records", "many"],
        vec!["demo", "--listen", "not-an-address"],
        vec!["publish", "--input", "x"],
        vec![
            "publish",
            "--input",
            "x",
            "--out",
            "r",
            "--signing-key",
            "k",
            "--hash-key",
            "h",
            "--expires-in-hours",
            "0",
        ],
        vec!["temp-permit", "verify", "--keys", "k.json"],
        vec!["verify-site", "--keys", "k.json"],
        vec!["demo", "--verify-listen", "8080"],
        vec![
            "receipt",
            "verify",
            "--keys",
            "k.json",
            "PGR1:",
            "--travel-permit",
            "H12345678",
        ],
    ] {
        let out = permitgate(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{err}");
    }
    let err = text(&permitgate(&["serve"]).stderr);
    assert!(
        err.contains("--config"),
        "names the missing argument: {err}"
    );
}

fn write_export(path: &Path) {
    std::fs::write(
        path,
        concat!(
            r#"{"person":"a","documents":[{"number":"H12345678","status":"valid","valid_until":"2099-01-01"},{"number":"810000199001011230","status":"valid","valid_until":"2099-01-01"}]}"#,
            "\n",
            r#"{"person":"b","documents":[{"number":"01234567","status":"lost","valid_until":"2099-01-01"}]}"#,
            "\n"
        ),
    )
    .expect("export");
}

#[test]
fn publish_inspect_verify_and_tamper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let out = permitgate(&["keys", "generate", "--out", &d("keys")]);
    assert_success(&out);
    let again = permitgate(&["keys", "generate", "--out", &d("keys")]);
    assert!(!again.status.success(), "must not overwrite keys");

    write_export(&dir.path().join("export.jsonl"));
    // `publish --input FILE` or `--changes FILE` into repo/ with the generated keys.
    let publish = |what: &str, file: &str| {
        permitgate(&[
            "publish",
            what,
            &d(file),
            "--out",
            &d("repo"),
            "--signing-key",
            &d("keys/publisher.key"),
            "--hash-key",
            &d("keys/hash.key"),
        ])
    };
    let out = publish("--input", "export.jsonl");
    assert_success(&out);
    assert!(text(&out.stdout).contains("published version 1 (3 documents, 2 persons)"));

    std::fs::write(
        dir.path().join("changes.jsonl"),
        r#"{"op":"status","number":"H12345678","status":"lost"}"#,
    )
    .expect("changes");
    let out = publish("--changes", "changes.jsonl");
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("published version 2 (1 changes) as delta"),
        "{}",
        text(&out.stdout)
    );
    let both = permitgate(&[
        "publish",
        "--input",
        &d("export.jsonl"),
        "--changes",
        &d("changes.jsonl"),
        "--out",
        &d("repo"),
        "--signing-key",
        &d("keys/publisher.key"),
        "--hash-key",
        &d("keys/hash.key"),
    ]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "--input and --changes exclude each other"
    );

    let out = permitgate(&["snapshot", "inspect", &d("repo")]);
    assert_success(&out);
    let shown = text(&out.stdout);
    assert!(shown.contains("documents:        3"), "{shown}");
    assert!(
        shown.contains("\"deltas\""),
        "inspect shows the delta chain: {shown}"
    );
    assert!(
        !shown.contains("H12345678"),
        "inspect must not reveal numbers"
    );
    // `| head`: the reader goes away; no panic.
    crate::common::permitgate_into_a_closed_pipe(&["snapshot", "inspect", &d("repo")]);

    let out = permitgate(&[
        "snapshot",
        "verify",
        &d("repo"),
        "--public-key",
        &d("keys/publisher.pub"),
        "--hash-key",
        &d("keys/hash.key"),
    ]);
    assert_success(&out);
    assert!(text(&out.stdout).starts_with("OK"));

    // Flip one byte of the snapshot object: verify fails with a clear message (the object
    // is no longer the one the manifest names, checked before its signature).
    let obj = std::fs::read_dir(dir.path().join("repo/objects"))
        .expect("objects")
        .filter_map(Result::ok)
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .expect("one object")
        .path();
    let mut bytes = std::fs::read(&obj).expect("read");
    bytes[100] ^= 0x40;
    std::fs::write(&obj, bytes).expect("write");
    let out = permitgate(&[
        "snapshot",
        "verify",
        &d("repo"),
        "--public-key",
        &d("keys/publisher.pub"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("content hash mismatch"),
        "{}",
        text(&out.stderr)
    );
    let out = permitgate(&[
        "snapshot",
        "verify",
        &obj.to_string_lossy(),
        "--public-key",
        &d("keys/publisher.pub"),
    ]);
    assert!(!out.status.success());
}

#[test]
fn serve_refuses_a_bad_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let demo = permitgate_testkit::demo_data::prepare(
        dir.path(),
        &permitgate_testkit::demo_data::options(300, any, any),
    );
    // Sign the snapshot with a key the gateway does not trust.
    let other = permitgate::key_files::generate_signing_key();
    permitgate::key_files::save_verifying_key(&other.verifying_key(), &demo.publisher_pub())
        .expect("swap key");
    let out = permitgate(&["serve", "--config", &demo.config.to_string_lossy()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing to serve") && err.contains("not a trusted publisher key"),
        "{err}"
    );
}

#[test]
fn ed25519_key_pairs_are_written_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("keys/receipt.2027");
    let prefix = prefix.to_str().expect("utf8");
    let out = permitgate(&["keys", "ed25519", "--out", prefix]);
    assert_success(&out);
    let key = permitgate::key_files::load_signing_key(&dir.path().join("keys/receipt.2027.key"))
        .expect("private key");
    let public =
        permitgate::key_files::load_verifying_key(&dir.path().join("keys/receipt.2027.pub"))
            .expect("public key");
    assert_eq!(key.verifying_key(), public);
    let id = permitgate::key_files::verifying_key_id(&public).to_string();
    assert!(text(&out.stdout).contains(&id), "prints the key id");
    let again = permitgate(&["keys", "ed25519", "--out", prefix]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("refusing to overwrite"));
}

#[test]
fn config_check_loads_every_file_without_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = small_demo(dir.path());
    let config = demo.config.to_string_lossy().into_owned();
    let out = permitgate(&["config", "check", "--config", &config]);
    assert_success(&out);
    let said = text(&out.stdout);
    assert!(
        said.starts_with("OK: ") && said.contains("5 partners"),
        "{said}"
    );
    assert!(
        !dir.path().join("audit").exists(),
        "a check opens no audit log"
    );
    // A server certificate with one character of its signature changed parses but does
    // not verify: refused, one line, exit 1.
    crate::common::alter_certificate_signature(&demo.pki.server_cert());
    let out = permitgate(&["config", "check", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("server certificate"), "{err}");
}

/// One run of `config check` names every problem: each TOML-level mistake with its line
/// and column (unknown field, wrong type, value outside an enum, missing field), the rules
/// broken by what could be read, and every key or certificate file that does not load.
/// Defaults are never reported.
#[test]
fn config_check_names_every_problem_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = small_demo(dir.path());
    let written = std::fs::read_to_string(&demo.config).expect("config");
    let edits = [
        ("[server]\n", "[server]\nlisten_backlog = 5\nmax_body_bytes = \"lots\"\n"),
        ("[unauthenticated]\n", "[unauthenticated]\nmax_connections = 0\n"),
        (
            "signing_keys = [{ path = \"keys/receipt.key\" }]",
            "signing_keys = [{ path = \"keys/receipt.key\" }, { not_before = \"2027-01-01T00:00:00Z\" }, { path = \"keys/nothing.key\" }]",
        ),
        ("[audit]\ndir = \"audit\"\n", "[audit]\ndir = \"audit\"\nwhen_full = \"panic\"\n"),
    ];
    let mut edited = written;
    for (from, to) in edits {
        assert!(edited.contains(from), "the demo config has {from:?}");
        edited = edited.replacen(from, to, 1);
    }
    std::fs::write(&demo.config, &edited).expect("write");
    std::fs::write(demo.pki.server_key(), "broken\n").expect("key");
    std::fs::write(dir.path().join("keys/hash.key"), "zz\n").expect("hash key");
    let line_of = |needle: &str| {
        1 + edited[..edited.find(needle).expect("edited in")]
            .matches('\n')
            .count()
    };
    let out = permitgate(&[
        "config",
        "check",
        "--config",
        &demo.config.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        format!(
            "server.listen_backlog (line {} column 1): unknown field `listen_backlog`",
            line_of("listen_backlog")
        ),
        format!(
            "server.max_body_bytes (line {} column 18): invalid type: string \"lots\"",
            line_of("max_body_bytes")
        ),
        format!(
            "receipts.signing_keys[1] (line {} column",
            line_of("not_before = \"2027")
        ),
        "missing field `path`".to_owned(),
        format!(
            "audit.when_full (line {} column 13): unknown variant `panic`",
            line_of("when_full")
        ),
        "unauthenticated.max_connections: must be at least 1".to_owned(),
        format!(
            "cannot read private key from {}",
            demo.pki.server_key().display()
        ),
        "keys/hash.key is not 64 hex characters".to_owned(),
        "cannot read key file".to_owned(),
        "keys/nothing.key".to_owned(),
    ] {
        assert!(err.contains(&expected), "{expected:?} in:\n{err}");
    }
    assert!(
        err.contains("config") && err.contains(": 8 problems:"),
        "{err}"
    );
    assert!(!err.contains("burst"), "{err}");
}

/// An empty path in a config that reads whole is a file that does not load, not one
/// skipped: a CRL named `""` must not leave the gateway serving without it.
#[test]
fn an_empty_path_is_a_file_that_does_not_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = small_demo(dir.path());
    crate::common::config_edit::edit_file(
        &demo.config,
        vec![crate::common::config_edit::set(
            "tls.crls",
            toml::Value::Array(vec![toml::Value::String(String::new())]),
        )],
    );
    let out = permitgate(&[
        "config",
        "check",
        "--config",
        &demo.config.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("CRLs"), "{err}");
}

/// The demo writes its config at every start, but never over one a person edited: that
/// one is kept (and served) and the new one written beside it. A config it has no record
/// of writing is replaced and kept as `.old`; nothing typed is lost either way.
#[test]
fn the_demo_never_overwrites_an_edited_config() {
    use permitgate::demo::ConfigWritten;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = small_demo(dir.path());
    assert_eq!(first.config_written, ConfigWritten::Written);
    // Started again unedited: written again, silently.
    assert_eq!(
        small_demo(dir.path()).config_written,
        ConfigWritten::Written
    );

    let edited = std::fs::read_to_string(&first.config).expect("config")
        + "\n# my note\n[cache]\nmax_entries = 123\n";
    std::fs::write(&first.config, &edited).expect("edit");
    let again = small_demo(dir.path());
    let new = dir.path().join("gateway.toml.new");
    assert_eq!(
        again.config_written,
        ConfigWritten::KeptEdited { new: new.clone() }
    );
    assert_eq!(
        std::fs::read_to_string(&first.config).expect("kept"),
        edited
    );
    let beside = std::fs::read_to_string(&new).expect("new");
    assert!(!beside.contains("my note") && beside.contains("[server]"));
    // Kept at the next start too.
    small_demo(dir.path());
    assert_eq!(
        std::fs::read_to_string(&first.config).expect("kept"),
        edited
    );

    // No record (an earlier version's directory): replaced, the old one kept.
    std::fs::remove_file(dir.path().join(".gateway.toml.written")).expect("record");
    let replaced = small_demo(dir.path());
    let old = dir.path().join("gateway.toml.old");
    assert_eq!(
        replaced.config_written,
        ConfigWritten::Replaced { old: old.clone() }
    );
    assert_eq!(std::fs::read_to_string(&old).expect("old"), edited);
    assert!(!std::fs::read_to_string(&first.config)
        .expect("config")
        .contains("my note"));
}

/// `verify-site` writes the page's four files, with the keys document it was given checked
/// and written as keys.json; a broken keys file writes nothing and says what is wrong.
#[test]
fn verify_site_writes_the_page_and_the_checked_keys() {
    use permitgate::keyring::{Authority, KeyUse, Keyring, PublicKey, Validity};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ring = Keyring::new(vec![PublicKey::new(
        KeyUse::Receipt,
        permitgate::key_files::generate_signing_key().verifying_key(),
        Validity::default(),
    )]);
    ring.authority = Some(Authority {
        zh: "某机构".into(),
        en: "An authority".into(),
    });
    ring.verify_url = Some("https://verify.example/v/".into());
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, ring.to_json()).expect("keys");
    let site = dir.path().join("site");
    let out = permitgate(&[
        "verify-site",
        "--keys",
        keys.to_str().expect("utf8"),
        "--out",
        site.to_str().expect("utf8"),
    ]);
    assert_success(&out);
    for name in ["index.html", "verify.js", "verify.css", "keys.json"] {
        assert!(
            text(&out.stdout).contains(&format!("wrote {}", site.join(name).display())),
            "{name}"
        );
    }
    let written = Keyring::load(&site.join("keys.json")).expect("keys.json loads");
    assert_eq!(written.keys()[0].id, ring.keys()[0].id);
    assert_eq!(written.authority, ring.authority);
    assert_eq!(written.verify_url, ring.verify_url);
    let page = std::fs::read_to_string(site.join("index.html")).expect("page");
    assert!(page.contains("<script src=\"verify.js\" defer></script>"));
    assert!(page.contains("Content-Security-Policy"));

    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        br#"{"keys": [{"id": "00", "use": "receipt", "algorithm": "RSA", "public_key": "00"}]}"#,
    )
    .expect("write");
    let elsewhere = dir.path().join("not-written");
    let out = permitgate(&[
        "verify-site",
        "--keys",
        broken.to_str().expect("utf8"),
        "--out",
        elsewhere.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("keys[0]: algorithm must be Ed25519"),
        "{}",
        text(&out.stderr)
    );
    assert!(!elsewhere.exists());
}

/// A keys file whose verify_url would put script, or a page that cannot verify, into
/// every QR code is refused by `verify-site` and `receipt render` with the rule; nothing
/// is written.
#[test]
fn a_keys_file_with_a_hostile_verify_url_is_refused() {
    use permitgate::keyring::{KeyUse, Keyring, PublicKey, Validity};
    let dir = tempfile::tempdir().expect("tempdir");
    for (url, rule) in [
        (
            "javascript:alert(document.cookie)//",
            "must start with https://",
        ),
        (
            "data:text/html,<script>alert(1)</script>",
            "must start with https://",
        ),
        (
            "http://verify.example.gov/verify/",
            "only for a loopback host",
        ),
    ] {
        let mut ring = Keyring::new(vec![PublicKey::new(
            KeyUse::Receipt,
            permitgate::key_files::generate_signing_key().verifying_key(),
            Validity::default(),
        )]);
        ring.verify_url = Some(url.into());
        let keys = dir.path().join("keys.json");
        std::fs::write(&keys, ring.to_json()).expect("keys");
        let keys = keys.to_str().expect("utf8");
        let (site, pdf) = (dir.path().join("site"), dir.path().join("r.pdf"));
        let (site_s, pdf_s) = (site.to_str().expect("utf8"), pdf.to_str().expect("utf8"));
        for args in [
            vec!["verify-site", "--keys", keys, "--out", site_s],
            vec![
                "receipt",
                "render",
                "PGR2:irrelevant",
                "--keys",
                keys,
                "--out",
                pdf_s,
            ],
        ] {
            let out = permitgate(&args);
            assert_eq!(out.status.code(), Some(1), "{url}: {args:?}");
            let err = text(&out.stderr);
            assert!(
                err.contains("verify_url") && err.contains(rule),
                "{url}: {err}"
            );
        }
        assert!(!site.exists() && !pdf.exists());
    }
}

/// A CRL as `openssl ca -gencrl` makes it by default (version 1, no extensions, which
/// rustls cannot use) is refused naming the file and what to change; with a crlnumber
/// file, the same command makes one that loads.
#[test]
fn an_openssl_default_crl_is_refused_with_what_to_change() {
    let Some(openssl) = crate::common::optional_tool(
        "openssl",
        "PERMITGATE_REQUIRE_OPENSSL",
        "apt-get install openssl",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = small_demo(dir.path());
    let pki = demo.pki.dir.clone();
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(ca_dir.join("newcerts")).expect("dirs");
    std::fs::write(ca_dir.join("index.txt"), "").expect("index");
    let cnf = ca_dir.join("ca.cnf");
    let gencrl = |numbered: bool| {
        let mut c = format!(
            "[ca]\ndefault_ca = d\n[d]\ndir = {d}\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/newcerts\n\
             certificate = {p}/ca.crt\nprivate_key = {p}/ca.key\ndefault_md = sha256\ndefault_crl_days = 7\n",
            d = ca_dir.display(),
            p = pki.display()
        );
        if numbered {
            std::fs::write(ca_dir.join("crlnumber"), "01\n").expect("crlnumber");
            c.push_str(&format!("crlnumber = {}/crlnumber\n", ca_dir.display()));
        }
        std::fs::write(&cnf, c).expect("cnf");
        let out = ca_dir.join(if numbered { "v2.crl" } else { "v1.crl" });
        let status = std::process::Command::new(&openssl)
            .args(["ca", "-config"])
            .arg(&cnf)
            .args(["-gencrl", "-out"])
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl ca -gencrl");
        out
    };
    let config = demo.config.to_string_lossy().into_owned();
    let with_crl = |crl: &std::path::Path| {
        crate::common::config_edit::edit_file(
            &demo.config,
            vec![crate::common::config_edit::set(
                "tls.crls",
                toml::Value::Array(vec![toml::Value::String(crl.display().to_string())]),
            )],
        );
    };
    let v1 = gencrl(false);
    with_crl(&v1);
    let out = permitgate(&["config", "check", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&v1.display().to_string()), "{err}");
    assert!(
        err.contains("version 1") && err.contains("crlnumber"),
        "{err}"
    );

    with_crl(&gencrl(true));
    assert_success(&permitgate(&["config", "check", "--config", &config]));
}

/// A gateway whose open-file limit cannot hold the connections its config allows refuses
/// to start, saying what to change (it used to start and fail at accept under load).
#[test]
fn serve_refuses_an_open_file_limit_below_the_connections_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = small_demo(dir.path());
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 1024 && exec \"$0\" serve --config \"$1\"",
            env!("CARGO_BIN_EXE_permitgate"),
            &demo.config.to_string_lossy(),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("open-file limit is 1024") && err.contains("LimitNOFILE"),
        "{err}"
    );
}

/// A demo of 50 residents in `dir`, for commands that only read its files.
fn small_demo(dir: &std::path::Path) -> permitgate::demo::Demo {
    permitgate_testkit::demo_data::prepare(
        dir,
        &permitgate_testkit::demo_data::options(
            300,
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        ),
    )
}
