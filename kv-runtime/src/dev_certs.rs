//! Development certificates: one CA and one node certificate, shared by every
//! process of a local stack, generated on first use.
//!
//! The node certificate is valid for both server and client authentication,
//! and names `localhost`, `127.0.0.1`, `::1` and [`DEV_SERVER_NAME`]. Never use
//! these in production: anyone with the directory can join the cluster.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::tls::{TlsError, TlsPaths};

/// The name a client dials when it has no better one.
pub const DEV_SERVER_NAME: &str = "localhost";

/// Returns the paths in `dir`, generating the CA and node certificate first
/// when they are absent. Concurrent callers (several processes started at
/// once) end up with the same files: each generates into a private directory
/// and only the first rename into place wins.
pub fn ensure(dir: &Path) -> Result<TlsPaths, TlsError> {
    let paths = paths_in(dir);
    if paths.ca.exists() && paths.cert.exists() && paths.key.exists() {
        return Ok(paths);
    }
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(write_err(parent))?;
    let staging = tempdir_in(parent).map_err(write_err(parent))?;
    let generated = generate()?;
    for (name, text) in [
        ("ca.pem", &generated.ca_pem),
        ("node.pem", &generated.node_pem),
        ("node.key", &generated.node_key_pem),
    ] {
        let path = staging.join(name);
        std::fs::write(&path, text).map_err(write_err(&path))?;
    }
    if std::fs::rename(&staging, dir).is_err() {
        // Another process won the race, or the directory holds other files:
        // fall back to copying only the missing files in.
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        if !paths.ca.exists() {
            for name in ["ca.pem", "node.pem", "node.key"] {
                let (from, to) = (staging.join(name), dir.join(name));
                std::fs::rename(&from, &to).map_err(write_err(&to))?;
            }
        }
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(paths)
}

/// The file names used inside a dev-certs directory.
pub fn paths_in(dir: &Path) -> TlsPaths {
    TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    }
}

/// A generated CA with one node certificate, as PEM text.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate.
    pub ca_pem: String,
    /// The node certificate, signed by the CA.
    pub node_pem: String,
    /// The node's private key.
    pub node_key_pem: String,
}

/// Generates a fresh CA and node certificate.
pub fn generate() -> Result<Generated, TlsError> {
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tierkv development CA");
    ca_params.distinguished_name = dn;
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;

    let names = vec![
        DEV_SERVER_NAME.to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "tierkv-node".to_string(),
    ];
    let mut node_params = CertificateParams::new(names).map_err(err)?;
    node_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tierkv node");
    node_params.distinguished_name = dn;
    let node_key = KeyPair::generate().map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let node_cert = node_params.signed_by(&node_key, &issuer).map_err(err)?;

    Ok(Generated {
        ca_pem: ca_cert.pem(),
        node_pem: node_cert.pem(),
        node_key_pem: node_key.serialize_pem(),
    })
}

fn tempdir_in(parent: &Path) -> std::io::Result<PathBuf> {
    for attempt in 0..100u32 {
        let dir = parent.join(format!(".tierkv-certs-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free staging directory name"))
}
