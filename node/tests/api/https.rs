//! HTTPS with the hospital's own certificate: the room page and the API
//! over TLS, a client that trusts that certificate gets them, plain HTTP
//! on the same port gets nothing, and a key that does not go with the
//! certificate, or a missing file, is refused at start naming the file.

use super::*;
use konsilium_node::http::{ApiError, TlsFiles};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1, written as PEM files.
fn certificate(dir: &std::path::Path, name: &str) -> (TlsFiles, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let files = TlsFiles {
        certificate: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.certificate, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.key_pair.serialize_pem()).unwrap();
    (files, made.cert.der().clone())
}

fn config(tls: TlsFiles) -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        users: vec![User::with_token("Dr. Ivanova", Role::Physician, "phys")],
        upload_dir: None,
        tls: Some(tls),
    }
}

/// One HTTP/1.1 request over TLS, trusting only `root`; the response's text.
async fn get_over_tls(addr: SocketAddr, root: CertificateDer<'static>, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_page_and_the_api_are_served_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (regional, federal) = regional_and_federal(dir.path(), "Regional hospital").await;
    let (files, root) = certificate(dir.path(), "api");
    let (addr, _task) = api::serve(regional.clone(), config(files.clone()))
        .await
        .unwrap();

    let id = "0123456789abcdef0123456789abcdef";
    let page = get_over_tls(addr, root.clone(), &format!("/consultations/{id}/room")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Konsilium video room"));
    let refused = get_over_tls(addr, root, "/consultations").await;
    assert!(
        refused.starts_with("HTTP/1.1 401"),
        "a token is still needed: {refused}"
    );

    // Plain HTTP on the HTTPS port is not answered as HTTP.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // A key from another certificate, and a missing file, are refused by name.
    let (other, _) = certificate(dir.path(), "other");
    let mismatched = TlsFiles {
        certificate: files.certificate.clone(),
        key: other.key,
    };
    let e = api::serve(regional.clone(), config(mismatched))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ApiError::Tls { path, .. } if path.ends_with("other.key")),
        "{e}"
    );
    let missing = TlsFiles {
        certificate: dir.path().join("nowhere.crt"),
        key: files.key,
    };
    let e = api::serve(regional.clone(), config(missing))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nowhere.crt"), "{e}");
    shut_down([regional, federal]).await;
}
