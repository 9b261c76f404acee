//! Test certificates: a temp dir, a self-signed certificate for `localhost`
//! and `127.0.0.1` written as PEM files, and a rustls client trusting it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringgate-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, as PEM files.
pub struct TestCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub der: rustls_pki_types::CertificateDer<'static>,
}

pub fn write_cert(dir: &Path, name: &str) -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen generates a certificate");
    let cert_file = dir.join(format!("{name}-cert.pem"));
    let key_file = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&key_file, ck.key_pair.serialize_pem()).unwrap();
    TestCert {
        cert_file,
        key_file,
        der: ck.cert.der().clone(),
    }
}

pub fn client_tls(cert: &TestCert) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
