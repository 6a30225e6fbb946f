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
    assert_eq!(
        serial,
        cert.tbs_certificate.serial.to_str_radix(16).to_uppercase()
    );
    assert_eq!(
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .expect("rfc3339")
            .unix_timestamp(),
        cert.validity().not_after.timestamp()
    );

    // On every answer, refusals too: past its rate, a 429 with Retry-After carries it.
    let s = gw.sample("linked_pair").clone();
    let mut limited = None;
    for _ in 0..20 {
        let r = sandbox.post_json(&s.path, &s.body).await;
        assert_eq!(r.headers[EXPIRES], expires_at);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("five a second: the sandbox is refused within twenty");
    assert!(limited.headers.contains_key("retry-after"));

    // A partner with a year left is not warned.
    let mut bank = gw.client("bank").await;
    let r = bank.get("/v1/partner").await;
    r.assert_ok("bank");
    assert!(!r.headers.contains_key(EXPIRES));
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
