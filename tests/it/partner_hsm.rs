//! The partner CA's key in an HSM (SoftHSM2 here, through its PKCS#11 module): the demo's
//! CA key moved into a token and deleted from disk, then a partner enrolled and revoked
//! with the commands, and renewed over the API by a gateway holding no key file, each
//! certificate and CRL checked with openssl against the CA certificate.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::config_edit::{self, edit_file};
use crate::common::process;
use crate::partner_lifecycle::{csr, text};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// `program args` in `dir` with SoftHSM's config (`SOFTHSM2_CONF`) of this test.
fn run_hsm(program: &str, args: &[&str], dir: &Path) -> Output {
    let bin = if program == "permitgate" {
        env!("CARGO_BIN_EXE_permitgate")
    } else {
        program
    };
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out));
    text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_ca_key_in_an_hsm_enrols_revokes_and_renews() {
    if crate::common::optional_tool(
        "softhsm2-util",
        "PERMITGATE_REQUIRE_SOFTHSM",
        "apt-get install softhsm2",
    )
    .is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (listen, metrics) = (process::free_port(), process::free_port());
    let demo = permitgate_testkit::demo_data::prepare(
        tmp.path(),
        &permitgate_testkit::demo_data::options(300, listen, metrics),
    );
    let dir = demo.dir.clone();

    // A token, the CA key imported into it, the key file gone.
    std::fs::create_dir_all(dir.join("tokens")).expect("tokens");
    std::fs::write(
        dir.join("softhsm2.conf"),
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .expect("conf");
    ok(
        run_hsm(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                "partner-ca",
                "--so-pin",
                "0000",
                "--pin",
                "1234",
            ],
            &dir,
        ),
        "init token",
    );
    let import = |file: &str, label: &str, id: &str| {
        ok(
            run_hsm(
                "softhsm2-util",
                &[
                    "--import",
                    file,
                    "--token",
                    "partner-ca",
                    "--label",
                    label,
                    "--id",
                    id,
                    "--pin",
                    "1234",
                ],
                &dir,
            ),
            "import",
        )
    };
    import("pki/ca.key", "partner-ca-key", "01");
    std::fs::remove_file(dir.join("pki/ca.key")).expect("the key file goes");
    std::fs::write(dir.join("hsm-pin"), "1234\n").expect("pin file");
    let uri = |object: &str| {
        format!(
            "pkcs11:token=partner-ca;object={object}?module-path={MODULE}&pin-source=file:{}",
            dir.join("hsm-pin").display()
        )
    };
    let config = demo.config.to_string_lossy().into_owned();

    // Enrolled with the HSM's key: openssl verifies the certificate against the CA.
    csr(
        &dir,
        "acme",
        "ec",
        "/CN=acme",
        &["-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let enrol = |object: &str| {
        run_hsm(
            "permitgate",
            &[
                "partners",
                "enrol",
                "--config",
                &config,
                "--csr",
                "acme.csr",
                "--id",
                "acme",
                "--scopes",
                "link_check",
                "--ca-key",
                &uri(object),
                "--out",
                "acme.crt",
            ],
            &dir,
        )
    };
    // A key of another CA in the token: refused before anything is issued.
    ok(
        run_hsm(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "other.key",
            ],
            &dir,
        ),
        "other key",
    );
    import("other.key", "other-key", "02");
    let refused = enrol("other-key");
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("does not belong to the CA certificate"),
        "{}",
        text(&refused)
    );
    assert!(!dir.join("acme.crt").exists(), "nothing issued");
    let enrolled = ok(enrol("partner-ca-key"), "enrol");
    assert!(!enrolled.contains("1234"), "the PIN is never printed");
    assert!(ok(
        run_hsm(
            "openssl",
            &["verify", "-CAfile", "pki/ca.crt", "acme.crt"],
            &dir
        ),
        "verify"
    )
    .contains("acme.crt: OK"));

    // Revoked with the HSM's key: a CRL openssl verifies, listing the certificate.
    edit_file(
        &demo.config,
        vec![config_edit::set(
            "tls.crls",
            config_edit::value("[\"pki/partners.crl\"]"),
        )],
    );
    ok(
        run_hsm(
            "permitgate",
            &[
                "partners",
                "revoke",
                "--config",
                &config,
                "--id",
                "acme",
                "--ca-key",
                &uri("partner-ca-key"),
            ],
            &dir,
        ),
        "revoke",
    );
    let revoked = run_hsm(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "pki/ca.crt",
            "-CRLfile",
            "pki/partners.crl",
            "acme.crt",
        ],
        &dir,
    );
    assert!(
        !revoked.status.success() && text(&revoked).contains("certificate revoked"),
        "{}",
        text(&revoked)
    );

    // A gateway renewing with the HSM's key: bank renews with curl.
    edit_file(
        &demo.config,
        vec![config_edit::set(
            "partner_ca",
            config_edit::value(&format!("{{ key = \"{}\" }}", uri("partner-ca-key"))),
        )],
    );
    let log = dir.join("gateway.log");
    let conf = dir.join("softhsm2.conf");
    let _gateway = process::start_logging(
        &demo.config,
        &[
            ("SOFTHSM2_CONF", &conf.to_string_lossy()),
            ("RUST_LOG", "warn"),
        ],
        &log,
    );
    assert!(
        process::wait_ready(metrics, std::time::Duration::from_secs(30)),
        "gateway not ready: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    csr(
        &dir,
        "bank-next",
        "ec",
        "/CN=bank",
        &["-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let body = serde_json::json!({
        "csr": std::fs::read_to_string(dir.join("bank-next.csr")).expect("csr")
    })
    .to_string();
    let answer = ok(
        run_hsm(
            "curl",
            &[
                "-sS",
                "--fail-with-body",
                "--max-time",
                "20",
                "--cacert",
                "pki/ca.crt",
                "--cert",
                "pki/partners/bank.crt",
                "--key",
                "pki/partners/bank.key",
                "-H",
                "content-type: application/json",
                "-d",
                &body,
                &format!("https://localhost:{}/v1/partner/certificate", listen.port()),
            ],
            &dir,
        ),
        "renewal",
    );
    let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
    std::fs::write(
        dir.join("bank-next.crt"),
        v["certificate"].as_str().expect("certificate"),
    )
    .expect("write");
    assert!(ok(
        run_hsm(
            "openssl",
            &["verify", "-CAfile", "pki/ca.crt", "bank-next.crt"],
            &dir
        ),
        "verify renewed"
    )
    .contains("bank-next.crt: OK"));
}
