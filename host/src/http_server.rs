//! The HTTP server: actix's HTTP/1 service on actix's server, built by hand (as
//! `actix_web::HttpServer` builds it) so that each connection passes through
//! [`DetailedErrors`]. actix-http answers some requests itself, before any service sees them
//! — 400 for a request it cannot parse, 408 for a head that does not arrive in time, 431 for
//! a head too large — with an empty body; on their way out, those answers get the
//! `{"detail": ...}` body every other error of the host has.

use std::{
    io,
    net::TcpListener,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::{
    dev::AppConfig,
    rt::net::TcpStream,
    web::{self, Bytes},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{forward::ServingState, startup::build_app};

/// How the server runs.
pub struct ServerSettings {
    /// HTTP worker threads.
    pub workers: usize,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request head.
    pub request_head_timeout: Duration,
}

/// Builds and starts the server on `listener` (it accepts at once; signals are the caller's).
pub fn start_server(
    listener: TcpListener,
    state: web::Data<ServingState>,
    settings: &ServerSettings,
) -> io::Result<Server> {
    let address = listener.local_addr()?;
    let builder = Server::build()
        .workers(settings.workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .disable_signals();
    let graceful = builder.graceful_shutdown_signal();
    let request_head_timeout = settings.request_head_timeout;
    let server = builder
        .listen("pixsim7", listener, move || {
            let graceful = graceful.clone();
            let app = build_app(state.clone())
                .into_factory()
                .map_err(|error| error.error_response());
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                .client_request_timeout(request_head_timeout)
                .local_addr(address)
                .h1(map_config(app, |_| AppConfig::default()));
            fn_service(|stream: TcpStream| {
                let peer = stream.peer_addr().ok();
                std::future::ready(Ok::<_, actix_http::error::DispatchError>((
                    DetailedErrors::new(stream),
                    peer,
                )))
            })
            .and_then(http)
        })?
        .run();
    Ok(server)
}

/// A connection whose error answers made by actix-http itself (status 400 or more, an empty
/// body, and no `x-request-id`: every answer the host makes carries one) are rewritten on the
/// way out to carry a `{"detail": ...}` body.
pub struct DetailedErrors<IO> {
    io: IO,
    /// A rewritten answer, and how much of it is written.
    replacement: Option<(Bytes, usize)>,
}

impl<IO> DetailedErrors<IO> {
    /// Wraps a connection.
    pub fn new(io: IO) -> DetailedErrors<IO> {
        DetailedErrors {
            io,
            replacement: None,
        }
    }
}

impl<IO: AsyncWrite + Unpin> DetailedErrors<IO> {
    /// Writes what is left of a rewritten answer; ready when all of it is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for DetailedErrors<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for DetailedErrors<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_replacement(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
        match find_bare_error(buf) {
            None => Pin::new(&mut this.io).poll_write(cx, buf),
            // What comes before it goes out first, as it is.
            Some(found) if found.start > 0 => {
                Pin::new(&mut this.io).poll_write(cx, &buf[..found.start])
            }
            Some(found) => {
                this.replacement = Some((with_detail(&buf[..found.end], found.status), 0));
                // Accepted whole; what the socket does not take now goes out on the next
                // write, flush or shutdown.
                if let Poll::Ready(Err(error)) = this.poll_replacement(cx) {
                    return Poll::Ready(Err(error));
                }
                Poll::Ready(Ok(found.end))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_replacement(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_replacement(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

/// An answer head actix-http made by itself, found in outgoing bytes.
#[derive(Debug, PartialEq, Eq)]
struct BareError {
    /// Where its status line starts.
    start: usize,
    /// Just past the blank line that ends its head (it has no body).
    end: usize,
    status: u16,
}

/// Finds the first answer head in `bytes` with status 400 or more, `content-length: 0` and
/// no `x-request-id` (answers of the host all have one, so a plugin's own empty error
/// answer is left alone).
fn find_bare_error(bytes: &[u8]) -> Option<BareError> {
    let mut from = 0;
    while let Some(offset) = find(&bytes[from..], b"HTTP/1.") {
        let start = from + offset;
        from = start + 1;
        let head = &bytes[start..];
        // "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n..."
        let Some(status) = head
            .get(9..12)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u16>().ok())
        else {
            continue;
        };
        if status < 400 || head.get(12) != Some(&b' ') {
            continue;
        }
        let Some(line_end) = find(head, b"\r\n") else {
            continue;
        };
        if !head[line_end..].starts_with(b"\r\ncontent-length: 0\r\n") {
            continue;
        }
        let Some(head_end) = find(head, b"\r\n\r\n") else {
            continue;
        };
        let head_text = &head[..head_end];
        if find(head_text, b"\r\nx-request-id:").is_some() {
            continue;
        }
        return Some(BareError {
            start,
            end: start + head_end + 4,
            status,
        });
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The answer `head` (a bare error) again, with a JSON detail body.
fn with_detail(head: &[u8], status: u16) -> Bytes {
    let detail = match status {
        400 => "the request is not valid HTTP/1.1",
        408 => "the request was not received in time",
        413 => "the request is too large",
        431 => "the request's headers are too large",
        _ => "the request could not be handled",
    };
    let body = serde_json::json!({ "detail": detail }).to_string();
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let rest_start = line_end + b"\r\ncontent-length: 0\r\n".len();
    let mut answer = Vec::with_capacity(head.len() + body.len() + 64);
    answer.extend_from_slice(&head[..line_end]);
    answer.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(&head[rest_start.min(head.len())..]);
    answer.extend_from_slice(body.as_bytes());
    Bytes::from(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n";

    #[test]
    fn a_bare_error_is_found_and_given_a_detail() {
        let found = find_bare_error(BARE_408).unwrap();
        assert_eq!(
            found,
            BareError {
                start: 0,
                end: BARE_408.len(),
                status: 408
            }
        );
        let answer = with_detail(BARE_408, 408);
        let text = std::str::from_utf8(&answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 49\r\nconnection: close\r\ndate: "), "{text}");
        assert!(
            text.ends_with("\r\n\r\n{\"detail\":\"the request was not received in time\"}"),
            "{text}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn the_host_s_own_answers_and_plugins_empty_errors_pass_untouched() {
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nx-request-id: 1-2\r\n\r\n";
        assert_eq!(find_bare_error(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(find_bare_error(ok), None);
        let sized = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"detail\":1}";
        assert_eq!(find_bare_error(sized), None);
    }

    #[test]
    fn a_bare_error_after_a_pipelined_answer_is_found_where_it_starts() {
        let mut bytes =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: a\r\n\r\nokHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
                .to_vec();
        let found = find_bare_error(&bytes).unwrap();
        assert_eq!(found.status, 400);
        assert_eq!(&bytes[found.start..found.start + 8], b"HTTP/1.1");
        assert_eq!(found.end, bytes.len());
        bytes.truncate(found.start);
        assert_eq!(find_bare_error(&bytes), None);
    }

    #[test]
    fn writes_through_the_wrapper_rewrite_only_the_bare_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            let mut out = DetailedErrors::new(Vec::new());
            let mut input =
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: a\r\n\r\nok".to_vec();
            input.extend_from_slice(BARE_408);
            out.write_all(&input).await.unwrap();
            out.flush().await.unwrap();
            let text = String::from_utf8(out.io).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: a\r\n\r\nokHTTP/1.1 408 Request Timeout\r\ncontent-type: application/json"), "{text}");
            assert!(text.ends_with("{\"detail\":\"the request was not received in time\"}"));
        });
    }
}
