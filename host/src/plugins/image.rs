//! Checks a plugin library's bytes before the dynamic loader sees them.
//!
//! The dynamic loader trusts the file it maps: a truncated library (an interrupted copy)
//! gets mapped past its end and the host dies of SIGBUS inside `dlopen`. So the host reads
//! the whole file and [`inspect_library`] checks, in this platform's object format, that it
//! is a shared library for this machine and that everything the loader will map or read
//! (headers, segments, sections, the dynamic table and the strings it names) lies inside
//! the bytes it has. Only a library that passes is copied and opened. The check also finds
//! the plugin descriptor section ([`DESCRIPTOR_SECTION`]). Nothing here panics or indexes
//! out of bounds, whatever the bytes: every offset is computed with checked arithmetic.

use std::fmt;

/// What the checks found in a library that passed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibraryImage<'a> {
    /// The bytes of the plugin descriptor section, if the library has one.
    pub descriptor: Option<&'a [u8]>,
}

/// Why a file is not a library this host may load: one line, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError(pub String);

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImageError {}

/// The descriptor section's name in this platform's object format (defined by the ABI).
pub use plugin_api::abi::DESCRIPTOR_SECTION;

/// Checks that `bytes` (a whole file) are a shared library this host's dynamic loader may
/// open safely, and finds the descriptor section in them.
pub fn inspect_library(bytes: &[u8]) -> Result<LibraryImage<'_>, ImageError> {
    inspect_platform(bytes)
}

#[cfg(target_vendor = "apple")]
fn inspect_platform(bytes: &[u8]) -> Result<LibraryImage<'_>, ImageError> {
    inspect_object(bytes, object::BinaryFormat::MachO, Some("__DATA"))
}

#[cfg(windows)]
fn inspect_platform(bytes: &[u8]) -> Result<LibraryImage<'_>, ImageError> {
    inspect_object(bytes, object::BinaryFormat::Pe, None)
}

#[cfg(not(any(target_vendor = "apple", windows)))]
fn inspect_platform(bytes: &[u8]) -> Result<LibraryImage<'_>, ImageError> {
    inspect_elf(bytes)
}

fn fail<T>(message: impl Into<String>) -> Result<T, ImageError> {
    Err(ImageError(message.into()))
}

/// The end of `size` bytes at `offset`, if they lie inside a file of `len` bytes.
fn inside(
    what: impl FnOnce() -> String,
    offset: u64,
    size: u64,
    len: u64,
) -> Result<u64, ImageError> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(end),
        Some(end) => fail(format!(
            "truncated: {} ends at byte {end}, but the file has {len} bytes",
            what()
        )),
        None => fail(format!(
            "corrupt: {} has offset {offset} and size {size}, which overflow",
            what()
        )),
    }
}

/// `size` bytes at `offset`, if they are there.
fn slice(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

/// How a file of another format than this platform's is called, for the message.
fn foreign_format(bytes: &[u8]) -> Option<&'static str> {
    use object::FileKind;
    Some(match FileKind::parse(bytes).ok()? {
        FileKind::Elf32 | FileKind::Elf64 => "an ELF file",
        FileKind::MachO32 | FileKind::MachO64 => "a Mach-O file (macOS)",
        FileKind::MachOFat32 | FileKind::MachOFat64 => "a universal Mach-O file (macOS)",
        FileKind::Pe32 | FileKind::Pe64 => "a PE file (Windows)",
        _ => return None,
    })
}

/// The message for a file that is not of the expected format at all.
fn not_a_library(bytes: &[u8], expected: &str) -> ImageError {
    if bytes.is_empty() {
        return ImageError("not a shared library: the file is empty".to_owned());
    }
    if let Some(format) = foreign_format(bytes) {
        return ImageError(format!("{format}, expected {expected}"));
    }
    let shown = bytes.get(..8).unwrap_or(bytes);
    let hex: Vec<String> = shown.iter().map(|byte| format!("{byte:02x}")).collect();
    let more = if bytes.len() > shown.len() {
        " ..."
    } else {
        ""
    };
    ImageError(format!(
        "not a shared library: the file starts with {}{more} ({} bytes), expected {expected}",
        hex.join(" "),
        bytes.len()
    ))
}

// ---------------------------------------------------------------------------------------
// ELF
// ---------------------------------------------------------------------------------------

use object::elf::{
    DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB, DT_SYMTAB,
    ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ELFMAG, EM_386, EM_AARCH64, EM_ARM,
    EM_LOONGARCH, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64, ET_CORE, ET_DYN, ET_EXEC, ET_NONE,
    ET_REL, EV_CURRENT, PN_XNUM, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_GNU_PROPERTY, PT_GNU_RELRO,
    PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_NOTE, PT_NULL, PT_PHDR, PT_TLS, SHN_UNDEF, SHN_XINDEX,
    SHT_NOBITS, SHT_NULL,
};

#[cfg(target_pointer_width = "64")]
const HOST_CLASS: u8 = ELFCLASS64;
#[cfg(not(target_pointer_width = "64"))]
const HOST_CLASS: u8 = ELFCLASS32;

#[cfg(target_endian = "little")]
const HOST_DATA: u8 = ELFDATA2LSB;
#[cfg(target_endian = "big")]
const HOST_DATA: u8 = ELFDATA2MSB;

/// Where the fields this module reads are, in one ELF class.
struct Layout {
    ehsize: u64,
    e_phoff: u64,
    e_shoff: u64,
    e_phentsize: u64,
    e_phnum: u64,
    e_shentsize: u64,
    e_shnum: u64,
    e_shstrndx: u64,
    phentsize: u64,
    p_offset: u64,
    p_vaddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    shentsize: u64,
    sh_offset: u64,
    sh_size: u64,
    sh_link: u64,
    sh_info: u64,
    dynsize: u64,
    symsize: u64,
}

const LAYOUT64: Layout = Layout {
    ehsize: 64,
    e_phoff: 32,
    e_shoff: 40,
    e_phentsize: 54,
    e_phnum: 56,
    e_shentsize: 58,
    e_shnum: 60,
    e_shstrndx: 62,
    phentsize: 56,
    p_offset: 8,
    p_vaddr: 16,
    p_filesz: 32,
    p_memsz: 40,
    shentsize: 64,
    sh_offset: 24,
    sh_size: 32,
    sh_link: 40,
    sh_info: 44,
    dynsize: 16,
    symsize: 24,
};

const LAYOUT32: Layout = Layout {
    ehsize: 52,
    e_phoff: 28,
    e_shoff: 32,
    e_phentsize: 42,
    e_phnum: 44,
    e_shentsize: 46,
    e_shnum: 48,
    e_shstrndx: 50,
    phentsize: 32,
    p_offset: 4,
    p_vaddr: 8,
    p_filesz: 16,
    p_memsz: 20,
    shentsize: 40,
    sh_offset: 16,
    sh_size: 20,
    sh_link: 24,
    sh_info: 28,
    dynsize: 8,
    symsize: 16,
};

/// Reads fields of an ELF file of this host's class and byte order, at any alignment.
struct Elf<'a> {
    bytes: &'a [u8],
    len: u64,
    layout: &'static Layout,
}

impl Elf<'_> {
    fn array<const N: usize>(&self, at: u64) -> Result<[u8; N], ImageError> {
        match slice(self.bytes, at, N as u64).and_then(|bytes| bytes.try_into().ok()) {
            Some(array) => Ok(array),
            None => fail(format!(
                "truncated: a {N}-byte field at byte {at} is past the end of the file ({} bytes)",
                self.len
            )),
        }
    }

    fn u16(&self, at: u64) -> Result<u16, ImageError> {
        let bytes = self.array(at)?;
        Ok(if HOST_DATA == ELFDATA2LSB {
            u16::from_le_bytes(bytes)
        } else {
            u16::from_be_bytes(bytes)
        })
    }

    fn u32(&self, at: u64) -> Result<u32, ImageError> {
        let bytes = self.array(at)?;
        Ok(if HOST_DATA == ELFDATA2LSB {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        })
    }

    fn u64(&self, at: u64) -> Result<u64, ImageError> {
        let bytes = self.array(at)?;
        Ok(if HOST_DATA == ELFDATA2LSB {
            u64::from_le_bytes(bytes)
        } else {
            u64::from_be_bytes(bytes)
        })
    }

    /// An address-sized field (`Elf64_Addr`/`Elf64_Off`/`Elf64_Xword` or their 32-bit forms).
    fn word(&self, at: u64) -> Result<u64, ImageError> {
        if self.layout.ehsize == LAYOUT64.ehsize {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }

    /// A signed address-sized field (`d_tag`).
    fn signed_word(&self, at: u64) -> Result<i64, ImageError> {
        if self.layout.ehsize == LAYOUT64.ehsize {
            self.u64(at).map(|value| value as i64)
        } else {
            self.u32(at).map(|value| i64::from(value as i32))
        }
    }

    /// The `index`th entry of a table of `entsize`-byte entries at `table`.
    fn entry(&self, table: u64, index: u64, entsize: u64) -> Result<u64, ImageError> {
        index
            .checked_mul(entsize)
            .and_then(|relative| relative.checked_add(table))
            .map_or_else(|| fail("corrupt: a table entry's offset overflows"), Ok)
    }
}

struct ProgramHeader {
    index: u64,
    p_type: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

impl ProgramHeader {
    fn describe(&self) -> String {
        format!(
            "program header {} ({})",
            self.index,
            segment_type(self.p_type)
        )
    }

    /// The file offset of `size` bytes at address `addr`, if this loadable segment holds
    /// them in its file part.
    fn file_offset(&self, addr: u64, size: u64) -> Option<u64> {
        let relative = addr.checked_sub(self.vaddr)?;
        (relative.checked_add(size)? <= self.filesz).then_some(self.offset.checked_add(relative)?)
    }
}

struct SectionHeader {
    index: u64,
    name: u32,
    sh_type: u32,
    offset: u64,
    size: u64,
}

fn segment_type(p_type: u32) -> String {
    let name = match p_type {
        PT_NULL => "PT_NULL",
        PT_LOAD => "PT_LOAD",
        PT_DYNAMIC => "PT_DYNAMIC",
        PT_INTERP => "PT_INTERP",
        PT_NOTE => "PT_NOTE",
        PT_PHDR => "PT_PHDR",
        PT_TLS => "PT_TLS",
        PT_GNU_EH_FRAME => "PT_GNU_EH_FRAME",
        PT_GNU_STACK => "PT_GNU_STACK",
        PT_GNU_RELRO => "PT_GNU_RELRO",
        PT_GNU_PROPERTY => "PT_GNU_PROPERTY",
        other => return format!("type {other:#x}"),
    };
    name.to_owned()
}

fn machine_name(machine: u16) -> String {
    let name = match machine {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_386 => "x86",
        EM_ARM => "arm",
        EM_RISCV => "riscv",
        EM_PPC64 => "powerpc64",
        EM_S390 => "s390x",
        EM_LOONGARCH => "loongarch64",
        other => return format!("ELF machine {other}"),
    };
    name.to_owned()
}

/// The ELF machine this host's libraries have, where it is known.
fn host_machine() -> Option<u16> {
    match std::env::consts::ARCH {
        "x86_64" => Some(EM_X86_64),
        "aarch64" => Some(EM_AARCH64),
        _ => None,
    }
}

fn class_name(class: u8) -> String {
    match class {
        ELFCLASS32 => "32-bit (ELFCLASS32)".to_owned(),
        ELFCLASS64 => "64-bit (ELFCLASS64)".to_owned(),
        other => format!("unknown class {other}"),
    }
}

fn data_name(data: u8) -> String {
    match data {
        ELFDATA2LSB => "little-endian (ELFDATA2LSB)".to_owned(),
        ELFDATA2MSB => "big-endian (ELFDATA2MSB)".to_owned(),
        other => format!("unknown byte order {other}"),
    }
}

/// The NUL-terminated string at `offset` in `table`, without its NUL.
fn string_at(table: &[u8], offset: u64) -> Option<&[u8]> {
    let tail = table.get(usize::try_from(offset).ok()?..)?;
    let end = tail.iter().position(|&byte| byte == 0)?;
    tail.get(..end)
}

#[cfg_attr(any(target_vendor = "apple", windows), allow(dead_code))]
fn inspect_elf(bytes: &[u8]) -> Result<LibraryImage<'_>, ImageError> {
    const EXPECTED: &str = "an ELF shared library";
    let len = bytes.len() as u64;
    if bytes.get(..4) != Some(&ELFMAG[..]) {
        return Err(not_a_library(bytes, EXPECTED));
    }
    let header_too_short = || {
        fail(format!(
            "truncated: the ELF header ends at byte {len}, in its identification bytes"
        ))
    };
    let Some(&class) = bytes.get(4) else {
        return header_too_short();
    };
    if class != HOST_CLASS {
        return fail(format!(
            "a {} ELF file, this host is {}",
            class_name(class),
            class_name(HOST_CLASS)
        ));
    }
    let Some(&data) = bytes.get(5) else {
        return header_too_short();
    };
    if data != HOST_DATA {
        return fail(format!(
            "a {} ELF file, this host is {}",
            data_name(data),
            data_name(HOST_DATA)
        ));
    }
    let Some(&version) = bytes.get(6) else {
        return header_too_short();
    };
    if version != EV_CURRENT {
        return fail(format!(
            "ELF identification version {version}, expected {EV_CURRENT} (EV_CURRENT)"
        ));
    }
    let layout = if class == ELFCLASS64 {
        &LAYOUT64
    } else {
        &LAYOUT32
    };
    inside(|| "the ELF header".to_owned(), 0, layout.ehsize, len)?;
    let elf = Elf { bytes, len, layout };

    let e_type = elf.u16(16)?;
    if e_type != ET_DYN {
        let found = match e_type {
            ET_NONE => "an ELF file of no type (ET_NONE)".to_owned(),
            ET_REL => "an ELF relocatable object (ET_REL)".to_owned(),
            ET_EXEC => "an ELF executable (ET_EXEC)".to_owned(),
            ET_CORE => "an ELF core dump (ET_CORE)".to_owned(),
            other => format!("an ELF file of type {other:#x}"),
        };
        return fail(format!("{found}, expected a shared library (ET_DYN)"));
    }
    let machine = elf.u16(18)?;
    if let Some(host) = host_machine() {
        if machine != host {
            return fail(format!(
                "built for {}, this host is {}",
                machine_name(machine),
                std::env::consts::ARCH
            ));
        }
    }

    let phoff = elf.word(layout.e_phoff)?;
    let shoff = elf.word(layout.e_shoff)?;
    let phentsize = u64::from(elf.u16(layout.e_phentsize)?);
    let e_phnum = elf.u16(layout.e_phnum)?;
    let shentsize = u64::from(elf.u16(layout.e_shentsize)?);
    let e_shnum = elf.u16(layout.e_shnum)?;
    let e_shstrndx = elf.u16(layout.e_shstrndx)?;

    // Section 0 holds the counts and the index that do not fit in the ELF header.
    let has_sections = shoff != 0;
    if has_sections && shentsize != layout.shentsize {
        return fail(format!(
            "section header entry size {shentsize}, expected {}",
            layout.shentsize
        ));
    }
    let section_zero = |field: u64| -> Result<u64, ImageError> {
        if !has_sections {
            return fail(
                "corrupt: the ELF header refers to section 0, but there is no section header table",
            );
        }
        inside(
            || "section header 0".to_owned(),
            shoff,
            layout.shentsize,
            len,
        )?;
        if field == layout.sh_size {
            elf.word(shoff.saturating_add(field))
        } else {
            elf.u32(shoff.saturating_add(field)).map(u64::from)
        }
    };

    // Program headers.
    let phnum = if e_phnum == PN_XNUM {
        section_zero(layout.sh_info)?
    } else {
        u64::from(e_phnum)
    };
    if phnum == 0 {
        return fail("no program headers: nothing the dynamic loader could map");
    }
    if phentsize != layout.phentsize {
        return fail(format!(
            "program header entry size {phentsize}, expected {}",
            layout.phentsize
        ));
    }
    let table_size = phnum.checked_mul(phentsize).map_or_else(
        || fail("corrupt: the program header table's size overflows"),
        Ok,
    )?;
    inside(
        || format!("the program header table ({phnum} entries at byte {phoff})"),
        phoff,
        table_size,
        len,
    )?;
    let mut segments = Vec::new();
    for index in 0..phnum {
        let at = elf.entry(phoff, index, phentsize)?;
        let segment = ProgramHeader {
            index,
            p_type: elf.u32(at)?,
            offset: elf.word(at.saturating_add(layout.p_offset))?,
            vaddr: elf.word(at.saturating_add(layout.p_vaddr))?,
            filesz: elf.word(at.saturating_add(layout.p_filesz))?,
            memsz: elf.word(at.saturating_add(layout.p_memsz))?,
        };
        if segment.filesz > 0 {
            inside(|| segment.describe(), segment.offset, segment.filesz, len)?;
        }
        if segment.p_type == PT_LOAD && segment.filesz > segment.memsz {
            return fail(format!(
                "corrupt: {} has {} bytes in the file but only {} in memory",
                segment.describe(),
                segment.filesz,
                segment.memsz
            ));
        }
        segments.push(segment);
    }
    let loads: Vec<&ProgramHeader> = segments.iter().filter(|s| s.p_type == PT_LOAD).collect();
    if loads.is_empty() {
        return fail("no loadable segment (PT_LOAD): nothing the dynamic loader could map");
    }

    // Sections.
    let descriptor = if has_sections {
        let shnum = if e_shnum == 0 {
            section_zero(layout.sh_size)?
        } else {
            u64::from(e_shnum)
        };
        let table_size = shnum.checked_mul(shentsize).map_or_else(
            || fail("corrupt: the section header table's size overflows"),
            Ok,
        )?;
        inside(
            || format!("the section header table ({shnum} entries at byte {shoff})"),
            shoff,
            table_size,
            len,
        )?;
        let mut sections = Vec::new();
        for index in 0..shnum {
            let at = elf.entry(shoff, index, shentsize)?;
            sections.push(SectionHeader {
                index,
                name: elf.u32(at)?,
                sh_type: elf.u32(at.saturating_add(4))?,
                offset: elf.word(at.saturating_add(layout.sh_offset))?,
                size: elf.word(at.saturating_add(layout.sh_size))?,
            });
        }
        check_sections(bytes, &elf, &sections, e_shstrndx, section_zero)?
    } else {
        None
    };

    check_dynamic(bytes, &elf, &segments, &loads)?;
    Ok(LibraryImage { descriptor })
}

/// Checks the section name table and every section's file range; returns the descriptor
/// section's bytes.
fn check_sections<'a>(
    bytes: &'a [u8],
    elf: &Elf<'a>,
    sections: &[SectionHeader],
    e_shstrndx: u16,
    section_zero: impl Fn(u64) -> Result<u64, ImageError>,
) -> Result<Option<&'a [u8]>, ImageError> {
    let len = elf.len;
    let shstrndx = match e_shstrndx {
        SHN_XINDEX => section_zero(elf.layout.sh_link)?,
        index => u64::from(index),
    };
    let names: Option<&[u8]> = if shstrndx == u64::from(SHN_UNDEF) {
        None
    } else {
        let Some(table) = usize::try_from(shstrndx).ok().and_then(|i| sections.get(i)) else {
            return fail(format!(
                "corrupt: the section name table is section {shstrndx}, but there are {} sections",
                sections.len()
            ));
        };
        if table.sh_type == SHT_NOBITS {
            return fail(format!(
                "corrupt: the section name table (section {shstrndx}) has no bytes in the file (SHT_NOBITS)"
            ));
        }
        inside(
            || format!("the section name table (section {shstrndx})"),
            table.offset,
            table.size,
            len,
        )?;
        slice(bytes, table.offset, table.size)
    };

    let mut descriptor = None;
    for section in sections {
        if section.sh_type == SHT_NULL {
            continue;
        }
        let name = match names {
            Some(names) => match string_at(names, u64::from(section.name)) {
                Some(name) => Some(name),
                None => {
                    return fail(format!(
                        "corrupt: section {}'s name (offset {}) is not a NUL-terminated string \
                         inside the section name table ({} bytes)",
                        section.index,
                        section.name,
                        names.len()
                    ))
                }
            },
            None => None,
        };
        let describe = || match name {
            Some(name) => format!(
                "section {} ({})",
                section.index,
                String::from_utf8_lossy(name)
            ),
            None => format!("section {}", section.index),
        };
        if section.sh_type != SHT_NOBITS && section.size > 0 {
            inside(describe, section.offset, section.size, len)?;
        }
        if name == Some(DESCRIPTOR_SECTION.as_bytes()) {
            if descriptor.is_some() {
                return fail(format!(
                    "corrupt: more than one section named {DESCRIPTOR_SECTION}"
                ));
            }
            if section.sh_type == SHT_NOBITS {
                return fail(format!(
                    "corrupt: the descriptor section {DESCRIPTOR_SECTION} has no bytes in the file (SHT_NOBITS)"
                ));
            }
            inside(describe, section.offset, section.size, len)?;
            descriptor = slice(bytes, section.offset, section.size);
        }
    }
    Ok(descriptor)
}

/// Checks the dynamic segment and the strings its entries name.
fn check_dynamic(
    bytes: &[u8],
    elf: &Elf<'_>,
    segments: &[ProgramHeader],
    loads: &[&ProgramHeader],
) -> Result<(), ImageError> {
    let layout = elf.layout;
    let mut dynamics = segments.iter().filter(|s| s.p_type == PT_DYNAMIC);
    let (Some(dynamic), None) = (dynamics.next(), dynamics.next()) else {
        let count = segments.iter().filter(|s| s.p_type == PT_DYNAMIC).count();
        return fail(if count == 0 {
            "no dynamic segment (PT_DYNAMIC): not a dynamically linked shared library".to_owned()
        } else {
            format!("corrupt: {count} dynamic segments (PT_DYNAMIC), expected one")
        });
    };
    if dynamic.filesz == 0 {
        return fail(format!("corrupt: {} is empty", dynamic.describe()));
    }
    let end = inside(
        || dynamic.describe(),
        dynamic.offset,
        dynamic.filesz,
        elf.len,
    )?;
    let Some(load) = loads.iter().find(|load| {
        load.offset <= dynamic.offset && load.offset.saturating_add(load.filesz) >= end
    }) else {
        return fail(format!(
            "corrupt: {} (bytes {}..{end}) is not inside any loadable segment (PT_LOAD)",
            dynamic.describe(),
            dynamic.offset
        ));
    };
    if load.file_offset(dynamic.vaddr, dynamic.filesz) != Some(dynamic.offset) {
        return fail(format!(
            "corrupt: {} is at address {:#x} but byte {}, which {} maps elsewhere",
            dynamic.describe(),
            dynamic.vaddr,
            dynamic.offset,
            load.describe()
        ));
    }
    if dynamic.filesz % layout.dynsize != 0 {
        return fail(format!(
            "corrupt: {} has {} bytes, not a whole number of {}-byte entries",
            dynamic.describe(),
            dynamic.filesz,
            layout.dynsize
        ));
    }

    let (mut strtab, mut symtab, mut strsz) = (None, None, None);
    let mut strings = Vec::new();
    let mut terminated = false;
    for index in 0..dynamic.filesz / layout.dynsize {
        let at = elf.entry(dynamic.offset, index, layout.dynsize)?;
        let tag = elf.signed_word(at)?;
        let value = elf.word(at.saturating_add(layout.dynsize / 2))?;
        match u32::try_from(tag) {
            Ok(DT_NULL) => {
                terminated = true;
                break;
            }
            // As glibc does, the last of each wins.
            Ok(DT_STRTAB) => strtab = Some(value),
            Ok(DT_SYMTAB) => symtab = Some(value),
            Ok(DT_STRSZ) => strsz = Some(value),
            Ok(DT_NEEDED) => strings.push(("DT_NEEDED", index, value)),
            Ok(DT_SONAME) => strings.push(("DT_SONAME", index, value)),
            Ok(DT_RPATH) => strings.push(("DT_RPATH", index, value)),
            Ok(DT_RUNPATH) => strings.push(("DT_RUNPATH", index, value)),
            _ => {}
        }
    }
    if !terminated {
        return fail(format!(
            "corrupt: {} has no terminating DT_NULL entry",
            dynamic.describe()
        ));
    }
    let missing = |tag: &str| fail(format!("corrupt: the dynamic segment has no {tag} entry"));
    let Some(strtab) = strtab else {
        return missing("DT_STRTAB");
    };
    let Some(symtab) = symtab else {
        return missing("DT_SYMTAB");
    };
    let Some(strsz) = strsz else {
        return missing("DT_STRSZ");
    };
    let translate =
        |addr: u64, size: u64| loads.iter().find_map(|load| load.file_offset(addr, size));
    if translate(symtab, layout.symsize).is_none() {
        return fail(format!(
            "corrupt: the dynamic symbol table (DT_SYMTAB, address {symtab:#x}) is not in the \
             file part of any loadable segment"
        ));
    }
    let Some(table) = translate(strtab, strsz).and_then(|offset| slice(bytes, offset, strsz))
    else {
        return fail(format!(
            "corrupt: the dynamic string table (DT_STRTAB, address {strtab:#x}, {strsz} bytes) \
             is not in the file part of any loadable segment"
        ));
    };
    for (tag, index, offset) in strings {
        if string_at(table, offset).is_none() {
            return fail(format!(
                "corrupt: dynamic entry {index} ({tag}) names string offset {offset}, not a \
                 NUL-terminated string inside the dynamic string table ({strsz} bytes)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Other formats (Mach-O, PE), through `object`'s generic reader.
// ---------------------------------------------------------------------------------------

/// Checks a shared library of `expected` format (compiled everywhere, used off ELF
/// platforms): this host's format, kind and architecture, every segment inside the file,
/// and the descriptor section (in `segment`, where the format has segments).
#[cfg_attr(not(any(target_vendor = "apple", windows)), allow(dead_code))]
fn inspect_object<'a>(
    bytes: &'a [u8],
    expected: object::BinaryFormat,
    segment: Option<&str>,
) -> Result<LibraryImage<'a>, ImageError> {
    use object::{Architecture, Object, ObjectKind, ObjectSection, ObjectSegment};
    let expected_name = format!("a {expected:?} shared library");
    let file = match object::File::parse(bytes) {
        Ok(file) => file,
        Err(error) => {
            return Err(match foreign_format(bytes) {
                Some(_) => ImageError(format!("not a loadable {expected:?} file: {error}")),
                None => not_a_library(bytes, &expected_name),
            })
        }
    };
    if file.format() != expected {
        return fail(format!(
            "a {:?} file, expected {expected_name}",
            file.format()
        ));
    }
    if file.kind() != ObjectKind::Dynamic {
        return fail(format!(
            "a {:?} {:?} file, expected {expected_name}",
            file.kind(),
            expected
        ));
    }
    let host = match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Aarch64),
        "x86" => Some(Architecture::I386),
        _ => None,
    };
    if host.is_some_and(|host| host != file.architecture()) {
        return fail(format!(
            "built for {:?}, this host is {}",
            file.architecture(),
            std::env::consts::ARCH
        ));
    }
    let len = bytes.len() as u64;
    for (index, found) in file.segments().enumerate() {
        let (offset, size) = found.file_range();
        let name = found.name().ok().flatten().unwrap_or("").to_owned();
        inside(|| format!("segment {index} {name}"), offset, size, len)?;
    }
    let mut descriptor = None;
    for section in file.sections() {
        if section.name() != Ok(DESCRIPTOR_SECTION) {
            continue;
        }
        if segment.is_some() && section.segment_name().ok().flatten() != segment {
            continue;
        }
        if let Some((offset, size)) = section.file_range() {
            inside(
                || format!("the descriptor section {DESCRIPTOR_SECTION}"),
                offset,
                size,
                len,
            )?;
        }
        match section.data() {
            Ok(data) => descriptor = Some(data),
            Err(error) => {
                return fail(format!(
                    "corrupt: the descriptor section {DESCRIPTOR_SECTION} cannot be read: {error}"
                ))
            }
        }
    }
    Ok(LibraryImage { descriptor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: &[u8]) -> String {
        match inspect_library(bytes) {
            Ok(_) => panic!("accepted {bytes:?}"),
            Err(ImageError(message)) => {
                assert!(!message.contains('\n'), "{message}");
                message
            }
        }
    }

    /// A 64-bit ELF header of this host's byte order: `e_type`, `e_machine`, and nothing
    /// after the header.
    fn elf_header(e_type: u16, machine: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(&ELFMAG);
        bytes[4] = ELFCLASS64;
        bytes[5] = HOST_DATA;
        bytes[6] = EV_CURRENT;
        let put = |bytes: &mut Vec<u8>, at: usize, value: u16| {
            let value = if HOST_DATA == ELFDATA2LSB {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            bytes[at..at + 2].copy_from_slice(&value);
        };
        put(&mut bytes, 16, e_type);
        put(&mut bytes, 18, machine);
        put(&mut bytes, 52, 64); // e_ehsize
        put(&mut bytes, 54, 56); // e_phentsize
        put(&mut bytes, 58, 64); // e_shentsize
        bytes
    }

    fn this_machine() -> u16 {
        host_machine().unwrap_or(EM_X86_64)
    }

    #[test]
    fn empty_and_short_files_are_not_libraries() {
        assert_eq!(message(b""), "not a shared library: the file is empty");
        let three = message(b"\x7fEL");
        assert!(
            three.starts_with("not a shared library: the file starts with 7f 45 4c (3 bytes)"),
            "{three}"
        );
        let four = message(b"\x7fELF");
        assert!(four.starts_with("truncated: the ELF header"), "{four}");
    }

    #[test]
    fn a_text_file_is_shown_by_its_first_bytes() {
        let text = message(b"#!/bin/sh\necho hello\n");
        assert!(
            text.starts_with(
                "not a shared library: the file starts with 23 21 2f 62 69 6e 2f 73 ..."
            ),
            "{text}"
        );
    }

    #[test]
    fn a_header_only_elf_is_truncated() {
        let mut bytes = elf_header(ET_DYN, this_machine());
        let full = message(&bytes);
        assert_eq!(
            full,
            "no program headers: nothing the dynamic loader could map"
        );
        bytes.truncate(40);
        assert_eq!(
            message(&bytes),
            "truncated: the ELF header ends at byte 64, but the file has 40 bytes"
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn other_types_classes_and_byte_orders_are_named() {
        assert_eq!(
            message(&elf_header(ET_EXEC, this_machine())),
            "an ELF executable (ET_EXEC), expected a shared library (ET_DYN)"
        );
        assert_eq!(
            message(&elf_header(ET_REL, this_machine())),
            "an ELF relocatable object (ET_REL), expected a shared library (ET_DYN)"
        );
        let mut bytes = elf_header(ET_DYN, this_machine());
        bytes[4] = ELFCLASS32;
        assert_eq!(
            message(&bytes),
            "a 32-bit (ELFCLASS32) ELF file, this host is 64-bit (ELFCLASS64)"
        );
        let mut bytes = elf_header(ET_DYN, this_machine());
        bytes[5] = if HOST_DATA == ELFDATA2LSB {
            ELFDATA2MSB
        } else {
            ELFDATA2LSB
        };
        assert!(message(&bytes).contains("ELF file, this host is"));
        let mut bytes = elf_header(ET_DYN, this_machine());
        bytes[6] = 0;
        assert_eq!(
            message(&bytes),
            "ELF identification version 0, expected 1 (EV_CURRENT)"
        );
    }

    #[test]
    fn the_wrong_machine_is_named() {
        let Some(host) = host_machine() else {
            return;
        };
        let other = if host == EM_X86_64 {
            EM_AARCH64
        } else {
            EM_X86_64
        };
        assert_eq!(
            message(&elf_header(ET_DYN, other)),
            format!(
                "built for {}, this host is {}",
                machine_name(other),
                std::env::consts::ARCH
            )
        );
        assert_eq!(
            message(&elf_header(ET_DYN, 4242)),
            format!(
                "built for ELF machine 4242, this host is {}",
                std::env::consts::ARCH
            )
        );
    }

    #[test]
    fn other_formats_are_named() {
        let mut macho = vec![0xcf, 0xfa, 0xed, 0xfe];
        macho.resize(64, 0);
        let found = message(&macho);
        if cfg!(not(any(target_vendor = "apple", windows))) {
            assert!(
                found.starts_with("a Mach-O file (macOS), expected"),
                "{found}"
            );
        }
    }

    #[test]
    fn huge_offsets_do_not_overflow() {
        let mut bytes = elf_header(ET_DYN, this_machine());
        let word = |value: u64| {
            if HOST_DATA == ELFDATA2LSB {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            }
        };
        bytes[32..40].copy_from_slice(&word(u64::MAX - 8)); // e_phoff
        bytes[56] = 1; // e_phnum (either byte order: nonzero)
        let found = message(&bytes);
        assert!(
            found.starts_with("corrupt: the program header table"),
            "{found}"
        );
        bytes[32..40].copy_from_slice(&word(1 << 40));
        let found = message(&bytes);
        assert!(
            found.starts_with("truncated: the program header table"),
            "{found}"
        );
    }
}
