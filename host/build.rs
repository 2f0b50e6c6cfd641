//! Unpacks the files `GET /docs` serves from the Swagger UI release zip (the
//! `utoipa-swagger-ui-vendored` crate) into `OUT_DIR`, and writes `swagger_ui.rs`, which
//! embeds them (`host::pages`). The binary then needs nothing from the network to show its
//! API page.

use std::{fmt::Write as _, path::Path};

/// The files of the release's `dist/` folder the page uses (the rest are other bundles,
/// source maps and the stock page, which the host replaces with its own), and the licence
/// the release ships under, which travels with it.
const WANTED: [&str; 6] = [
    "dist/swagger-ui-bundle.js",
    "dist/swagger-ui.css",
    "dist/favicon-32x32.png",
    "dist/favicon-16x16.png",
    "LICENSE",
    "NOTICE",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out_dir = Path::new(&out_dir);
    let archive = utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED;
    let entries = zip_entries(archive).unwrap_or_else(|e| panic!("Swagger UI zip: {e}"));
    // Every entry sits under one folder, `swagger-ui-<version>/`.
    let root = entries
        .first()
        .and_then(|entry| entry.name.split('/').next())
        .expect("the Swagger UI zip is not empty");
    let version = root
        .strip_prefix("swagger-ui-")
        .unwrap_or_else(|| panic!("Swagger UI zip: unexpected root folder {root:?}"));
    let unpacked = out_dir.join("swagger-ui");
    std::fs::create_dir_all(&unpacked).expect("create OUT_DIR/swagger-ui");
    let mut generated = format!(
        "/// The Swagger UI release the binary embeds.\n\
         pub const SWAGGER_UI_VERSION: &str = {version:?};\n\
         /// Its files, by the name they are served under (below `/docs/`).\n\
         pub const SWAGGER_UI_FILES: &[(&str, &[u8])] = &[\n"
    );
    for wanted in WANTED {
        let name = format!("{root}/{wanted}");
        let entry = entries
            .iter()
            .find(|entry| entry.name == name)
            .unwrap_or_else(|| panic!("Swagger UI zip: no {name}"));
        let bytes = entry
            .contents(archive)
            .unwrap_or_else(|e| panic!("Swagger UI zip: {name}: {e}"));
        let served_as = wanted.rsplit('/').next().expect("a file name");
        std::fs::write(unpacked.join(served_as), bytes).expect("write an unpacked file");
        writeln!(
            generated,
            "    ({served_as:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/swagger-ui/{served_as}\"))),"
        )
        .expect("write to a String");
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("swagger_ui.rs"), generated).expect("write swagger_ui.rs");
}

/// One file of a zip archive, as its central directory describes it.
struct ZipEntry {
    name: String,
    method: u16,
    crc32: u32,
    compressed_size: usize,
    size: usize,
    local_header: usize,
}

impl ZipEntry {
    /// The file's bytes, inflated and checked against the directory's size and CRC-32.
    fn contents(&self, archive: &[u8]) -> Result<Vec<u8>, String> {
        let at = self.local_header;
        if read_u32(archive, at)? != 0x0403_4b50 {
            return Err("no local file header where the directory points".into());
        }
        let start =
            at + 30 + read_u16(archive, at + 26)? as usize + read_u16(archive, at + 28)? as usize;
        let data = archive
            .get(start..start + self.compressed_size)
            .ok_or("the file's data runs past the archive")?;
        let bytes = match self.method {
            0 => data.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec(data)
                .map_err(|e| format!("cannot inflate: {e:?}"))?,
            other => return Err(format!("compression method {other} is not supported")),
        };
        if bytes.len() != self.size || crc32(&bytes) != self.crc32 {
            return Err("its size or CRC-32 does not match the directory".into());
        }
        Ok(bytes)
    }
}

/// The entries of the central directory (PKWARE APPNOTE 4.3.12, 4.3.16; no ZIP64: the
/// release zip is a few MiB).
fn zip_entries(archive: &[u8]) -> Result<Vec<ZipEntry>, String> {
    let end = (0..archive.len().saturating_sub(21))
        .rev()
        .find(|&at| read_u32(archive, at) == Ok(0x0605_4b50))
        .ok_or("no end of central directory record")?;
    let count = read_u16(archive, end + 10)? as usize;
    let mut at = read_u32(archive, end + 16)? as usize;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        if read_u32(archive, at)? != 0x0201_4b50 {
            return Err("damaged central directory".into());
        }
        let name_length = read_u16(archive, at + 28)? as usize;
        let name = archive
            .get(at + 46..at + 46 + name_length)
            .ok_or("a name runs past the archive")?;
        entries.push(ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            method: read_u16(archive, at + 10)?,
            crc32: read_u32(archive, at + 16)?,
            compressed_size: read_u32(archive, at + 20)? as usize,
            size: read_u32(archive, at + 24)? as usize,
            local_header: read_u32(archive, at + 42)? as usize,
        });
        at += 46
            + name_length
            + read_u16(archive, at + 30)? as usize
            + read_u16(archive, at + 32)? as usize;
    }
    Ok(entries)
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, String> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated archive".to_owned())
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "truncated archive".to_owned())
}

/// CRC-32 (IEEE 802.3, reflected), as zip uses it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (index, slot) in table.iter_mut().enumerate() {
        let mut value = index as u32;
        for _ in 0..8 {
            value = if value & 1 == 1 {
                0xEDB8_8320 ^ (value >> 1)
            } else {
                value >> 1
            };
        }
        *slot = value;
    }
    !bytes.iter().fold(!0u32, |crc, &byte| {
        table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}
