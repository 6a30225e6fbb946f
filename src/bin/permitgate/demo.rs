//! `permitgate demo` (create demo data once, then serve it) and `permitgate dev-pki`.

use std::net::SocketAddr;

use anyhow::Context;
use std::path::PathBuf;

use permitgate::config::Config;
use permitgate::demo::{self, DemoOptions};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "var/demo")]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,
    /// Residents in the synthetic export (only used when the data is first created).
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Where the verifier page is served (plain HTTP, this machine only); receipts' QR
    /// codes lead there.
    #[arg(long, default_value = "127.0.0.1:8080")]
    verify_listen: SocketAddr,
    /// Where the origin serves the authority's API (issuing and revoking temporary
    /// permits, for the authority's callers only).
    #[arg(long, default_value = "127.0.0.1:8446")]
    origin_listen: SocketAddr,
}

#[derive(clap::Args)]
pub struct DevPkiArgs {
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        dir,
        listen,
        metrics_listen,
        records,
        verify_listen,
        origin_listen,
    } = args;
    // Bound first: the config names the page's address (port 0 picks one).
    let page_listener = std::net::TcpListener::bind(verify_listen).with_context(|| {
        format!("cannot listen on {verify_listen} for the verifier page (--verify-listen)")
    })?;
    let page = page_listener.local_addr()?;
    let demo = demo::prepare(
        &dir,
        &DemoOptions {
            records,
            listen,
            metrics_listen,
            seed: 2026,
            verify_listen: Some(page),
            origin_listen,
        },
    )?;
    if demo.created {
        println!(
            "Created demo data in {} ({records} residents).",
            dir.display()
        );
    } else {
        println!(
            "Reusing demo data in {} (delete it to start afresh).",
            dir.display()
        );
    }
    match &demo.config_written {
        demo::ConfigWritten::Written => {}
        demo::ConfigWritten::KeptEdited { new } => tracing::warn!(
            config = %demo.config.display(),
            new = %new.display(),
            "the config was edited since the demo wrote it: serving it as edited (the addresses \
             given on this command line may not be in it); the config this start would have \
             written is beside it: compare, or delete the edited one to take the new one"
        ),
        demo::ConfigWritten::Replaced { old } => tracing::warn!(
            config = %demo.config.display(),
            old = %old.display(),
            "replaced a config the demo has no record of writing; the one that was there is kept"
        ),
    }
    let config = Config::load(&demo.config)?;
    let published = permitgate::server::check_config(&config)?.published;
    let files = permitgate::verify_site::files(&published.to_json());
    let revocations = demo.repo().join(permitgate::verify_site::REVOCATIONS_FILE);
    permitgate::verify_site::serve(page_listener, files, Some(revocations))
        .context("cannot start the verifier page's thread")?;
    let origin = crate::origin::spawn(&config).with_context(|| {
        format!("cannot serve the authority's API on {origin_listen} (--origin-listen)")
    })?;
    print_tour(&demo, listen, metrics_listen);
    print_origin_tour(&demo, origin);
    println!(
        "Verifier page (receipts' QR codes open it): http://{page}{}\n",
        permitgate::verify_site::PAGE_PATH
    );
    crate::serve::serve(config)
}

pub fn dev_pki(args: DevPkiArgs) -> anyhow::Result<()> {
    let pki = demo::pki::generate(&args.out)?;
    demo::pki::enrol_partners(&pki)?;
    println!(
        "wrote partner CA, server and partner certificates, and the partner registry {}, to {}",
        pki.registry().display(),
        args.out.display()
    );
    Ok(())
}

fn print_tour(demo: &demo::Demo, listen: SocketAddr, metrics: SocketAddr) {
    let pki = &demo.pki;
    let host = if listen.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        listen.ip().to_string()
    };
    println!("\nTry it (samples.json lists these with their expected answers):\n");
    for s in &demo.samples {
        println!("# {}: {}", s.name, s.description);
        println!(
            "curl --cacert {} --cert {} --key {} -H 'content-type: application/json' -d '{}' https://{host}:{}{}\n",
            pki.ca_cert().display(),
            pki.partner_cert(&s.partner).display(),
            pki.partner_key(&s.partner).display(),
            s.body,
            listen.port(),
            s.path
        );
    }
    println!(
        "# refused: a certificate from another CA\ncurl --cacert {} --cert {} --key {} https://{host}:{}/healthz\n",
        pki.ca_cert().display(),
        pki.rogue_cert().display(),
        pki.rogue_key().display(),
        listen.port()
    );
    println!("Metrics: curl http://{metrics}/metrics");
    println!(
        "Config:  {} (serve it with: permitgate serve --config {})\n",
        demo.config.display(),
        demo.config.display()
    );
}

/// How an office issues, looks up and revokes a temporary permit through the origin.
fn print_origin_tour(demo: &demo::Demo, origin: SocketAddr) {
    let pki = &demo.pki;
    let curl = format!(
        "curl --cacert {} --cert {} --key {}",
        pki.ca_cert().display(),
        pki.caller_cert("desk-01").display(),
        pki.caller_key("desk-01").display()
    );
    let number = demo
        .samples
        .iter()
        .find(|s| s.name == "travel_permit_lost_status")
        .and_then(|s| s.body["number"].as_str())
        .unwrap_or("H12345678");
    println!("The authority's API (origin), for the authority's own callers:\n");
    println!(
        "# issue a temporary permit (the holder's travel permit is reported lost); a retry with the same Idempotency-Key gets the same permit\n{curl} -H 'content-type: application/json' -H 'Idempotency-Key: desk-01-0001' -d '{{\"travel_permit\":\"{number}\",\"name\":\"CHAN Tai Man\",\"reason\":\"lost\",\"officer\":\"E1024\"}}' https://localhost:{}/v1/authority/temporary-permits\n",
        origin.port()
    );
    println!(
        "# today's permits (Beijing time), newest first; revoke one with POST .../<permit_id>/revocation\n{curl} https://localhost:{}/v1/authority/temporary-permits?issued_on=$(TZ=Asia/Shanghai date +%F)\n",
        origin.port()
    );
}
