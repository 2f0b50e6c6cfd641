//! In-process testing of a plugin crate (built as `rlib` too): load it with a configuration
//! and call its routes without a host, through the same dispatch code the host uses.
//!
//! ```text
//! let plugin = TestPlugin::<DiceGame>::load(json!({})).unwrap();
//! let response = plugin.post_json("/dice-game/roll", &json!({"dice": "2d6"}));
//! assert_eq!(response.status, 200);
//! ```

use std::{
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Wake, Waker},
    thread::Thread,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RStr, RString, RVec, Tuple2},
};
use async_ffi::{FfiFuture, FutureExt};
use serde_json::Value;

use super::{
    error::PluginError,
    export::Runtime,
    host::Host,
    plugin::{LoadContext, Plugin},
    response::Response,
};
use crate::{
    abi::{
        BlockingJobBox, FfiRequest, HostServices, HostServices_TO, LogLevel, RequestContext,
        RequestContextHandle, RequestContext_TO, ServiceError, ServiceErrorKind, ServiceResult,
    },
    route::{Method, PluginDescriptor},
};

/// A plugin loaded in-process for tests.
pub struct TestPlugin<P: Plugin> {
    runtime: &'static Runtime<P>,
}

impl<P: Plugin> TestPlugin<P> {
    /// The plugin's descriptor, validated as the host would.
    pub fn descriptor() -> Result<PluginDescriptor, crate::ManifestErrors> {
        let descriptor = Runtime::<P>::new().descriptor;
        descriptor.validate().map(|()| descriptor)
    }

    /// Runs `on_load` with `config` (the `[plugins.<id>]` table as JSON) and `on_enable`.
    pub fn load(config: Value) -> Result<TestPlugin<P>, PluginError> {
        let descriptor = Runtime::<P>::new().descriptor;
        descriptor
            .validate()
            .map_err(|errors| PluginError::new(errors.to_string()))?;
        let runtime: &'static Runtime<P> = Box::leak(Box::new(Runtime::new()));
        let services = HostServices_TO::from_ptr(RArc::new(StderrServices), TD_Opaque);
        block_on(runtime.load(LoadContext::new(config, Host::new(services))))?;
        block_on(runtime.enable())?;
        Ok(TestPlugin { runtime })
    }

    /// Sends a request; `path` is below the manifest prefix and may carry `?query`.
    /// An unknown path answers 404, a panic in the handler 500.
    pub fn call(&self, method: Method, path: &str, body: &[u8]) -> Response {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let matched = self
            .runtime
            .descriptor
            .routes
            .iter()
            .enumerate()
            .find_map(|(i, route)| {
                (route.method == method)
                    .then(|| match_pattern(&route.path, path))
                    .flatten()
                    .map(|params| (i, params))
            });
        let Some((index, params)) = matched else {
            return Response::json(404, &serde_json::json!({"detail": "Not Found"}));
        };
        let request = FfiRequest {
            method,
            path: RString::from(format!("{}{path}", self.runtime.descriptor.manifest.prefix)),
            path_params: params
                .into_iter()
                .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                .collect(),
            query: RString::from(query),
            headers: RString::new(),
            body: RVec::from(body.to_vec()),
            context: RequestContext_TO::from_ptr(RArc::new(TestRequest), TD_Opaque),
            caller: ROption::RNone,
        };
        match block_on(self.runtime.handle(index as u32, request)) {
            RResult::ROk(response) => Response {
                status: response.status,
                headers: response
                    .headers
                    .into_iter()
                    .map(|pair| (pair.0.to_string().into(), pair.1.to_string().into()))
                    .collect(),
                body: response.body.into_vec(),
            },
            RResult::RErr(fault) => Response::json(
                500,
                &serde_json::json!({"detail": format!("{:?}: {}", fault.kind, fault.message)}),
            ),
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.call(Method::Get, path, b"")
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.call(Method::Post, path, body.to_string().as_bytes())
    }
}

fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut actual = path.trim_end_matches('/').split('/');
    for expected in pattern.split('/') {
        if let Some(name) = expected
            .strip_prefix("{*")
            .and_then(|n| n.strip_suffix('}'))
        {
            let rest: Vec<&str> = actual.by_ref().collect();
            params.push((name.to_owned(), rest.join("/")));
            return Some(params);
        }
        let segment = actual.next()?;
        match expected.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            Some(name) => params.push((name.to_owned(), segment.to_owned())),
            None if expected == segment => {}
            None => return None,
        }
    }
    actual.next().is_none().then_some(params)
}

/// The request context of in-process tests.
#[derive(Clone)]
struct TestRequest;

impl RequestContext for TestRequest {
    fn request_id(&self) -> RString {
        RString::from("test")
    }
}

/// Host services for in-process tests: log lines go to stderr (captured by the test
/// harness unless `--nocapture`).
#[derive(Clone)]
struct StderrServices;

impl HostServices for StderrServices {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        eprintln!("[{level:?} {target}] {message}");
    }

    fn run_blocking(&self, mut job: BlockingJobBox) -> FfiFuture<RResult<(), RString>> {
        // In-process tests have no pool to protect: run it here.
        let outcome = job.run();
        async move { outcome }.into_ffi()
    }

    fn call(
        &self,
        _context: ROption<RequestContextHandle>,
        operation: RStr<'_>,
        _payload: RVec<u8>,
    ) -> FfiFuture<ServiceResult> {
        let message = format!(
            "{operation}: TestPlugin has no game database; test plugins that use host services \
             through the host's integration tests"
        );
        async move {
            RResult::RErr(ServiceError {
                kind: ServiceErrorKind::Unavailable,
                message: message.into(),
            })
        }
        .into_ffi()
    }
}

/// Drives a future to completion on this thread (plugins do no I/O of their own, so their
/// futures only wait on what the test host provides).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::match_pattern;

    #[test]
    fn patterns_bind_parameters() {
        assert_eq!(
            match_pattern("/s/{id}/x", "/s/7/x"),
            Some(vec![("id".into(), "7".into())])
        );
        assert_eq!(match_pattern("/s/{id}", "/s/7/x"), None);
        assert_eq!(match_pattern("/s/{id}/x", "/s/7"), None);
        assert_eq!(
            match_pattern("/f/{*rest}", "/f/a/b"),
            Some(vec![("rest".into(), "a/b".into())])
        );
    }
}
