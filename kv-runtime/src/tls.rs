//! Certificates and rustls configs for mutually authenticated links.
//!
//! Every tierkv link is TLS 1.3 inside QUIC with certificates on both sides:
//! a server accepts only clients whose chain ends at the configured CA, and a
//! client accepts only servers whose chain ends there and whose certificate
//! names the address it dialled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why certificates or keys could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {what} from {path}: {message}")]
    Load {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// The material was read but rustls refused it.
    #[error("invalid TLS material: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (an empty CA file, say).
    #[error("invalid CA for client verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// QUIC refused the TLS config.
    #[error("TLS config unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Generating development certificates failed.
    #[error("cannot generate certificates: {0}")]
    Generate(String),
    /// Writing development certificates failed.
    #[error("cannot write certificates to {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Paths of the PEM files a node uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TlsPaths {
    /// The CA certificate(s) that peers' chains must end at.
    pub ca: PathBuf,
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// A node's loaded identity and trust roots.
#[derive(Debug)]
pub struct TlsIdentity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Loads the CA, chain and key from PEM files.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        let ca = load_certs(&paths.ca, "CA certificates")?;
        let chain = load_certs(&paths.cert, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| TlsError::Load {
            what: "private key",
            path: paths.key.clone(),
            message: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert)?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The server side: TLS 1.3, a required client certificate chaining to the CA.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![kv_proto::ALPN.to_vec()];
        Ok(config)
    }

    /// The client side: TLS 1.3, the server verified against the CA, this
    /// node's certificate presented.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![kv_proto::ALPN.to_vec()];
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let load_err = |message: String| TlsError::Load {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| load_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(load_err("no certificates in file".into()));
    }
    Ok(certs)
}

/// The TLS section of every binary's config: either PEM paths, or a
/// directory of development certificates generated on first use.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s), PEM.
    pub ca: Option<PathBuf>,
    /// This node's certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// This node's private key, PEM.
    pub key: Option<PathBuf>,
    /// Generate (or reuse) development certificates in this directory instead.
    pub dev_certs: Option<PathBuf>,
}

impl TlsConfig {
    /// Loads the identity this config names.
    pub fn load(&self) -> Result<TlsIdentity, TlsError> {
        let paths = match (&self.dev_certs, &self.ca, &self.cert, &self.key) {
            (Some(dir), _, _, _) => crate::dev_certs::ensure(dir)?,
            (None, Some(ca), Some(cert), Some(key)) => TlsPaths {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => {
                return Err(TlsError::Load {
                    what: "TLS configuration",
                    path: PathBuf::new(),
                    message: "give --ca, --cert and --key, or --dev-certs DIR for local use".into(),
                });
            }
        };
        TlsIdentity::load(&paths)
    }
}
