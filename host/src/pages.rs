//! The host's two browser pages, served from the binary with no outside host involved:
//! `GET /docs`, Swagger UI over `/openapi.json` (the release unpacked by `build.rs`), and
//! `GET /admin`, the plugin dashboard (`pages/dashboard.*`), which reads the admin API with
//! a token the operator pastes in. Both pages are public; the data behind the dashboard is
//! not.
//!
//! Every page is one HTML document plus files under its path (`/docs/{*file}`,
//! `/admin/{*file}`). The HTML names each file with `?v=<content hash>`, and a file asked
//! for with its current hash is cacheable for a year; anything else (the HTML, a file
//! without the hash) is revalidated every time (`no-cache` and an `ETag`), so an upgraded
//! binary is never hidden behind a stale cache. The HTML carries a Content-Security-Policy
//! allowing scripts, styles, images and requests from this origin only, and no inline
//! script.

use std::{collections::HashMap, sync::LazyLock};

use actix_web::{
    http::header::{
        HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
        REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
    },
    web::Bytes,
    HttpRequest, HttpResponse, HttpResponseBuilder,
};
use sha2::{Digest, Sha256};

use crate::http_error;

include!(concat!(env!("OUT_DIR"), "/swagger_ui.rs"));

/// Which page (and so which of its files) a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/docs`: Swagger UI.
    Docs,
    /// `/admin`: the plugin dashboard.
    Dashboard,
}

impl Page {
    fn path(self) -> &'static str {
        match self {
            Page::Docs => "/docs",
            Page::Dashboard => "/admin",
        }
    }

    /// The page's Content-Security-Policy. Swagger UI sets `style` attributes from its
    /// script (allowed by CSP, which governs only markup) and draws its icons with `data:`
    /// images from its stylesheet; the dashboard needs nothing but its own files.
    fn content_security_policy(self) -> &'static str {
        match self {
            Page::Docs => {
                "default-src 'none'; script-src 'self'; style-src 'self'; \
                 img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                 base-uri 'none'; frame-ancestors 'none'"
            }
            Page::Dashboard => {
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
            }
        }
    }
}

/// `GET /docs` or `GET /admin`.
pub fn serve_page(page: Page, request: &HttpRequest) -> HttpResponse {
    let document = match page {
        Page::Docs => &SITE.docs,
        Page::Dashboard => &SITE.dashboard,
    };
    let mut response = respond(document, request, false);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page.content_security_policy()),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /docs/{*file}` or `GET /admin/{*file}`: one of the page's files, or a JSON 404.
pub fn serve_file(page: Page, file: &str, request: &HttpRequest) -> HttpResponse {
    let Some(file) = SITE.files.get(format!("{}/{file}", page.path()).as_str()) else {
        return http_error::not_found();
    };
    let current = request
        .query_string()
        .strip_prefix("v=")
        .is_some_and(|version| version == file.version);
    respond(file, request, current)
}

/// One thing served: its bytes, type and validator.
struct Served {
    body: Bytes,
    content_type: &'static str,
    /// The first 16 hex digits of the body's SHA-256: the `?v=` of its URL.
    version: String,
    /// `"<version>"`.
    etag: HeaderValue,
}

impl Served {
    fn new(body: impl Into<Bytes>, content_type: &'static str) -> Served {
        let body = body.into();
        let digest = Sha256::digest(&body);
        let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{version}\"")).expect("hex is a header");
        Served {
            body,
            content_type,
            version,
            etag,
        }
    }
}

/// 200 with the body, or 304 when the browser's copy is current; `immutable` when the URL
/// names this exact content.
fn respond(served: &Served, request: &HttpRequest, immutable: bool) -> HttpResponse {
    let cache_control = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let not_modified = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == served.etag)
        });
    let mut builder: HttpResponseBuilder = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((ETAG, served.etag.clone()))
        .insert_header((CACHE_CONTROL, cache_control))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((REFERRER_POLICY, "no-referrer"));
    if not_modified {
        return builder.finish();
    }
    builder
        .insert_header((CONTENT_TYPE, served.content_type))
        .body(served.body.clone())
}

/// Everything the pages serve, prepared on first use.
struct Site {
    docs: Served,
    dashboard: Served,
    /// By full path, e.g. `/docs/swagger-ui.css`.
    files: HashMap<String, Served>,
}

static SITE: LazyLock<Site> = LazyLock::new(|| {
    let mut files: HashMap<String, Served> = HashMap::new();
    for (name, bytes) in SWAGGER_UI_FILES {
        files.insert(
            format!("/docs/{name}"),
            Served::new(Bytes::from_static(bytes), content_type(name)),
        );
    }
    let own: [(&str, &'static str); 6] = [
        ("/docs/docs.js", include_str!("pages/docs.js")),
        ("/docs/docs.css", include_str!("pages/docs.css")),
        ("/admin/dashboard.js", include_str!("pages/dashboard.js")),
        ("/admin/dashboard.css", include_str!("pages/dashboard.css")),
        ("/admin/favicon.svg", include_str!("pages/favicon.svg")),
        ("/docs/favicon.svg", include_str!("pages/favicon.svg")),
    ];
    for (path, text) in own {
        files.insert(
            path.to_owned(),
            Served::new(Bytes::from_static(text.as_bytes()), content_type(path)),
        );
    }
    let html = |template: &str| {
        let mut html = template.replace("{{swagger-ui-version}}", SWAGGER_UI_VERSION);
        for (path, file) in &files {
            html = html.replace(
                &format!("{{{{{path}}}}}"),
                &format!("{path}?v={}", file.version),
            );
        }
        assert!(
            !html.contains("{{"),
            "a page names a file the host does not serve"
        );
        Served::new(html, "text/html; charset=utf-8")
    };
    Site {
        docs: html(include_str!("pages/docs.html")),
        dashboard: html(include_str!("pages/dashboard.html")),
        files,
    }
});

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_names_only_files_it_serves() {
        assert!(SITE.files.contains_key("/docs/swagger-ui-bundle.js"));
        for page in [&SITE.docs, &SITE.dashboard] {
            let html = std::str::from_utf8(&page.body).unwrap();
            assert!(!html.contains("{{"), "{html}");
            assert!(!html.contains("<script>"), "no inline script: {html}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("favicon-32x32.png"), "image/png");
        assert_eq!(content_type("LICENSE"), "text/plain; charset=utf-8");
    }
}
