//! The request a handler receives, with typed accessors that fail with the right HTTP error:
//! path parameters, query parameters, headers, and the JSON body (422 in FastAPI's shape).

use std::{borrow::Cow, str::FromStr, sync::OnceLock};

use serde::de::DeserializeOwned;

use super::{
    error::ApiError,
    host::Host,
    validation::{self, parse_field, parse_json_body},
};
use crate::abi::{FfiMethod, FfiRequest, HostServicesHandle};

/// One HTTP request, as forwarded by the host: borrowed from the host for as long as the
/// handler runs (copy out what must outlive it).
pub struct Request<'a> {
    inner: FfiRequest<'a>,
    services: &'a HostServicesHandle,
    host: OnceLock<Host>,
}

impl<'a> Request<'a> {
    pub(crate) fn from_ffi(inner: FfiRequest<'a>, services: &'a HostServicesHandle) -> Request<'a> {
        Request {
            inner,
            services,
            host: OnceLock::new(),
        }
    }

    /// The host services acting for this request: every call sees only what the caller may
    /// see (their own worlds and sessions) and joins the request's unit of work, which
    /// commits only if the handler answers below 400. Clone it to keep it past the request.
    pub fn host(&self) -> &Host {
        self.host
            .get_or_init(|| Host::scoped(self.services.clone(), self.inner.context.clone()))
    }

    /// The method.
    pub fn method(&self) -> FfiMethod {
        self.inner.method
    }

    /// Who is calling, as the host verified it; `None` only on public routes.
    pub fn caller(&self) -> Option<Caller> {
        self.inner.caller.into_option().map(|caller| Caller {
            user_id: caller.user_id,
            roles: caller.roles.iter().map(|r| r.to_string()).collect(),
        })
    }

    /// Whether the caller has `role` (`false` for an anonymous caller).
    pub fn caller_has_role(&self, role: &str) -> bool {
        self.inner
            .caller
            .into_option()
            .is_some_and(|caller| caller.roles.iter().any(|r| r == role))
    }

    /// The calling user's id; 401 on a public route called without a valid token.
    pub fn user_id(&self) -> Result<i64, ApiError> {
        self.inner
            .caller
            .into_option()
            .map(|caller| caller.user_id)
            .ok_or_else(|| ApiError::new(401, "Not authenticated"))
    }

    /// The full path as received (percent-encoded).
    pub fn path(&self) -> &'a str {
        self.inner.path.as_str()
    }

    /// The id the host gave this request; include it in log lines about the request.
    pub fn request_id(&self) -> String {
        self.inner.context.request_id().into_string()
    }

    /// A path parameter's text, percent-decoded. A name the route pattern lacks is a
    /// programming error reported as 500.
    pub fn param(&self, name: &str) -> Result<Cow<'a, str>, ApiError> {
        self.inner
            .path_params
            .iter()
            .find(|pair| pair.0 == name)
            .map(|pair| percent_decode(pair.1.as_str()))
            .ok_or_else(|| ApiError::internal(format!("route has no path parameter {name:?}")))
    }

    /// A path parameter parsed as `T`; a value that does not parse answers 422 in pydantic's
    /// words (`int_parsing`, "Input should be a valid integer, unable to parse string as an
    /// integer").
    pub fn param_as<T: FromStr + 'static>(&self, name: &str) -> Result<T, ApiError> {
        parse_field("path", name, &self.param(name)?)
    }

    /// The raw query string (without `?`).
    pub fn query_string(&self) -> &'a str {
        self.inner.query.as_str()
    }

    /// A query parameter, percent-decoded; the first one when repeated.
    pub fn query(&self, name: &str) -> Option<Cow<'a, str>> {
        self.inner
            .query
            .as_str()
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_query_component(key) == name).then(|| decode_query_component(value))
            })
            .next()
    }

    /// A query parameter parsed as `T`: `Ok(None)` when absent, 422 when it does not parse.
    /// [`Request::required_query`] answers 422 `missing` when absent.
    pub fn query_as<T: FromStr + 'static>(&self, name: &str) -> Result<Option<T>, ApiError> {
        let Some(text) = self.query(name) else {
            return Ok(None);
        };
        parse_field("query", name, &text).map(Some)
    }

    /// A required query parameter parsed as `T`: 422 `missing` ("Field required") when
    /// absent, as FastAPI answers for a query parameter without a default.
    pub fn required_query<T: FromStr + 'static>(&self, name: &str) -> Result<T, ApiError> {
        match self.query_as(name)? {
            Some(value) => Ok(value),
            None => Err(ApiError::validation_issues(vec![
                validation::missing_field("query", name),
            ])),
        }
    }

    /// The query parameters as `T`, the type the route declared with `Route::query` (the SDK
    /// checked them before the handler ran, so this fails only for another `T`): 422 in
    /// pydantic's words for a missing, malformed or out-of-range parameter.
    pub fn query_params<T: DeserializeOwned + schemars::JsonSchema>(&self) -> Result<T, ApiError> {
        validation::parameters_as("query", self.query_pairs())
    }

    /// The path parameters as `T`, the type the route declared with `Route::path`.
    pub fn path_params<T: DeserializeOwned + schemars::JsonSchema>(&self) -> Result<T, ApiError> {
        validation::parameters_as("path", self.path_pairs())
    }

    /// Every query parameter as (name, value), percent-decoded, in order.
    pub(crate) fn query_pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> {
        let query: &'a str = self.inner.query.as_str();
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_query_component(key), decode_query_component(value))
            })
    }

    /// Every path parameter as (name, value), percent-decoded.
    pub(crate) fn path_pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + '_ {
        self.inner.path_params.iter().map(|pair| {
            (
                Cow::Borrowed(pair.0.as_str()),
                percent_decode(pair.1.as_str()),
            )
        })
    }

    /// Checks the request's path and query parameters against the schemas its route declared
    /// (`Route::path`, `Route::query`): the 422 FastAPI would answer, before any handler code.
    pub(crate) fn check_declared_parameters(
        &self,
        path_schema: Option<&serde_json::Value>,
        query_schema: Option<&serde_json::Value>,
    ) -> Result<(), ApiError> {
        let mut issues = Vec::new();
        if let Some(schema) = path_schema {
            if let Err(error) = validation::check_parameters("path", schema, self.path_pairs()) {
                issues.extend(error.detail().as_array().cloned().unwrap_or_default());
            }
        }
        if let Some(schema) = query_schema {
            if let Err(error) = validation::check_parameters("query", schema, self.query_pairs()) {
                issues.extend(error.detail().as_array().cloned().unwrap_or_default());
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation_issues(issues))
        }
    }

    /// A header value by (case-insensitive) name; the first when repeated. `None` when
    /// absent or not UTF-8. `Authorization` and `Cookie` are never shown to plugins.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers
            .get(name.into())
            .into_option()
            .map(|value| value.as_str())
    }

    /// Every header as (lower-case name, value), in no particular order; repeated headers
    /// appear once per value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner
            .headers
            .list()
            .into_iter()
            .map(|pair| (pair.0.as_str(), pair.1.as_str()))
    }

    /// The body bytes.
    pub fn body(&self) -> &'a [u8] {
        self.inner.body.as_slice()
    }

    /// The body parsed as JSON into `T`. Malformed JSON or a body that does not match `T`
    /// answers 422 with `{"detail": [{"type", "loc", "msg", "input"}, ...]}` listing every
    /// problem, in pydantic's words, as FastAPI does.
    pub fn json<T: DeserializeOwned + schemars::JsonSchema>(&self) -> Result<T, ApiError> {
        parse_json_body(self.inner.body.as_slice())
    }
}

/// A caller the host verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id.
    pub user_id: i64,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Decodes a query-string key or value: `+` is a space, then `%XX` escapes.
fn decode_query_component(text: &str) -> Cow<'_, str> {
    if text.contains('+') {
        Cow::Owned(percent_decode(&text.replace('+', " ")).into_owned())
    } else {
        percent_decode(text)
    }
}

/// Decodes `%XX` escapes (as in a path segment); invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let pair = &bytes[index + 1..index + 3];
                let hex = pair
                    .iter()
                    .all(u8::is_ascii_hexdigit)
                    .then(|| std::str::from_utf8(pair).ok())
                    .flatten();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(decode_query_component("a%20b+c"), "a b c");
        assert_eq!(percent_decode("a+b%2Fc"), "a+b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%+5x"), "%+5x");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }
}
