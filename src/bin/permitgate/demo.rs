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
    let config = Config::load(&demo.config)?;
    let published = permitgate::server::check_config(&config)?.published;
    let files = permitgate::verify_site::files(&published.to_json());
    permitgate::verify_site::serve(page_listener, files)
        .context("cannot start the verifier page's thread")?;
    print_tour(&demo, listen, metrics_listen);
    println!(
        "Verifier page (receipts' QR codes open it): http://{page}{}\n",
        permitgate::verify_site::PAGE_PATH
    );
    crate::serve::serve(config)
}

pub fn dev_pki(args: DevPkiArgs) -> anyhow::Result<()> {
    demo::pki::generate(&args.out)?;
    println!(
        "wrote partner CA, server and partner certificates to {}",
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
