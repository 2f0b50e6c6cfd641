//! Benchmark plugin `bench-echo`: `POST /api/v1/bench/echo` parses a small JSON body and
//! answers a small JSON body. [`respond`] is the whole handler; `bench-twin` compiles the very
//! same function into a plain actix binary, so the two differ only by the host's forwarding.

use plugin_api::prelude::*;

/// The request body.
#[derive(Deserialize)]
pub struct EchoRequest {
    player: String,
    score: i64,
    tags: Vec<String>,
}

/// The response body.
#[derive(Serialize)]
pub struct EchoResponse<'a> {
    player: &'a str,
    score_doubled: i64,
    tag_count: usize,
    ok: bool,
}

/// The handler's work: JSON in, JSON out (`Err` for a body that does not parse).
pub fn respond(body: &[u8]) -> Result<Vec<u8>, String> {
    let request: EchoRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let response = EchoResponse {
        player: &request.player,
        score_doubled: request.score.saturating_mul(2),
        tag_count: request.tags.len(),
        ok: true,
    };
    serde_json::to_vec(&response).map_err(|e| e.to_string())
}

/// The plugin.
#[derive(Default)]
pub struct BenchEcho;

impl Plugin for BenchEcho {
    const MANIFEST: PluginManifest =
        PluginManifest::new("bench-echo", "Benchmark echo", env!("CARGO_PKG_VERSION"));

    const ROUTES: &'static [Route<Self>] =
        &[Route::post("/bench/echo", "Echoes a small JSON body", echo).public()];
}

async fn echo(_: &BenchEcho, request: Request<'_>) -> Response {
    match respond(request.body()) {
        Ok(body) => Response::new(200)
            .with_header("content-type", "application/json")
            .with_body(body),
        Err(error) => {
            ApiError::validation("json_invalid", vec![json!("body")], error).into_response()
        }
    }
}

export_plugin!(BenchEcho);
