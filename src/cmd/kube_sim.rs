//! `unicni kube-sim`: the emulated Kubernetes API server, standalone, over HTTPS.

use anyhow::{Context as _, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_kube_emulator::pki::{self, Handover, Pki};
use unicni_kube_emulator::Emulator;

/// The namespace of the service-account files (where unicni's DaemonSet runs).
const SA_NAMESPACE: &str = "kube-system";

#[derive(clap::Args)]
#[command(
    long_about = "Runs an emulated Kubernetes API server over HTTPS: discovery, \
                  list/watch with resource versions and bookmarks, create/update/patch (merge, \
                  JSON, strategic)/delete, immutable ConfigMaps, label and field selectors, \
                  and request counters at /metrics. kubectl and kube-rs clients work against \
                  it.\n\n\
                  At start it makes a CA and a serving certificate, and writes into --dir: \
                  ca.crt, token (an admin token), kubeconfig (server, CA and token; current \
                  context set), serviceaccount/{token,ca.crt,namespace} (what a pod gets \
                  mounted at /var/run/secrets/kubernetes.io/serviceaccount) and, last, ready. \
                  Namespaces default, kube-system and kube-node-lease exist from the start. \
                  It prints `endpoint=https://ADDR` on stdout and stops on SIGTERM. See \
                  docs/kube-sim.md."
)]
pub struct Args {
    /// Address to serve HTTPS on; port 0 picks a free one.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Directory for the CA, tokens, kubeconfig and the ready mark (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Objects to load at start: JSON or YAML, one object, a v1 List or several YAML
    /// documents. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub seed: Vec<PathBuf>,
    /// Another name or IP address clients reach the server at (a SAN of the serving
    /// certificate). Repeatable.
    #[arg(long, value_name = "NAME|IP")]
    pub san: Vec<String>,
    /// Watch events kept for clients that resume a watch (older: 410 Gone, re-list).
    #[arg(long, value_name = "EVENTS", default_value_t = 10_000)]
    pub history: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listen on {}; is the address in use?", args.listen))?;
    let bound = listener.local_addr().context("the listening address")?;
    // Clients of a wildcard listener reach it over loopback unless told otherwise (--san).
    let reach = match bound.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port()),
        _ => bound,
    };
    let server = pki::server_url(reach);
    let mut sans = vec![reach.ip().to_string()];
    sans.extend(args.san.iter().cloned());
    let pki = Pki::generate(&sans)?;
    let tls = pki.server_config()?;

    let emu = Emulator::new();
    emu.history(args.history);
    // The log is for looking at recent traffic; the counters at /metrics count all of it.
    emu.keep_requests(Some(10_000));
    let admin_token = pki::token()?;
    let sa_token = pki::token()?;
    emu.add_token(&admin_token);
    emu.add_token(&sa_token);
    for ns in ["default", "kube-system", "kube-node-lease"] {
        emu.ensure_namespace(ns);
    }
    for file in &args.seed {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read the seed file {}", file.display()))?;
        let objects = unicni_kube_emulator::parse_objects(&text)
            .with_context(|| format!("seed file {}", file.display()))?;
        let n = emu
            .load(objects)
            .with_context(|| format!("seed file {}", file.display()))?;
        tracing::info!(file = %file.display(), objects = n, "seeded");
    }

    // A ready mark from an earlier run must not be taken for this one.
    let ready = args.dir.join("ready");
    unicni_fsutil::remove_if_present(&ready)
        .with_context(|| format!("remove the old {}", ready.display()))?;
    Handover {
        dir: &args.dir,
        server: server.clone(),
        ca_pem: &pki.ca_pem,
        admin_token: &admin_token,
        service_account_token: &sa_token,
        namespace: SA_NAMESPACE,
    }
    .write()?;
    emu.serve_tls(listener, tls);
    pki::mark_ready(&args.dir, &server)?;
    println!("endpoint={server}");
    tracing::info!(%server, dir = %args.dir.display(), "emulated API server serving");

    super::common::runtime()?.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    unicni_fsutil::remove_if_present(&ready)
        .with_context(|| format!("remove {}", ready.display()))?;
    tracing::info!("emulated API server stopped");
    Ok(ExitCode::SUCCESS)
}
