//! Development certificates: one CA and one node certificate, shared by every
//! process of a local stack, generated on first use.
//!
//! The node certificate is valid for both server and client authentication,
//! and names `localhost`, `127.0.0.1`, `::1` and [`DEV_SERVER_NAME`]. Never use
//! these in production: anyone with the directory can join the cluster.

use std::path::Path;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::tls::{TlsError, TlsPaths};

/// The name a client dials when it has no better one.
pub const DEV_SERVER_NAME: &str = "localhost";

/// Returns the paths in `dir`, generating the CA and node certificate first
/// when they are absent. Concurrent callers (several processes started at
/// once on a shared directory, such as a volume) end up with the same files:
/// one generates them while holding a lock file in `dir`, the others wait.
/// Everything is written inside `dir`, so it works when `dir` is a mount point.
pub fn ensure(dir: &Path) -> Result<TlsPaths, TlsError> {
    let paths = paths_in(dir);
    let complete = || paths.ca.exists() && paths.cert.exists() && paths.key.exists();
    if complete() {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let lock = dir.join(".generating");
    let mut deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {
                let written = if complete() { Ok(()) } else { write_new(dir) };
                let _ = std::fs::remove_file(&lock);
                return written.map(|()| paths);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if complete() {
                    return Ok(paths);
                }
                if Instant::now() > deadline {
                    // Whoever held the lock died before finishing: take over.
                    let _ = std::fs::remove_file(&lock);
                    deadline = Instant::now() + LOCK_PATIENCE;
                    continue;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(write_err(&lock)(e)),
        }
    }
}

/// How long a caller waits for another to finish generating.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.to_owned();
    move |source| TlsError::Write { path, source }
}

/// Writes a fresh set into `dir`, each file under a temporary name first and
/// the CA last, so that a complete-looking set is never half-written. The
/// private key is readable by its owner only.
fn write_new(dir: &Path) -> Result<(), TlsError> {
    let generated = generate()?;
    for (name, text, private) in [
        ("node.key", &generated.node_key_pem, true),
        ("node.pem", &generated.node_pem, false),
        ("ca.pem", &generated.ca_pem, false),
    ] {
        let staged = dir.join(format!(".{name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&staged).map_err(write_err(&staged))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(write_err(&staged))?;
        let target = dir.join(name);
        std::fs::rename(&staged, &target).map_err(write_err(&target))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_callers_share_one_generated_set() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let cas: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let paths = ensure(&certs).expect("certificates");
                        std::fs::read_to_string(paths.ca).expect("ca readable")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread ran"))
                .collect()
        });
        assert!(cas.iter().all(|ca| ca == &cas[0]), "one CA for all");
        let names: Vec<_> = std::fs::read_dir(&certs)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["ca.pem", "node.key", "node.pem"], "no leftovers");
        crate::tls::TlsIdentity::load(&paths_in(&certs)).expect("a usable identity");
    }

    #[cfg(unix)]
    #[test]
    fn the_private_key_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ensure(dir.path()).expect("certificates in an existing directory");
        let mode = std::fs::metadata(paths.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_complete_set_is_used_as_it_is_even_under_a_leftover_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_new(dir.path()).expect("written");
        std::fs::write(dir.path().join(".generating"), b"").expect("leftover lock");
        let before = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca");
        let paths = ensure(dir.path()).expect("found");
        assert_eq!(std::fs::read_to_string(paths.ca).expect("ca"), before);
    }
}
