//! What a partner learns of its own standing, over real mTLS: who the gateway takes it for
//! (`GET /v1/partner`), a warning on every answer while its certificate nears its end, the
//! expiry as a metric, and a revocation that names its issuer as well as its serial.

use crate::common::{metric_value, TestGateway};

use permitgate::demo::pki::{SANDBOX, SANDBOX_CERTIFICATE_DAYS};

const EXPIRES: &str = "permitgate-certificate-expires";

#[tokio::test]
async fn a_partner_sees_its_standing_and_is_warned_before_its_certificate_ends() {
    let gw = TestGateway::start().await;
    // The demo's sandbox: a certificate ending in ten days, five requests a second.
    let mut sandbox = gw.client(SANDBOX).await;
    let r = sandbox.get("/v1/partner").await;
    r.assert_ok("partner");
    let v = r.json();
    assert_eq!(v["id"], SANDBOX);
    assert_eq!(
        v["scopes"],
        serde_json::json!(["link_check", "document_status"])
    );
    assert_eq!(
        v["rate_limit"],
        serde_json::json!({"per_second": 5.0, "burst": 5})
    );
    let days = v["certificate"]["days_left"].as_i64().expect("days_left");
    assert!(
        (SANDBOX_CERTIFICATE_DAYS - 1..=SANDBOX_CERTIFICATE_DAYS).contains(&days),
        "{v}"
    );
    let expires_at = v["certificate"]["expires_at"].as_str().expect("expires_at");
    assert_eq!(r.headers[EXPIRES], expires_at, "the warning says when");
    let serial = v["certificate"]["serial"].as_str().expect("serial");
    let pem = std::fs::read(gw.demo.pki.partner_cert(SANDBOX)).expect("cert");
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("pem")
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    // As openssl prints it.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(gw.demo.pki.partner_cert(SANDBOX))
        .output()
        .expect("openssl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("serial={serial}")
    );
    assert_eq!(
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .expect("rfc3339")
            .unix_timestamp(),
        cert.validity().not_after.timestamp()
    );

    // On every answer, refusals too: past its rate, a 429 with Retry-After carries it.
    // And the rate as RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers):
    // five a second, and fewer left after each request, none at the 429.
    let s = gw.sample("linked_pair").clone();
    let mut limited = None;
    let mut left_seen = Vec::new();
    for _ in 0..20 {
        let r = sandbox.post_json(&s.path, &s.body).await;
        assert_eq!(r.headers[EXPIRES], expires_at);
        assert_eq!(r.headers["ratelimit-policy"], "\"partner\";q=5;w=1");
        let state = r.headers["ratelimit"].to_str().expect("ascii").to_owned();
        let left: u64 = state
            .strip_prefix("\"partner\";r=")
            .and_then(|rest| rest.split(';').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("RateLimit: {state}"));
        left_seen.push(left);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("five a second: the sandbox is refused within twenty");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(left_seen.last(), Some(&0), "{left_seen:?}");
    assert!(
        left_seen.first().is_some_and(|first| *first >= 3)
            && left_seen.windows(2).any(|w| w[1] < w[0]),
        "what is left goes down: {left_seen:?}"
    );

    // A partner with a year left is not warned; one without a rate limit gets no
    // RateLimit headers.
    let mut bank = gw.client("bank").await;
    let r = bank.get("/v1/partner").await;
    r.assert_ok("bank");
    assert!(!r.headers.contains_key(EXPIRES));
    assert!(!r.headers.contains_key("ratelimit") && !r.headers.contains_key("ratelimit-policy"));
    assert!(r.json()["certificate"]["days_left"].as_i64().expect("days") > 300);

    // What SREs see: each partner's certificate expiry, from its handshakes.
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            &format!(
                "permitgate_partner_certificate_expiry_timestamp_seconds{{partner=\"{SANDBOX}\"}}"
            )
        ),
        cert.validity().not_after.timestamp() as f64
    );
}

/// A CRL revokes what its issuer issued: a certificate of another CA with the same serial
/// is not refused by it (it used to be, for connections open before the CRL arrived).
#[test]
fn a_revocation_names_the_issuer_and_the_serial() {
    use rcgen::{
        CertificateParams, CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair,
        RevokedCertParams, SerialNumber,
    };
    let now = time::OffsetDateTime::now_utc();
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Issuer::new(p, KeyPair::generate().expect("key"))
    };
    let (first, second) = (ca("first partner CA"), ca("second partner CA"));
    let leaf = |issuer: &Issuer<'_, KeyPair>| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.serial_number = Some(SerialNumber::from(4242u64));
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, issuer).expect("leaf");
        permitgate::tls::leaf(cert.der()).expect("parses")
    };
    let crl = CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(4242u64),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&first)
    .expect("crl");
    let revoked = permitgate::tls::revoked_certificates(&[crl.der().clone()]).expect("reads");
    let (of_first, of_second) = (leaf(&first), leaf(&second));
    assert_eq!(
        of_first.issued_as.1, of_second.issued_as.1,
        "the same serial"
    );
    assert!(revoked.contains(&of_first.issued_as));
    assert!(!revoked.contains(&of_second.issued_as));
}

pub(crate) fn run(cmd: &str, args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let bin = if cmd == "permitgate" {
        env!("CARGO_BIN_EXE_permitgate")
    } else {
        cmd
    };
    std::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

pub(crate) fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A CSR made with openssl as a partner would: `key` is openssl's `-newkey` argument.
pub(crate) fn csr(dir: &std::path::Path, name: &str, key: &str, subject: &str, extra: &[&str]) {
    let mut args = vec!["req", "-new", "-newkey", key, "-nodes", "-keyout"];
    let (k, c) = (format!("{name}.key"), format!("{name}.csr"));
    args.extend([k.as_str(), "-out", c.as_str(), "-subj", subject]);
    args.extend(extra);
    let out = run("openssl", &args, dir);
    assert!(out.status.success(), "openssl req: {}", text(&out));
}

/// `curl` as the partner: the status line of `GET path`, or the failure.
fn curl_get(
    gw: &TestGateway,
    dir: &std::path::Path,
    name: &str,
    path: &str,
) -> Result<String, String> {
    let url = format!("https://localhost:{}{path}", gw.addr().port());
    let ca = gw.demo.pki.ca_cert();
    let (c, k) = (
        format!("pki/partners/{name}.crt"),
        format!("pki/partners/{name}.key"),
    );
    let out = run(
        "curl",
        &[
            "-sS",
            "--cacert",
            &ca.to_string_lossy(),
            "--cert",
            &c,
            "--key",
            &k,
            &url,
        ],
        dir,
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(text(&out))
    }
}

/// A partner applies with a CSR made by openssl, is enrolled with one command (its
/// certificate issued, the registry written, the gateway reloading it), listed, and
/// revoked with one command: its new handshakes fail, its open HTTP/1.1 and HTTP/2
/// connections are refused on their next request, and a saved TLS session does not
/// bring it back. Bad CSRs are refused with the rule they break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_is_enrolled_from_its_csr_listed_and_revoked_with_the_tools() {
    use crate::common::config_edit;
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let demo = gw.demo.dir.clone();
    let config = gw.config_path.to_string_lossy().into_owned();
    // The partner CA's CRL (empty yet); the registry is the demo's.
    let crl = gw.use_partner_crl(&[]);
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let registry_path = config_edit::registry_path(&gw.config_path).expect("registry");
    let registry = || std::fs::read_to_string(&registry_path).expect("registry");

    let enrol = |csr: &str, id: &str| {
        run(
            "permitgate",
            &[
                "partners",
                "enrol",
                "--config",
                &config,
                "--csr",
                csr,
                "--id",
                id,
                "--scopes",
                "link_check,document_status",
                "--rate",
                "10/20",
                "--display-name-zh",
                "示例物流有限公司",
                "--display-name-en",
                "Example Logistics Ltd",
                "--ca-key",
                "pki/ca.key",
                "--out",
                &format!("pki/partners/{id}.crt"),
            ],
            &demo,
        )
    };
    // Refused, each with its rule; nothing enrolled.
    csr(&demo, "weak", "rsa:1024", "/CN=weak", &[]);
    csr(
        &demo,
        "other",
        "ec",
        "/CN=bank",
        &["-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    csr(
        &demo,
        "ca",
        "ec",
        "/CN=ca-wanted",
        &[
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    csr(
        &demo,
        "pki/partners/acme",
        "ec",
        "/CN=acme",
        &[
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-addext",
            "subjectAltName=URI:spiffe://partners/acme",
        ],
    );
    // The same request with one byte of its signature changed, as DER and back.
    let out = run(
        "openssl",
        &[
            "req",
            "-in",
            "pki/partners/acme.csr",
            "-outform",
            "DER",
            "-out",
            "forged.der",
        ],
        &demo,
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut der = std::fs::read(demo.join("forged.der")).expect("der");
    let last = der.len() - 3;
    der[last] ^= 0x01;
    std::fs::write(demo.join("forged.der"), &der).expect("forged");
    let out = run(
        "openssl",
        &[
            "req",
            "-inform",
            "DER",
            "-in",
            "forged.der",
            "-out",
            "forged.csr",
        ],
        &demo,
    );
    assert!(out.status.success(), "{}", text(&out));
    for (file, id, rule) in [
        ("weak.csr", "weak", "RSA of 1024 bits"),
        (
            "other.csr",
            "acme",
            "names \"bank\", not the partner id \"acme\"",
        ),
        ("ca.csr", "ca-wanted", "asks for a CA certificate"),
        ("forged.csr", "acme", "signature does not verify"),
        ("pki/partners/acme.csr", "Acme!", "must be 1-64 characters"),
    ] {
        let out = enrol(file, id);
        assert!(!out.status.success(), "{file} enrolled");
        assert!(text(&out).contains(rule), "{file}: {}", text(&out));
    }
    let before = registry();
    assert!(!before.contains("acme"), "nothing written: {before}");

    let out = enrol("pki/partners/acme.csr", "acme");
    assert!(out.status.success(), "{}", text(&out));
    let after = registry();
    assert!(
        after.contains("Example Logistics Ltd") && after.contains("示例物流有限公司"),
        "{after}"
    );
    assert!(after.contains("id = \"bank\""), "the others kept: {after}");
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 2.0)
        .await;
    let again = enrol("pki/partners/acme.csr", "acme");
    assert!(
        text(&again).contains("already enrolled"),
        "{}",
        text(&again)
    );

    // The new partner, with curl: its standing, and a check.
    let me = curl_get(&gw, &demo, "acme", "/v1/partner").expect("acme connects");
    let v: serde_json::Value = serde_json::from_str(&me).expect("json");
    assert_eq!(v["id"], "acme");
    assert_eq!(
        v["rate_limit"],
        serde_json::json!({"per_second": 10.0, "burst": 20})
    );
    assert_eq!(v["certificate"]["days_left"], 89, "{v}");
    let mut open = crate::common::Client::connect(
        gw.addr(),
        &gw.demo.pki.ca_cert(),
        Some((
            &demo.join("pki/partners/acme.crt"),
            &demo.join("pki/partners/acme.key"),
        )),
    )
    .await
    .expect("acme connects");
    let s = gw.sample("linked_pair").clone();
    assert_eq!(open.post_json(&s.path, &s.body).await.status, 200);

    // Listed with what it may do, until when, and when it was last seen.
    let metrics = format!("http://{}", gw.running.metrics_addr.expect("metrics"));
    let out = run(
        "permitgate",
        &[
            "partners",
            "list",
            "--config",
            &config,
            "--metrics",
            &metrics,
        ],
        &demo,
    );
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listed
        .lines()
        .find(|l| l.starts_with("acme "))
        .expect("acme listed");
    let year = time::OffsetDateTime::now_utc().year().to_string();
    assert!(
        line.contains("link_check,document_status") && line.contains("10/20"),
        "{line}"
    );
    assert_eq!(
        (
            line.matches(&year[..3]).count(),
            line.matches("Beijing time").count()
        ),
        (2, 2),
        "certificate end and last seen, in Beijing time: {line}"
    );

    // An HTTP/2 connection, and a TLS session to resume, from before the revocation.
    let (h2, conn) = h2::client::handshake(gw.h2_tls("acme").await)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let port = gw.addr().port();
    let h2_get = |mut h2: h2::client::SendRequest<bytes::Bytes>| async move {
        let req = http::Request::get(format!("https://localhost:{port}/v1/partner"))
            .body(())
            .expect("request");
        let (answer, _) = h2.send_request(req, true).expect("stream");
        answer.await.expect("answer").status().as_u16()
    };
    assert_eq!(h2_get(h2.clone().ready().await.expect("ready")).await, 200);
    let resume = |first: bool| {
        let port = gw.addr().port().to_string();
        let ca = gw.demo.pki.ca_cert();
        let mut args = vec![
            "s_client",
            "-connect",
            &format!("localhost:{port}"),
            "-servername",
            "localhost",
            "-CAfile",
            &ca.to_string_lossy(),
            "-cert",
            "pki/partners/acme.crt",
            "-key",
            "pki/partners/acme.key",
            "-tls1_3",
            "-ign_eof",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.extend([
            if first { "-sess_out" } else { "-sess_in" }.to_owned(),
            "acme.sess".to_owned(),
        ]);
        let mut child = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(&demo)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl s_client");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            let _ = stdin.write_all(
                b"GET /v1/partner HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            );
        }
        text(&child.wait_with_output().expect("s_client"))
    };
    let first = resume(true);
    assert!(first.contains("HTTP/1.1 200"), "{first}");
    assert!(
        resume(false).contains("Reused, TLSv1.3"),
        "resumption works before"
    );

    // Revoked: the CRL signed again and reloaded; new handshakes fail, the open
    // connection is refused on its next request.
    let out = run(
        "permitgate",
        &[
            "partners",
            "revoke",
            "--config",
            &config,
            "--id",
            "acme",
            "--reason",
            "key-compromise",
            "--ca-key",
            "pki/ca.key",
        ],
        &demo,
    );
    assert!(out.status.success(), "{}", text(&out));
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 3.0)
        .await;
    assert!(
        curl_get(&gw, &demo, "acme", "/v1/partner").is_err(),
        "a new handshake"
    );
    open.post_json(&s.path, &s.body)
        .await
        .problem(403, "certificate-revoked");
    // The HTTP/2 connection too, on its next stream.
    assert_eq!(h2_get(h2.ready().await.expect("ready")).await, 403);
    // And the saved session does not bring it back in: the reload made a new session
    // cache, so it is a full handshake, which fails.
    let after = resume(false);
    assert!(
        !after.contains("Reused") && !after.contains("HTTP/1.1 200"),
        "{after}"
    );
    // The CRL keeps what it listed before, under a higher number.
    let crl_pem = std::fs::read(&crl).expect("crl");
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&crl_pem).expect("pem")
    };
    let (_, parsed) = x509_parser::parse_x509_crl(der.as_ref()).expect("crl");
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()),
        Some("2".to_owned())
    );
    // Everyone else is served as before.
    let (c, k) = gw.cert_paths("bank");
    assert_eq!(gw.attempt(Some((&c, &k))).await, Ok(200));
}

/// A partner renews over the API with curl and an openssl CSR, before its certificate
/// ends: the new certificate works, the old one still does; a CSR for another id is
/// refused naming the field; renewals are limited per day; every renewal is recorded in
/// the registry, so `partners revoke --id` revokes the renewed certificates too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_renews_its_certificate_over_the_api() {
    use crate::common::config_edit;
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let demo = gw.demo.dir.clone();
    let url = format!(
        "https://localhost:{}/v1/partner/certificate",
        gw.addr().port()
    );
    let ca = gw.demo.pki.ca_cert().to_string_lossy().into_owned();
    let renew = |csr_file: &str| -> (String, serde_json::Value) {
        let csr_pem = std::fs::read_to_string(demo.join(csr_file)).expect("csr");
        let body = serde_json::json!({ "csr": csr_pem }).to_string();
        let out = run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code}",
                "--cacert",
                &ca,
                "--cert",
                "pki/partners/bank.crt",
                "--key",
                "pki/partners/bank.key",
                "-H",
                "content-type: application/json",
                "-d",
                &body,
                &url,
            ],
            &demo,
        );
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (json, status) = all
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl: {}", text(&out)));
        if status == "000" {
            panic!("curl: {}", text(&out));
        }
        (
            status.to_owned(),
            serde_json::from_str(json).unwrap_or_default(),
        )
    };
    csr(
        &demo,
        "pki/partners/bank-next",
        "ec",
        "/CN=bank",
        &["-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (status, v) = renew("pki/partners/bank-next.csr");
    assert_eq!(status, "200", "{v}");
    std::fs::write(
        demo.join("pki/partners/bank-next.crt"),
        v["certificate"].as_str().expect("certificate"),
    )
    .expect("write");
    // The new certificate: ninety days, the same partner.
    let me = curl_get(&gw, &demo, "bank-next", "/v1/partner").expect("the new one works");
    let me: serde_json::Value = serde_json::from_str(&me).expect("json");
    assert_eq!(me["id"], "bank");
    assert_eq!(me["certificate"]["serial"], v["serial"]);
    assert!(
        me["certificate"]["days_left"].as_i64().expect("days") >= 89,
        "{me}"
    );
    // The old one still works until its own end.
    let old = curl_get(&gw, &demo, "bank", "/v1/partner").expect("the old one works");
    assert!(old.contains("\"id\":\"bank\""));

    // A CSR naming another partner: refused, naming the field and the rule.
    csr(
        &demo,
        "pki/partners/stolen",
        "ec",
        "/CN=rail-gate",
        &["-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (status, p) = renew("pki/partners/stolen.csr");
    assert_eq!(status, "422", "{p}");
    assert_eq!(p["type"], "urn:permitgate:problem:csr-refused");
    assert_eq!(
        (p["field"].as_str(), p["rule"].as_str()),
        (Some("csr"), Some("partner_csr"))
    );
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"rail-gate\"")),
        "{p}"
    );

    // Four a day (the default): the fifth is refused. (One above, the refused one not
    // counted: three more go through.)
    for _ in 0..3 {
        assert_eq!(renew("pki/partners/bank-next.csr").0, "200");
    }
    let (status, p) = renew("pki/partners/bank-next.csr");
    assert_eq!(status, "429", "{p}");
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("renewals")),
        "{p}"
    );

    // The registry lists the enrolled certificate and the four renewed ones.
    let registry_path = config_edit::registry_path(&gw.config_path).expect("registry");
    let config = gw.config_path.to_string_lossy().into_owned();
    let registered = permitgate::config::Registry::load(&registry_path).expect("registry");
    let bank = registered
        .partners
        .iter()
        .find(|p| p.id == "bank")
        .expect("bank");
    assert_eq!(bank.certificates.len(), 5, "{:?}", bank.certificates);
    assert!(bank
        .certificates
        .iter()
        .any(|c| serde_json::json!(c.serial) == v["serial"]));

    // Revoked by id: every one of them, the renewed ones too.
    gw.use_partner_crl(&[]);
    // Renewals reload the registry too: wait for the effect, not for a reload count.
    let out = run(
        "permitgate",
        &[
            "partners",
            "revoke",
            "--config",
            &config,
            "--id",
            "bank",
            "--ca-key",
            "pki/ca.key",
        ],
        &demo,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("revoked 5 certificate(s)"),
        "{}",
        text(&out)
    );
    let mut refused = false;
    for _ in 0..100 {
        if curl_get(&gw, &demo, "bank-next", "/v1/partner").is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused, "the renewed certificate is revoked");
    assert!(
        curl_get(&gw, &demo, "bank", "/v1/partner").is_err(),
        "and the enrolled one"
    );
    let other = curl_get(&gw, &demo, "rail-gate", "/v1/partner").expect("others served");
    assert!(other.contains("\"id\":\"rail-gate\""), "{other}");
}
