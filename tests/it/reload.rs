//! Reloads over real mTLS: CRLs, server certificates and the partner table change while
//! connections stay open; a broken file is refused and counted, and the old one kept.

use crate::common::config_edit::{self, edit_file};
use crate::common::{metric_value, TestGateway};
use permitgate::demo::pki;

#[tokio::test]
async fn a_crl_picked_up_from_disk_refuses_the_revoked_partner_old_and_new_connections() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let link = gw.sample("linked_pair").clone();
    let mut open_before = gw.client("bank").await;
    assert_eq!(
        open_before.post_json(&link.path, &link.body).await.status,
        200
    );

    let (bank_cert, bank_key) = gw.cert_paths("bank");
    gw.use_partner_crl(&[&bank_cert]);
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;

    // New handshakes with the revoked certificate fail, and say why.
    assert!(gw.attempt(Some((&bank_cert, &bank_key))).await.is_err());
    gw.wait_metric(
        "permitgate_tls_handshake_failures_total{reason=\"revoked\"}",
        1.0,
    )
    .await;
    // The connection opened before the CRL is refused per request, not left in.
    let r = open_before.post_json(&link.path, &link.body).await;
    r.problem(403, "certificate-revoked");
    // Everyone else is served as before.
    let (c, k) = gw.cert_paths("rail-gate");
    assert_eq!(gw.attempt(Some((&c, &k))).await, Ok(200));
}

#[tokio::test]
async fn a_broken_file_is_refused_counted_and_the_old_one_kept() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let (bank_cert, bank_key) = gw.cert_paths("bank");
    let cert = gw.demo.pki.server_cert();
    let good = std::fs::read(&cert).expect("read cert");
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n").expect("break");
    gw.wait_metric("permitgate_reloads_total{result=\"failed\"}", 1.0)
        .await;
    // Still serving with the certificate loaded before.
    assert_eq!(gw.attempt(Some((&bank_cert, &bank_key))).await, Ok(200));
    // A broken partner table is refused the same way.
    std::fs::write(&cert, &good).expect("restore");
    let rename = |from: &'static str, to: &'static str| {
        config_edit::partner(from, move |p| {
            p.insert("id".into(), to.into());
        })
    };
    edit_file(&gw.config_path, vec![rename("bank", "Bank Ltd")]);
    gw.wait_metric("permitgate_reloads_total{result=\"failed\"}", 2.0)
        .await;
    let link = gw.sample("linked_pair").clone();
    assert_eq!(
        gw.client("bank")
            .await
            .post_json(&link.path, &link.body)
            .await
            .status,
        200
    );
    // Once the files are right again, the reload goes through.
    edit_file(&gw.config_path, vec![rename("Bank Ltd", "bank")]);
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_reloads_total{result=\"failed\"}"),
        2.0,
        "each broken change counts once, not once per poll"
    );
}

#[tokio::test]
async fn a_server_certificate_that_parses_but_does_not_verify_is_refused() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 0").await;
    let cert = gw.demo.pki.server_cert();
    let good = std::fs::read_to_string(&cert).expect("read cert");
    let served = gw.server_certificate().await;
    crate::common::alter_certificate_signature(&cert);
    let altered = permitgate::tls::load_certs(&cert).expect("still PEM");
    assert!(
        x509_parser::parse_x509_certificate(altered[0].as_ref()).is_ok(),
        "parses"
    );
    assert!(
        gw.gateway.reload().is_err(),
        "a certificate that does not verify"
    );
    // A certificate with some other key than the configured one.
    std::fs::write(&cert, &good).expect("restore");
    let key = gw.demo.pki.server_key();
    let good_key = std::fs::read(&key).expect("key");
    std::fs::copy(gw.demo.pki.partner_key("bank"), &key).expect("other key");
    assert!(gw.gateway.reload().is_err(), "a key that does not match");
    gw.wait_metric("permitgate_reloads_total{result=\"failed\"}", 2.0)
        .await;
    // New clients still get the certificate in use before, and succeed.
    assert_eq!(gw.server_certificate().await, served);
    let (c, k) = gw.cert_paths("bank");
    assert_eq!(gw.attempt(Some((&c, &k))).await, Ok(200));
    std::fs::write(&key, good_key).expect("restore key");
    assert!(gw.gateway.reload().is_ok());
}

#[tokio::test]
async fn a_new_server_certificate_is_used_for_new_handshakes_without_dropping_connections() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 0").await;
    let link = gw.sample("linked_pair").clone();
    let mut open_before = gw.client("bank").await;
    assert_eq!(
        open_before.post_json(&link.path, &link.body).await.status,
        200
    );
    let before = metric_value(
        &gw.metrics().await,
        "permitgate_certificate_expiry_timestamp_seconds{certificate=\"server\"}",
    );

    let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let dir = gw.demo.pki.dir.clone();
    pki::issue_server(
        &gw.demo.pki,
        not_after,
        &dir.join("new.crt"),
        &dir.join("new.key"),
    )
    .expect("issue");
    std::fs::rename(dir.join("new.key"), gw.demo.pki.server_key()).expect("key");
    std::fs::rename(dir.join("new.crt"), gw.demo.pki.server_cert()).expect("cert");
    gw.gateway.reload().expect("reload");

    let after = metric_value(
        &gw.metrics().await,
        "permitgate_certificate_expiry_timestamp_seconds{certificate=\"server\"}",
    );
    assert_eq!(after, not_after.unix_timestamp() as f64);
    assert_ne!(before, after);
    // The old connection still answers; new ones handshake with the new certificate.
    assert_eq!(
        open_before.post_json(&link.path, &link.body).await.status,
        200
    );
    let presented = gw.server_certificate().await;
    let on_disk = permitgate::tls::load_certs(&gw.demo.pki.server_cert()).expect("load");
    assert_eq!(presented, on_disk[0]);
}

#[tokio::test]
async fn a_partner_table_change_applies_to_open_connections_on_their_next_request() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 0").await;
    let tp = gw.sample("temp_permit_valid").clone();
    let mut gate = gw.client("rail-gate").await;
    assert_eq!(gate.post_json(&tp.path, &tp.body).await.status, 200);

    edit_file(
        &gw.config_path,
        vec![config_edit::partner("rail-gate", |p| {
            p.insert("scopes".into(), config_edit::value("[\"document_status\"]"));
        })],
    );
    gw.gateway.reload().expect("reload");
    gate.post_json(&tp.path, &tp.body)
        .await
        .problem(403, "scope-missing");

    // Removing a partner altogether: its open connection is now an unknown partner.
    edit_file(
        &gw.config_path,
        vec![config_edit::partner("rail-gate", |p| {
            p.insert("id".into(), "rail-gate-old".into());
        })],
    );
    gw.gateway.reload().expect("reload");
    gate.post_json(&tp.path, &tp.body)
        .await
        .problem(403, "unknown-partner");
}

/// A new server certificate copied before its key: the reload waits for the key (up to
/// `PAIR_WAIT`) instead of refusing, and takes the pair once both are there. A key that
/// never comes is refused once the wait is over; `permitgate_config_last_reload_successful`
/// says so until a reload goes through.
#[tokio::test]
async fn a_certificate_copied_before_its_key_is_waited_for() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let served = gw.server_certificate().await;
    let dir = gw.demo.pki.dir.clone();
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    pki::issue_server(
        &gw.demo.pki,
        not_after,
        &dir.join("new.crt"),
        &dir.join("new.key"),
    )
    .expect("issue");
    let key = gw.demo.pki.server_key();
    let old_key = std::fs::read(&key).expect("key");

    std::fs::copy(dir.join("new.crt"), gw.demo.pki.server_cert()).expect("cert first");
    gw.wait_metric("permitgate_reload_pair_waits_total", 1.0)
        .await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_reloads_total{result=\"failed\"}"),
        0.0
    );
    assert_eq!(
        metric_value(&m, "permitgate_config_last_reload_successful"),
        1.0
    );
    assert_eq!(
        gw.server_certificate().await,
        served,
        "the old pair still serves"
    );

    std::fs::copy(dir.join("new.key"), &key).expect("then the key");
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;
    assert_ne!(gw.server_certificate().await, served, "the new pair serves");
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "permitgate_reloads_total{result=\"failed\"}"),
        0.0
    );

    // The old key back, and no certificate for it: refused once the wait is over.
    std::fs::write(&key, &old_key).expect("mismatch");
    let wait = permitgate::server::PAIR_WAIT + std::time::Duration::from_secs(5);
    gw.wait_metric_within("permitgate_reloads_total{result=\"failed\"}", 1.0, wait)
        .await;
    gw.wait_metric("permitgate_config_last_reload_successful", 0.0)
        .await;
    let (c, k) = gw.cert_paths("bank");
    assert_eq!(
        gw.attempt(Some((&c, &k))).await,
        Ok(200),
        "served meanwhile"
    );
    std::fs::copy(dir.join("new.key"), &key).expect("mended");
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 2.0)
        .await;
    gw.wait_metric("permitgate_config_last_reload_successful", 1.0)
        .await;
}

/// A change a reload cannot apply (a `[server]` limit) is not silently ignored: the reload
/// goes through for the rest and `permitgate_config_restart_needed` says a restart is due.
#[tokio::test]
async fn a_change_only_a_restart_applies_is_named() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "permitgate_config_restart_needed"), 0.0);
    edit_file(
        &gw.config_path,
        vec![config_edit::set("server.max_body_bytes", 100_000)],
    );
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;
    gw.wait_metric("permitgate_config_restart_needed", 1.0)
        .await;
}

/// A receipt key replaced under the same file name (a Secret updated in place) is picked
/// up by the file watcher like a certificate: the next receipts are signed by it and
/// `/v1/keys` publishes it.
#[tokio::test]
async fn a_key_file_replaced_in_place_is_reloaded() {
    let gw = TestGateway::with_server("reload_poll_interval_ms = 100").await;
    let receipt_ids = |ring: &permitgate::keyring::Keyring| -> Vec<String> {
        ring.keys()
            .iter()
            .filter(|k| k.key_use == permitgate::keyring::KeyUse::Receipt)
            .map(|k| k.id.to_string())
            .collect()
    };
    let (_, before) = gw.keys_file().await;
    let fresh = gw.dir.path().join("fresh");
    crate::common::assert_success(&crate::common::permitgate(&[
        "keys",
        "ed25519",
        "--out",
        fresh.to_str().expect("utf8"),
    ]));
    std::fs::copy(gw.dir.path().join("fresh.key"), gw.demo.receipt_key()).expect("replace");
    gw.wait_metric("permitgate_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let (_, after) = gw.keys_file().await;
    assert_ne!(receipt_ids(&before), receipt_ids(&after));
    let fresh_id = permitgate::key_files::verifying_key_id(
        &permitgate::key_files::load_verifying_key(&gw.dir.path().join("fresh.pub")).expect("pub"),
    );
    assert_eq!(receipt_ids(&after), [fresh_id.to_string()]);
}
