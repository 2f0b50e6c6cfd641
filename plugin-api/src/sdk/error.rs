//! Errors plugin code returns: [`ApiError`] from handlers (an HTTP status and a `detail`
//! for the client) and [`PluginError`] from lifecycle hooks (a message for the operator).

use std::{borrow::Cow, fmt};

use serde_json::{json, Value};

use super::response::{IntoResponse, Response};

/// An error a handler returns; the client receives `{"detail": ...}` with the status.
///
/// `detail` is usually a string; FastAPI-style validation errors (422) carry a list of
/// `{type, loc, msg}` objects instead, which the game's front end already understands.
/// Headers can ride along ([`ApiError::with_header`]), e.g. `Retry-After` on a 429.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: u16,
    detail: Value,
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl ApiError {
    /// An error with any status and a text detail.
    pub fn new(status: u16, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: Value::String(detail.into()),
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, detail)
    }

    /// 403 Forbidden.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(403, detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(404, detail)
    }

    /// 409 Conflict.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(409, detail)
    }

    /// 422 with one FastAPI-style validation issue: `kind` (e.g. `"missing"`), the location
    /// (e.g. `["body", "npc_id"]`) and a message.
    pub fn validation(kind: &str, loc: Vec<Value>, msg: impl Into<String>) -> ApiError {
        ApiError::validation_issues(vec![json!({"type": kind, "loc": loc, "msg": msg.into()})])
    }

    /// 422 with a list of FastAPI-style validation issues.
    pub fn validation_issues(issues: Vec<Value>) -> ApiError {
        ApiError {
            status: 422,
            detail: Value::Array(issues),
            headers: Vec::new(),
        }
    }

    /// 429 Too Many Requests, with `Retry-After: retry_after_secs` (whole seconds).
    pub fn too_many_requests(retry_after_secs: u64, detail: impl Into<String>) -> ApiError {
        ApiError::new(429, detail).with_header("retry-after", retry_after_secs.to_string())
    }

    /// Adds a header to the error's response (pass `&'static str`s where you can).
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The headers sent with the error, in order.
    pub fn headers(&self) -> &[(Cow<'static, str>, Cow<'static, str>)] {
        &self.headers
    }

    /// 500; the client sees only a generic detail, `cause` goes to the host log.
    pub fn internal(cause: impl fmt::Display) -> ApiError {
        log::error!("internal error: {cause}");
        ApiError::new(500, "internal server error")
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `detail` value sent to the client.
    pub fn detail(&self) -> &Value {
        &self.detail
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Value::String(text) => write!(f, "{} {}", self.status, text),
            other => write!(f, "{} {}", self.status, other),
        }
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Response::json_value(self.status, &json!({ "detail": self.detail }));
        response.headers.extend(self.headers);
        response
    }
}

/// An error from a lifecycle hook (`on_load`, `on_enable`, `on_disable`); the host logs it
/// with the plugin id and marks the plugin failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    message: String,
    /// Set only by `Plugin::on_load`'s default body: the plugin did not write `on_load`.
    no_on_load: bool,
}

impl PluginError {
    /// An error with this message (lower-case, no trailing period, say what was expected).
    pub fn new(message: impl Into<String>) -> PluginError {
        PluginError {
            message: message.into(),
            no_on_load: false,
        }
    }

    /// What `Plugin::on_load` answers when a plugin does not write it: the runtime then
    /// builds the plugin with `Default`, or fails it with this message.
    pub(crate) fn no_on_load() -> PluginError {
        PluginError {
            message: "the plugin has no on_load and its type is not Default: implement \
                      Plugin::on_load, or derive Default"
                .to_owned(),
            no_on_load: true,
        }
    }

    pub(crate) fn is_no_on_load(&self) -> bool {
        self.no_on_load
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<String> for PluginError {
    fn from(message: String) -> PluginError {
        PluginError::new(message)
    }
}

impl From<ApiError> for PluginError {
    fn from(error: ApiError) -> PluginError {
        PluginError::new(error.to_string())
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> PluginError {
        PluginError::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_ride_along_with_the_detail() {
        let response = ApiError::too_many_requests(30, "slow down").into_response();
        assert_eq!(response.status, 429);
        assert_eq!(response.json_body(), json!({"detail": "slow down"}));
        assert!(response
            .headers
            .iter()
            .any(|(name, value)| name == "retry-after" && value == "30"));
        assert!(ApiError::not_found("x").headers().is_empty());
    }
}
