//! HTTPS with rustls (TLS 1.2 and 1.3 only) when a certificate and key are configured.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Load a PEM certificate chain and key into an acceptor.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading the private key from {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accept TLS connections until `shutdown` resolves, then wait (up to 30 s) for the
/// connections in flight.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tracker = tokio_util_tracker::Tracker::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let guard = tracker.guard();
        tokio::spawn(async move {
            let _guard = guard;
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracker.wait(Duration::from_secs(30)).await;
    Ok(())
}

/// Counts live connections so shutdown can wait for them.
mod tokio_util_tracker {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[derive(Default, Clone)]
    pub struct Tracker(Arc<(AtomicUsize, tokio::sync::Notify)>);

    pub struct Guard(Arc<(AtomicUsize, tokio::sync::Notify)>);

    impl Tracker {
        pub fn guard(&self) -> Guard {
            self.0 .0.fetch_add(1, Ordering::SeqCst);
            Guard(self.0.clone())
        }

        pub async fn wait(&self, max: Duration) {
            let _ = tokio::time::timeout(max, async {
                loop {
                    let notified = self.0 .1.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if self.0 .0.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    notified.await;
                }
            })
            .await;
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0 .0.fetch_sub(1, Ordering::SeqCst);
            self.0 .1.notify_waiters();
        }
    }
}
