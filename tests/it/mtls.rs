//! Only clients with a certificate from the partner CA, for client authentication, get in;
//! a valid certificate that names no configured partner gets a 403.

use crate::common::{Client, TestGateway};
use permitgate::demo::pki::{issue_client, Usage};
use rustls::pki_types::pem::PemObject;
use serde_json::json;

#[tokio::test]
async fn partner_certificate_is_accepted() {
    let gw = TestGateway::start().await;
    let (c, k) = gw.cert_paths("bank");
    assert_eq!(gw.attempt(Some((&c, &k))).await, Ok(200));
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let gw = TestGateway::start().await;
    assert!(gw.attempt(None).await.is_err());
    gw.wait_metric(
        "permitgate_tls_handshake_failures_total{reason=\"no_certificate\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn rogue_ca_certificate_is_refused() {
    let gw = TestGateway::start().await;
    let (c, k) = (gw.demo.pki.rogue_cert(), gw.demo.pki.rogue_key());
    assert!(gw.attempt(Some((&c, &k))).await.is_err());
    gw.wait_metric(
        "permitgate_tls_handshake_failures_total{reason=\"unknown_ca\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn certificate_without_client_auth_usage_is_refused() {
    let gw = TestGateway::start().await;
    // serverAuth only, and no extendedKeyUsage extension at all (webpki reads that as
    // "any use"; the gateway requires clientAuth stated).
    for (n, usage) in [(1.0, Usage::ServerAuthOnly), (2.0, Usage::Unstated)] {
        let (c, k) = (gw.dir.path().join("u.crt"), gw.dir.path().join("u.key"));
        issue_client(&gw.demo.pki, Some("bank"), usage, &c, &k).expect("issue");
        let pem = std::fs::read_to_string(&c).expect("cert");
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
        let eku = x.extended_key_usage().expect("extension parses");
        assert_eq!(eku.is_none(), usage == Usage::Unstated, "{usage:?}");
        assert!(gw.attempt(Some((&c, &k))).await.is_err(), "{usage:?}");
        gw.wait_metric(
            "permitgate_tls_handshake_failures_total{reason=\"bad_usage\"}",
            n,
        )
        .await;
    }
}

#[tokio::test]
async fn trusted_certificate_of_an_unconfigured_partner_gets_403() {
    let gw = TestGateway::start().await;
    let (c, k) = (gw.dir.path().join("x.crt"), gw.dir.path().join("x.key"));
    issue_client(&gw.demo.pki, Some("stranger"), Usage::ClientAuth, &c, &k).expect("issue");
    let mut client = Client::connect(gw.addr(), &gw.demo.pki.ca_cert(), Some((&c, &k)))
        .await
        .expect("handshake succeeds: the CA is trusted");
    let r = client
        .post_json(
            "/v1/link-checks",
            &json!({"travel_permit": "H12345678", "residence_permit": "810000199001011230"}),
        )
        .await;
    let v = r.problem(403, "unknown-partner");
    assert!(
        v["detail"].as_str().is_some_and(|d| d.contains("stranger")),
        "{v}"
    );
    gw.wait_metric(
        "permitgate_requests_total{outcome=\"unknown_partner\",partner=\"unknown\",route=\"link_check\"}",
        1.0,
    )
    .await;

    // No SAN URI and no CN: no identity at all.
    let (c, k) = (
        gw.dir.path().join("anon.crt"),
        gw.dir.path().join("anon.key"),
    );
    issue_client(&gw.demo.pki, None, Usage::ClientAuth, &c, &k).expect("issue");
    let mut anon = Client::connect(gw.addr(), &gw.demo.pki.ca_cert(), Some((&c, &k)))
        .await
        .expect("handshake");
    anon.post_json("/v1/document-status", &json!({"number": "H12345678"}))
        .await
        .problem(403, "unknown-partner");
}
