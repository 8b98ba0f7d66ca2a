//! HTTPS with a configured certificate: a client that trusts it gets through; plain HTTP
//! to the TLS port does not.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_scheme(
        &data,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        "https",
    );
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let r = trusted.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = trusted
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(&server.admin)
        .json(&json!([mat("tls-1")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A client that does not trust the certificate is refused by its own TLS stack.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_err());
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[test]
fn tls_needs_both_cert_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("tls_cert and tls_key must be given together"));
}
