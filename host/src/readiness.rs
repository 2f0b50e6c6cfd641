//! Readiness: whether this instance should be sent traffic. `GET /readyz` answers 200 only
//! once startup has finished and the database answers, and 503 from the moment shutdown
//! begins (before the listener closes, so a load balancer stops sending first). Liveness
//! (`/healthz`) is separate: it stays 200 while the process serves at all.

use std::{
    sync::atomic::{AtomicU8, Ordering},
    time::Duration,
};

use actix_web::{http::StatusCode, web::Bytes, HttpResponse};

use crate::{db::Database, http_error};

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// How long `/readyz` waits for the database before calling it unready.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The instance's phase: starting, ready, draining.
#[derive(Debug, Default)]
pub struct Readiness {
    phase: AtomicU8,
}

impl Readiness {
    /// Startup has finished: plugins are enabled and events flow.
    pub fn set_ready(&self) {
        let _ = self
            .phase
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Shutdown has begun; never undone.
    pub fn set_draining(&self) {
        self.phase.store(DRAINING, Ordering::SeqCst);
    }

    /// Whether shutdown has begun (answers then ask clients to close their connections).
    pub fn is_draining(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == DRAINING
    }

    /// `GET /readyz`.
    pub async fn answer(&self, database: &Database) -> HttpResponse {
        match self.phase.load(Ordering::SeqCst) {
            STARTING => {
                return http_error::detail_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting: plugins are still being enabled",
                )
            }
            DRAINING => {
                return http_error::detail_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting down: finishing the requests in flight",
                )
            }
            _ => {}
        }
        match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, database.ping()).await {
            Ok(Ok(())) => HttpResponse::Ok()
                .content_type("application/json")
                .body(Bytes::from_static(br#"{"status":"ready"}"#)),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "readiness: the database did not answer: {error}");
                http_error::detail_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is not answering",
                )
            }
            Err(_) => {
                tracing::warn!(
                    "readiness: the database did not answer within {} s",
                    DATABASE_CHECK_TIMEOUT.as_secs()
                );
                http_error::detail_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is not answering",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status_and_body(response: HttpResponse) -> (u16, String) {
        let status = response.status().as_u16();
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn readiness_is_503_while_starting_200_when_ready_and_503_for_good_once_draining() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let path =
                std::env::temp_dir().join(format!("pixsim7-readiness-{}.db", std::process::id()));
            let database = Database::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let readiness = Readiness::default();
            let (status, body) = status_and_body(readiness.answer(&database).await).await;
            assert_eq!(status, 503);
            assert!(body.contains("starting"), "{body}");
            readiness.set_ready();
            assert_eq!(
                status_and_body(readiness.answer(&database).await).await,
                (200, r#"{"status":"ready"}"#.to_owned())
            );
            readiness.set_draining();
            readiness.set_ready();
            let (status, body) = status_and_body(readiness.answer(&database).await).await;
            assert_eq!(status, 503, "draining is never undone");
            assert!(body.contains("shutting down"), "{body}");
            assert!(readiness.is_draining());
            database.close().await;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        });
    }
}
