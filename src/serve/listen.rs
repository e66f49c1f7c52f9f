//! The accept loop. `axum::serve` runs hyper without a timer, so a client that opens a
//! connection and never finishes its request headers would hold it forever; here hyper's
//! builder gets one, and such a connection is closed after the timeout. Bodies have the
//! same deadline (`http::read_body`). On stop, the listener closes and the open
//! connections finish their responses (graceful shutdown).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Serves `app` on `listener` until `stop` is notified, then waits for the open
/// connections to finish. A client gets `timeout` to send its request headers.
pub async fn serve(listener: TcpListener, app: Router, stop: Arc<Notify>, timeout: Duration) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, go on.
                        eprintln!("qgraph serve: accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // A client that left or sent garbage: hyper already answered or closed.
                    let _ = conn.await;
                });
            }
            _ = stop.notified() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
