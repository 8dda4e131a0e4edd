//! Relay's Redis connection over TLS (`rediss://` and `REDIS_CA_FILE`) against a real
//! `redis-server` serving only TLS, with a certificate from a CA the test makes (`openssl`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use silo_relay::redis_conn::RedisHandle;
use silo_testkit::{free_addr, unique_suffix, wait};

/// A CA and a server certificate for 127.0.0.1, written into `dir`.
fn make_certificates(dir: &Path, ca: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{ca}.key");
    let ca_crt = format!("{ca}.crt");
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=relay-test-ca"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca_crt]);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    args.extend(["-addext", "keyUsage=critical,keyCertSign"]);
    run(&args);
    if ca != "ca" {
        return;
    }
    let mut args = vec!["req", "-subj", "/CN=127.0.0.1"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(&[
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
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}

struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-server` with TLS only (no plain port), a password, no persistence.
fn start_tls_redis() -> TlsRedis {
    let dir = std::env::temp_dir().join(format!("relay-redis-tls-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    make_certificates(&dir, "ca");
    make_certificates(&dir, "other-ca");
    let port = free_addr().port();
    let child = Command::new("redis-server")
        .current_dir(&dir)
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args([
            "--requirepass",
            "tls-secret",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server (installed by e2e/services/up.sh)");
    TlsRedis { child, port, dir }
}

async fn ping(url: &str, ca: Option<&Path>) -> Result<(), String> {
    let redis = RedisHandle::new(url, ca, "tls-test:", Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    redis.ping().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn relay_talks_to_redis_over_tls_checking_the_servers_certificate() {
    let server = start_tls_redis();
    let url = format!("rediss://:tls-secret@127.0.0.1:{}/0", server.port);
    let ca = server.dir.join("ca.crt");
    // With the CA that signed the server's certificate: connected (retried until the server
    // listens).
    wait::until(
        "a TLS PING with the server's CA",
        Duration::from_secs(20),
        || {
            let (url, ca) = (url.clone(), ca.clone());
            async move { ping(&url, Some(&ca)).await }
        },
    )
    .await;
    // Another CA, or the system's roots: the certificate is refused, never trusted blindly.
    let other = server.dir.join("other-ca.crt");
    let refused = ping(&url, Some(&other))
        .await
        .expect_err("a foreign CA must fail");
    assert!(refused.contains("Redis unavailable"), "{refused}");
    let refused = ping(&url, None)
        .await
        .expect_err("the system's roots must fail");
    assert!(refused.contains("Redis unavailable"), "{refused}");
    // A missing CA file is named at start.
    let missing = server.dir.join("nope.crt");
    let err = ping(&url, Some(&missing)).await.expect_err("no CA file");
    assert!(err.contains("nope.crt"), "{err}");
}
