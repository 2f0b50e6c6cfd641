//! What handlers return: [`Response`], the [`IntoResponse`] conversions, and [`Json`].

use serde::Serialize;
use serde_json::Value;

use crate::abi::FfiResponse;
use std::borrow::Cow;

use abi_stable::std_types::{RCowStr, RStr, RString, RVec, Tuple2};

/// An HTTP response built by a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers, in order; static strings cost no allocation.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response; a value that cannot be serialized becomes a 500 (and a log line).
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(error) => {
                log::error!("response could not be serialized as JSON: {error}");
                Response::json_value(500, &serde_json::json!({"detail": "internal server error"}))
            }
        }
    }

    pub(crate) fn json_value(status: u16, value: &Value) -> Response {
        Response::new(status)
            .with_header("content-type", "application/json")
            .with_body(value.to_string().into_bytes())
    }

    /// Adds a header (pass `&'static str`s where you can: they are not copied).
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The body parsed as JSON (for tests); `Value::Null` when it is not JSON.
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub(crate) fn into_ffi(self) -> FfiResponse {
        FfiResponse {
            status: self.status,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| Tuple2(ffi_cow(name), ffi_cow(value)))
                .collect(),
            body: RVec::from(self.body),
        }
    }
}

fn ffi_cow(text: Cow<'static, str>) -> RCowStr<'static> {
    match text {
        Cow::Borrowed(text) => RCowStr::Borrowed(RStr::from_str(text)),
        Cow::Owned(text) => RCowStr::Owned(RString::from(text)),
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Converts into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

/// A JSON body with status 200; `(201, Json(x))` sets another status.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(200, &self.0)
    }
}

impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response.status = self.0;
        response
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(204)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        self.to_owned().into_response()
    }
}
