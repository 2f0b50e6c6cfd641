//! The descriptor section: the plugin's ABI version, manifest and route table as JSON,
//! written at compile time into a section of the library, where the host reads it from the
//! file before it opens the library (so listing, disabling or refusing a plugin runs none of
//! its code).
//!
//! The JSON is a [`crate::route::SectionDescriptor`]. It is produced by `const fn`s from the
//! plugin's `MANIFEST` and `ROUTES`, so the compiler evaluates it; `export_plugin!` places
//! the bytes in a `#[used]` static with `#[link_section]`.

use super::{
    declaration::{split_dependency, PluginManifest, Route},
    plugin::Plugin,
};
use crate::{
    abi::ABI_VERSION,
    manifest::EventDelivery,
    route::{Access, Method, SECTION_FORMAT},
};

/// A JSON writer usable in constant evaluation. With `N = 0` it only counts bytes, which
/// gives the length of the array for the writing pass.
pub struct SectionWriter<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> SectionWriter<N> {
    const fn new() -> Self {
        SectionWriter {
            bytes: [0; N],
            len: 0,
        }
    }

    const fn byte(&mut self, byte: u8) {
        if self.len < N {
            self.bytes[self.len] = byte;
        }
        self.len += 1;
    }

    const fn raw(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, other bytes
    /// (UTF-8 included) as they are.
    const fn string(&mut self, text: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = text.as_bytes();
        self.byte(b'"');
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            match byte {
                b'"' | b'\\' => {
                    self.byte(b'\\');
                    self.byte(byte);
                }
                0..=0x1f => {
                    self.raw("\\u00");
                    self.byte(HEX[(byte >> 4) as usize]);
                    self.byte(HEX[(byte & 0xf) as usize]);
                }
                _ => self.byte(byte),
            }
            i += 1;
        }
        self.byte(b'"');
    }

    /// `"key":`, preceded by a comma unless it is the object's first.
    const fn key(&mut self, first: bool, key: &str) {
        if !first {
            self.byte(b',');
        }
        self.string(key);
        self.byte(b':');
    }

    const fn boolean(&mut self, value: bool) {
        self.raw(if value { "true" } else { "false" });
    }

    const fn strings(&mut self, list: &[&str]) {
        self.byte(b'[');
        let mut i = 0;
        while i < list.len() {
            if i > 0 {
                self.byte(b',');
            }
            self.string(list[i]);
            i += 1;
        }
        self.byte(b']');
    }

    const fn manifest(&mut self, manifest: &PluginManifest) {
        self.byte(b'{');
        self.key(true, "id");
        self.string(manifest.id);
        self.key(false, "name");
        self.string(manifest.name);
        self.key(false, "version");
        self.string(manifest.version);
        self.key(false, "description");
        self.string(manifest.description);
        self.key(false, "prefix");
        self.string(manifest.prefix);
        self.key(false, "tags");
        self.strings(manifest.tags);
        self.key(false, "dependencies");
        self.byte(b'[');
        let mut i = 0;
        while i < manifest.dependencies.len() {
            if i > 0 {
                self.byte(b',');
            }
            let (id, requirement) = split_dependency(manifest.dependencies[i]);
            self.byte(b'{');
            self.key(true, "id");
            self.string(id);
            self.key(false, "requirement");
            match requirement {
                Some(requirement) => self.string(requirement),
                None => self.raw("null"),
            }
            self.byte(b'}');
            i += 1;
        }
        self.byte(b']');
        self.key(false, "enabled");
        self.boolean(manifest.enabled);
        self.key(false, "permissions");
        self.strings(manifest.permissions);
        self.key(false, "optional_permissions");
        self.strings(manifest.optional_permissions);
        self.key(false, "subscriptions");
        self.strings(manifest.subscriptions);
        self.key(false, "event_delivery");
        self.string(match manifest.event_delivery {
            EventDelivery::Cluster => "cluster",
            EventDelivery::Instance => "instance",
        });
        self.key(false, "emits");
        self.strings(manifest.emits);
        self.key(false, "required");
        self.boolean(manifest.required);
        self.byte(b'}');
    }

    const fn routes<P>(&mut self, routes: &[Route<P>]) {
        self.byte(b'[');
        let mut i = 0;
        while i < routes.len() {
            if i > 0 {
                self.byte(b',');
            }
            let route = &routes[i];
            self.byte(b'{');
            self.key(true, "method");
            self.string(method_name(route.method));
            self.key(false, "path");
            self.string(route.path);
            self.key(false, "summary");
            self.string(route.summary);
            self.key(false, "access");
            self.string(match route.access {
                Access::Public => "public",
                Access::User => "user",
                Access::Admin => "admin",
            });
            self.byte(b'}');
            i += 1;
        }
        self.byte(b']');
    }

    const fn descriptor<P: Plugin>(&mut self) {
        const { assert!(SECTION_FORMAT < 10, "the format is written as one digit") };
        self.byte(b'{');
        self.key(true, "format");
        self.byte(b'0' + SECTION_FORMAT);
        self.key(false, "abi_version");
        self.string(ABI_VERSION);
        self.key(false, "manifest");
        self.manifest(&P::MANIFEST);
        self.key(false, "routes");
        self.routes(P::ROUTES);
        self.byte(b'}');
    }
}

const fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
    }
}

/// The length of `P`'s descriptor section.
pub const fn descriptor_section_len<P: Plugin>() -> usize {
    let mut counter = SectionWriter::<0>::new();
    counter.descriptor::<P>();
    counter.len
}

/// `P`'s descriptor section; `N` is [`descriptor_section_len`].
pub const fn descriptor_section<P: Plugin, const N: usize>() -> [u8; N] {
    let mut writer = SectionWriter::<N>::new();
    writer.descriptor::<P>();
    assert!(writer.len == N, "descriptor section length changed");
    writer.bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{prelude::*, route::SectionDescriptor};

    #[derive(Default)]
    struct Quoting;

    async fn answer(_: &Quoting, _: Request<'_>) -> Result<Json<u8>, ApiError> {
        Ok(Json(1))
    }

    impl Plugin for Quoting {
        const MANIFEST: PluginManifest =
            PluginManifest::new("quoting", "Say \"hi\"\\\n\tthere — ünïcode", "1.0.0")
                .depends_on(&["game-worlds ^1", "game-sessions"])
                .permissions(&["log:emit"])
                .deliver_events_per_instance()
                .disabled();
        const ROUTES: &'static [Route<Self>] = &[
            Route::get("/quoting/{id}", "Quotes \u{1}", answer).public(),
            Route::delete("/quoting", "", answer).admin(),
        ];
    }

    #[test]
    fn the_section_is_the_json_of_the_live_manifest_and_routes() {
        const LEN: usize = descriptor_section_len::<Quoting>();
        const BYTES: [u8; LEN] = descriptor_section::<Quoting, LEN>();
        let section: SectionDescriptor = serde_json::from_slice(&BYTES).unwrap();
        assert_eq!(section.format, SECTION_FORMAT);
        assert_eq!(section.abi_version, ABI_VERSION);
        assert_eq!(section.manifest, Quoting::MANIFEST.to_manifest());
        let live: Vec<_> = Quoting::ROUTES.iter().map(Route::to_spec).collect();
        assert_eq!(section.routes, live);
    }
}
