//! A throwaway certificate authority and a server certificate signed by it, made with the
//! `openssl` command, for stores that serve TLS in the tests.

use std::path::Path;
use std::process::Command;

use crate::Error;

/// PEM files of a CA and of a server certificate (with its key) for some DNS names.
pub struct ServerTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), Error> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            Error::Unexpected(format!(
                "cannot run openssl ({e}); install it (apt-get install openssl)"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Unexpected(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A new CA (P-256, valid two days) and a server certificate it signs for `dns_names`.
pub fn server_tls(dns_names: &[&str]) -> Result<ServerTls, Error> {
    let dir = std::env::temp_dir().join(format!(
        "silo-e2e-tls-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Unexpected(e.to_string()))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=silo-e2e-ca"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &ca)?;
    let subject = format!("/CN={}", dns_names.first().copied().unwrap_or("localhost"));
    let mut csr = vec!["req", "-subj", &subject];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&dir, &csr)?;
    let san: Vec<String> = dns_names.iter().map(|n| format!("DNS:{n}")).collect();
    let ext = format!(
        "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        san.join(",")
    );
    std::fs::write(dir.join("server.ext"), ext).map_err(|e| Error::Unexpected(e.to_string()))?;
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| Error::Unexpected(format!("{name}: {e}")))
    };
    let tls = ServerTls {
        ca_pem: read("ca.crt")?,
        cert_pem: read("server.crt")?,
        key_pem: read("server.key")?,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(tls)
}
