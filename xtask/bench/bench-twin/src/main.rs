//! `bench-twin ADDRESS`: bench-echo's handler compiled into actix-web, one worker — the
//! baseline the plugin route is compared with.

use actix_web::{http::header::ContentType, web, App, HttpResponse, HttpServer};

async fn echo(body: web::Bytes) -> HttpResponse {
    match bench_echo::respond(&body) {
        Ok(json) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json),
        Err(error) => HttpResponse::UnprocessableEntity().body(error),
    }
}

fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().route("/api/v1/bench/echo", web::post().to(echo)))
            .workers(1)
            .bind(address)?
            .run()
            .await
    })
}
