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
                // As actix-web's own server: a connection answered before its body was read
                // is drained for up to a second before it closes, so the answer is not lost
                // to a reset.
                .client_disconnect_timeout(Duration::from_secs(1))
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
/// body, and no `x-request-id`: every answer the host makes carries one) get a
/// `{"detail": ...}` body on the way out.
///
/// Such an answer is always the last thing actix writes on a connection, and the wrapper does
/// not know where one answer's body ends and the next answer begins (a `HEAD` answer names a
/// length and has no body). So a candidate is recognised only at the end of what actix hands
/// over, and held back: if anything more is written after it, it was not a bare error (body
/// bytes that happened to look like one) and goes out unchanged; when the connection is shut
/// down or dropped with it still held, it was the last answer, and goes out with its detail.
/// Nothing is ever rewritten in the middle of a connection's output.
pub struct DetailedErrors<IO: WriteNow> {
    io: IO,
    /// Bytes accepted from actix and not yet on the socket, and how much of them is written.
    pending: Option<(Bytes, usize)>,
    /// A bare error answer at the end of everything written so far, held back.
    held: Option<(Bytes, u16)>,
}

/// Writes without waiting, for the last bytes of a connection being dropped.
pub trait WriteNow {
    /// Writes what the socket takes right now.
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

impl WriteNow for TcpStream {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

impl WriteNow for Vec<u8> {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }
}

impl<IO: WriteNow> DetailedErrors<IO> {
    /// Wraps a connection.
    pub fn new(io: IO) -> DetailedErrors<IO> {
        DetailedErrors {
            io,
            pending: None,
            held: None,
        }
    }
}

impl<IO: AsyncWrite + Unpin + WriteNow> DetailedErrors<IO> {
    /// Writes what is pending; ready when all of it is written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
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

    /// The held answer was the connection's last: it goes out with its detail.
    fn release_held_as_last(&mut self) {
        if let Some((head, status)) = self.held.take() {
            self.pending = Some((with_detail(&head, status), 0));
        }
    }
}

impl<IO: AsyncRead + Unpin + WriteNow> AsyncRead for DetailedErrors<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin + WriteNow> AsyncWrite for DetailedErrors<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // More is written after a held answer: it was not the last, so it goes out as it was.
        if let Some((head, _)) = this.held.take() {
            this.pending = Some((head, 0));
        }
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
        match find_bare_error(buf).filter(|found| found.end == buf.len()) {
            None => Pin::new(&mut this.io).poll_write(cx, buf),
            // What comes before it goes out first, as it is.
            Some(found) if found.start > 0 => {
                Pin::new(&mut this.io).poll_write(cx, &buf[..found.start])
            }
            Some(found) => {
                this.held = Some((Bytes::copy_from_slice(buf), found.status));
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.release_held_as_last();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

impl<IO: WriteNow> Drop for DetailedErrors<IO> {
    /// actix drops a connection after a 400 or 431 without shutting it down: the held answer
    /// (a couple of hundred bytes) goes into the socket's buffer now, as far as it takes it.
    fn drop(&mut self) {
        let last = match (self.pending.take(), self.held.take()) {
            (_, Some((head, status))) => Some((with_detail(&head, status), 0)),
            (pending, None) => pending,
        };
        if let Some((bytes, mut written)) = last {
            while written < bytes.len() {
                match self.io.write_now(&bytes[written..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => written += n,
                }
            }
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
    fn what_only_looks_like_a_bare_error_goes_out_unchanged_when_more_follows() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            use tokio::io::AsyncWriteExt;
            let mut out = DetailedErrors::new(Vec::new());
            // A body that ends with what looks like a bare error, then the next answer.
            let mut first =
                b"HTTP/1.1 200 OK\r\ncontent-length: 94\r\nx-request-id: a\r\n\r\n".to_vec();
            first.extend_from_slice(BARE_408);
            let second = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: b\r\n\r\nok";
            out.write_all(&first).await.unwrap();
            out.write_all(second).await.unwrap();
            out.shutdown().await.unwrap();
            let mut expected = first.clone();
            expected.extend_from_slice(second);
            assert_eq!(std::mem::take(&mut out.io), expected);
        });
    }

    /// A connection whose bytes the test can read after the wrapper is dropped.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl WriteNow for Shared {
        fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
    }

    impl AsyncWrite for Shared {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(self.write_now(buf))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_held_bare_error_goes_out_with_its_detail_when_the_connection_is_dropped() {
        let connection = Shared::default();
        let mut out = DetailedErrors::new(connection.clone());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let written = Pin::new(&mut out).poll_write(&mut cx, BARE_408);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == BARE_408.len()));
        assert!(matches!(
            Pin::new(&mut out).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(
            connection.0.lock().unwrap().is_empty(),
            "held until the connection ends"
        );
        drop(out);
        let bytes = connection.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json"),
            "{text}"
        );
        assert!(text.ends_with("{\"detail\":\"the request was not received in time\"}"));
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
            out.shutdown().await.unwrap();
            let text = String::from_utf8(std::mem::take(&mut out.io)).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: a\r\n\r\nokHTTP/1.1 408 Request Timeout\r\ncontent-type: application/json"), "{text}");
            assert!(text.ends_with("{\"detail\":\"the request was not received in time\"}"));
        });
    }
}
