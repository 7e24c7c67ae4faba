//! What a client needs to trust and be let in: a CA made at start, a serving certificate
//! it signs for the addresses the server is reached at, bearer tokens, and the files that
//! hand them over (a kubeconfig, and the service-account files a pod gets mounted at
//! `/var/run/secrets/kubernetes.io/serviceaccount`).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generate the emulated API server's certificates")]
    Cert(#[from] rcgen::Error),
    #[error("set up TLS for the emulated API server")]
    Tls(#[from] rustls::Error),
    #[error("read random bytes for a token from /dev/urandom")]
    Random(#[source] std::io::Error),
    #[error("cannot write {path} (the directory must exist or be creatable, and be writable)")]
    Write {
        path: PathBuf,
        #[source]
        source: unicni_fsutil::WriteError,
    },
}

/// The names every in-cluster client may use for the API server, besides its addresses.
const NAMES: &[&str] = &[
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
];

/// A CA and a serving certificate signed by it.
pub struct Pki {
    /// The CA certificate (PEM): what clients trust.
    pub ca_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pki {
    /// A fresh CA and a serving certificate for `sans` (IP addresses become IP SANs, the
    /// rest DNS names), `127.0.0.1` and the in-cluster names of the API server.
    pub fn generate(sans: &[String]) -> Result<Pki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "unicni-kube-sim-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;

        let mut names: Vec<String> = sans.to_vec();
        for n in ["127.0.0.1"].iter().chain(NAMES) {
            if !names.iter().any(|s| s == n) {
                names.push(n.to_string());
            }
        }
        let key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(names)?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = serving.signed_by(&key, &ca_cert, &ca_key)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// The rustls configuration that serves the certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )?;
        Ok(Arc::new(config))
    }
}

/// A new random bearer token (hex).
pub fn token() -> Result<String, PkiError> {
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(PkiError::Random)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The files a starter of the server reads, written into one directory.
pub struct Handover<'a> {
    pub dir: &'a Path,
    /// Where clients reach the server (`https://IP:PORT`).
    pub server: String,
    pub ca_pem: &'a str,
    pub admin_token: &'a str,
    pub service_account_token: &'a str,
    /// The namespace in `serviceaccount/namespace`.
    pub namespace: &'a str,
}

impl Handover<'_> {
    /// Writes `ca.crt`, `token`, `kubeconfig` and `serviceaccount/{token,ca.crt,namespace}`
    /// (each atomically). `ready` is separate ([`mark_ready`]): it comes last.
    pub fn write(&self) -> Result<(), PkiError> {
        let put = |rel: &str, bytes: &[u8], mode: u32| {
            let path = self.dir.join(rel);
            unicni_fsutil::write_atomic(&path, bytes, mode)
                .map_err(|source| PkiError::Write { path, source })
        };
        put("ca.crt", self.ca_pem.as_bytes(), 0o644)?;
        put("token", self.admin_token.as_bytes(), 0o600)?;
        put("kubeconfig", self.kubeconfig().as_bytes(), 0o600)?;
        put(
            "serviceaccount/token",
            self.service_account_token.as_bytes(),
            0o644,
        )?;
        put("serviceaccount/ca.crt", self.ca_pem.as_bytes(), 0o644)?;
        put("serviceaccount/namespace", self.namespace.as_bytes(), 0o644)?;
        Ok(())
    }

    /// A kubeconfig with the server, its CA inline and the admin token.
    pub fn kubeconfig(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n\
             users:\n- name: admin\n  user:\n    token: {}\n\
             contexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: admin\n\
             current-context: kube-sim\npreferences: {{}}\n",
            self.server, self.admin_token
        )
    }
}

/// Writes `<dir>/ready` (the server address): the last file, a starter polls for it.
pub fn mark_ready(dir: &Path, server: &str) -> Result<(), PkiError> {
    let path = dir.join("ready");
    unicni_fsutil::write_atomic(&path, format!("{server}\n").as_bytes(), 0o644)
        .map_err(|source| PkiError::Write { path, source })
}

/// `https://IP:PORT` for an address.
pub fn server_url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}
