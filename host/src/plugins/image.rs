//! Checks a plugin library's bytes before the dynamic loader sees them.
//!
//! The dynamic loader trusts the file it maps: a truncated library (an interrupted copy)
//! gets mapped past its end and the host dies of SIGBUS inside `dlopen`. So the host reads
//! the whole file and [`inspect_library`] checks, in this platform's object format, that it
//! is a shared library for this machine and that everything the loader will map or read
//! (headers, segments, sections, the dynamic table and the strings, hash, version and
//! relocation tables it names) lies inside the bytes it has, and that every relocation
//! writes inside a writable segment. A library that sets a search path for other libraries
//! (`DT_RPATH`, `DT_RUNPATH`) is refused. Only a library that passes is copied and opened.
//! The check also finds the plugin descriptor section ([`DESCRIPTOR_SECTION`]). Nothing
//! here panics or indexes out of bounds, whatever the bytes: every offset is computed with
//! checked arithmetic.

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

use std::collections::BTreeMap;

use object::elf::{
    DF_TEXTREL, DT_AUXILIARY, DT_FILTER, DT_FINI, DT_FINI_ARRAY, DT_FINI_ARRAYSZ, DT_FLAGS,
    DT_GNU_HASH, DT_HASH, DT_INIT, DT_INIT_ARRAY, DT_INIT_ARRAYSZ, DT_JMPREL, DT_NEEDED, DT_NULL,
    DT_PLTGOT, DT_PLTREL, DT_PLTRELSZ, DT_PREINIT_ARRAY, DT_PREINIT_ARRAYSZ, DT_REL, DT_RELA,
    DT_RELACOUNT, DT_RELAENT, DT_RELASZ, DT_RELCOUNT, DT_RELENT, DT_RELSZ, DT_RPATH, DT_RUNPATH,
    DT_SONAME, DT_STRSZ, DT_STRTAB, DT_SYMENT, DT_SYMTAB, DT_TEXTREL, DT_VERDEF, DT_VERNEED,
    DT_VERSYM, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ELFMAG, EM_386, EM_AARCH64,
    EM_ARM, EM_LOONGARCH, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64, ET_CORE, ET_DYN, ET_EXEC,
    ET_NONE, ET_REL, EV_CURRENT, PF_W, PF_X, PN_XNUM, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_GNU_PROPERTY,
    PT_GNU_RELRO, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_NOTE, PT_NULL, PT_PHDR, PT_TLS, SHN_UNDEF,
    SHN_XINDEX, SHT_NOBITS, SHT_NULL,
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
    p_flags: u64,
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
    /// How far `r_info` is shifted to give the symbol index (`ELF64_R_SYM`/`ELF32_R_SYM`).
    r_sym_shift: u32,
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
    p_flags: 4,
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
    r_sym_shift: 32,
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
    p_flags: 24,
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
    r_sym_shift: 8,
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
    flags: u32,
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

    /// Whether this segment's memory holds the `size` bytes at address `addr`.
    fn holds(&self, addr: u64, size: u64) -> bool {
        addr.checked_sub(self.vaddr)
            .and_then(|relative| relative.checked_add(size))
            .is_some_and(|end| end <= self.memsz)
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
            flags: elf.u32(at.saturating_add(layout.p_flags))?,
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

    let mut entries = BTreeMap::new();
    let mut strings = Vec::new();
    let mut terminated = false;
    for index in 0..dynamic.filesz / layout.dynsize {
        let at = elf.entry(dynamic.offset, index, layout.dynsize)?;
        let tag = elf.signed_word(at)?;
        let value = elf.word(at.saturating_add(layout.dynsize / 2))?;
        let Ok(tag) = u32::try_from(tag) else {
            continue;
        };
        if tag == DT_NULL {
            terminated = true;
            break;
        }
        if matches!(
            tag,
            DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH | DT_AUXILIARY | DT_FILTER
        ) {
            strings.push((tag, index, value));
        }
        // As glibc does, the last of each wins.
        entries.insert(tag, value);
    }
    if !terminated {
        return fail(format!(
            "corrupt: {} has no terminating DT_NULL entry",
            dynamic.describe()
        ));
    }
    let get = |tag: u32| entries.get(&tag).copied();
    let missing = |tag: &str| fail(format!("corrupt: the dynamic segment has no {tag} entry"));
    let Some(strtab) = get(DT_STRTAB) else {
        return missing("DT_STRTAB");
    };
    let Some(symtab) = get(DT_SYMTAB) else {
        return missing("DT_SYMTAB");
    };
    let Some(strsz) = get(DT_STRSZ) else {
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
    let mut needed = Vec::new();
    for (tag, index, offset) in strings {
        let Some(string) = string_at(table, offset) else {
            return fail(format!(
                "corrupt: dynamic entry {index} ({}) names string offset {offset}, not a \
                 NUL-terminated string inside the dynamic string table ({strsz} bytes)",
                tag_name(tag)
            ));
        };
        let shown = String::from_utf8_lossy(string);
        match tag {
            // The host opens a private copy of the plugin, which it checked; anything the
            // library makes the loader look for elsewhere is a file the host never saw.
            DT_RPATH | DT_RUNPATH => {
                return fail(format!(
                    "dynamic entry {index} ({}) sets a library search path {shown:?}: the host \
                     opens private copies of libraries, so a search path could make the dynamic \
                     loader open a file the host never checked; plugins are self-contained \
                     cdylibs and need none",
                    tag_name(tag)
                ))
            }
            DT_AUXILIARY | DT_FILTER => {
                return fail(format!(
                    "dynamic entry {index} ({}) makes the library a filter for {shown:?}: \
                     plugins are self-contained cdylibs and need no filtee libraries",
                    tag_name(tag)
                ))
            }
            DT_NEEDED if string.contains(&b'/') => {
                return fail(format!(
                    "dynamic entry {index} (DT_NEEDED) names a library by its path {shown:?}, \
                     which the dynamic loader would open without the host checking it"
                ))
            }
            DT_NEEDED => needed.push(string),
            _ => {}
        }
    }
    let textrel = get(DT_TEXTREL).is_some()
        || get(DT_FLAGS).is_some_and(|flags| flags & u64::from(DF_TEXTREL) != 0);
    Tables {
        elf,
        loads,
        entries: &entries,
        strings: table,
        symtab,
        textrel,
        needed,
    }
    .check()
}

/// `DT_RELR` and its companions (glibc 2.36), which `object` does not name yet.
const DT_RELRSZ: u32 = 35;
const DT_RELR: u32 = 36;
const DT_RELRENT: u32 = 37;

/// The relocation format of this platform's procedure linkage table (`DT_PLTREL`): glibc
/// asserts it.
const PLT_RELOCATION: u32 = if cfg!(any(target_arch = "x86", target_arch = "arm")) {
    DT_REL
} else {
    DT_RELA
};

/// The size of a `DT_HASH` table entry (`Elf_Symndx`): 8 bytes on s390x, 4 elsewhere.
const HASH_ENTRY: u64 = if cfg!(target_arch = "s390x") { 8 } else { 4 };

/// Whether `DT_INIT`/`DT_FINI` are code addresses (on 64-bit big-endian PowerPC they are
/// function descriptors, in data).
const INIT_IS_CODE: bool = !cfg!(all(target_arch = "powerpc64", target_endian = "big"));

/// The most version records (`DT_VERNEED`, `DT_VERDEF` and their auxiliary entries) a
/// library may have: real ones have a few dozen.
const MAX_VERSION_RECORDS: u64 = 1 << 16;

fn tag_name(tag: u32) -> String {
    let name = match tag {
        DT_NEEDED => "DT_NEEDED",
        DT_PLTRELSZ => "DT_PLTRELSZ",
        DT_PLTGOT => "DT_PLTGOT",
        DT_HASH => "DT_HASH",
        DT_STRTAB => "DT_STRTAB",
        DT_SYMTAB => "DT_SYMTAB",
        DT_RELA => "DT_RELA",
        DT_RELASZ => "DT_RELASZ",
        DT_RELAENT => "DT_RELAENT",
        DT_STRSZ => "DT_STRSZ",
        DT_SYMENT => "DT_SYMENT",
        DT_INIT => "DT_INIT",
        DT_FINI => "DT_FINI",
        DT_SONAME => "DT_SONAME",
        DT_RPATH => "DT_RPATH",
        DT_REL => "DT_REL",
        DT_RELSZ => "DT_RELSZ",
        DT_RELENT => "DT_RELENT",
        DT_PLTREL => "DT_PLTREL",
        DT_JMPREL => "DT_JMPREL",
        DT_INIT_ARRAY => "DT_INIT_ARRAY",
        DT_FINI_ARRAY => "DT_FINI_ARRAY",
        DT_INIT_ARRAYSZ => "DT_INIT_ARRAYSZ",
        DT_FINI_ARRAYSZ => "DT_FINI_ARRAYSZ",
        DT_RUNPATH => "DT_RUNPATH",
        DT_PREINIT_ARRAY => "DT_PREINIT_ARRAY",
        DT_PREINIT_ARRAYSZ => "DT_PREINIT_ARRAYSZ",
        DT_RELRSZ => "DT_RELRSZ",
        DT_RELR => "DT_RELR",
        DT_RELRENT => "DT_RELRENT",
        DT_GNU_HASH => "DT_GNU_HASH",
        DT_VERSYM => "DT_VERSYM",
        DT_RELACOUNT => "DT_RELACOUNT",
        DT_RELCOUNT => "DT_RELCOUNT",
        DT_VERDEF => "DT_VERDEF",
        DT_VERNEED => "DT_VERNEED",
        DT_AUXILIARY => "DT_AUXILIARY",
        DT_FILTER => "DT_FILTER",
        other => return format!("tag {other:#x}"),
    };
    name.to_owned()
}

/// What the table or function a dynamic entry points at is, for messages.
fn table_name(tag: u32) -> String {
    let what = match tag {
        DT_RELA | DT_REL => "the relocation table",
        DT_JMPREL => "the PLT relocation table",
        DT_RELR => "the relative relocation table",
        DT_INIT_ARRAY => "the initializer array",
        DT_FINI_ARRAY => "the finalizer array",
        DT_PREINIT_ARRAY => "the pre-initializer array",
        DT_HASH => "the symbol hash table",
        DT_GNU_HASH => "the GNU symbol hash table",
        DT_VERSYM => "the symbol version table",
        DT_VERNEED => "the version requirements",
        DT_VERDEF => "the version definitions",
        DT_INIT => "the initializer function",
        DT_FINI => "the finalizer function",
        DT_PLTGOT => "the global offset table",
        _ => "the table",
    };
    format!("{what} ({})", tag_name(tag))
}

/// A table of fixed-size entries that a dynamic entry and its size entry name.
#[derive(Clone, Copy)]
struct Table {
    tag: u32,
    /// Its file offset.
    offset: u64,
    count: u64,
    entsize: u64,
}

/// What the symbol version tables allow.
#[derive(Clone, Copy)]
struct Versions {
    /// The address of the symbol version table (`DT_VERSYM`).
    versym: u64,
    /// The highest version index the library defines or needs (at least 1, "global").
    highest: u64,
}

/// The tables the dynamic entries name, which the dynamic loader reads and relocates: each
/// must be where the loader will find it, in the bytes the host checked. glibc trusts them
/// all, so a damaged one would crash it inside `dlopen`.
struct Tables<'a, 'b> {
    elf: &'b Elf<'a>,
    loads: &'b [&'b ProgramHeader],
    entries: &'b BTreeMap<u32, u64>,
    /// The dynamic string table.
    strings: &'a [u8],
    symtab: u64,
    /// Whether relocations may write to segments that are not writable (`DT_TEXTREL`).
    textrel: bool,
    /// The libraries the `DT_NEEDED` entries name.
    needed: Vec<&'a [u8]>,
}

impl Tables<'_, '_> {
    fn get(&self, tag: u32) -> Option<u64> {
        self.entries.get(&tag).copied()
    }

    fn word_size(&self) -> u64 {
        self.elf.layout.dynsize / 2
    }

    fn check(&self) -> Result<(), ImageError> {
        let word = self.word_size();
        let (rela_size, rel_size) = (3 * word, 2 * word);
        self.entry_size(DT_SYMENT, None, self.elf.layout.symsize)?;
        self.entry_size(DT_RELAENT, Some(DT_RELA), rela_size)?;
        self.entry_size(DT_RELENT, Some(DT_REL), rel_size)?;
        self.entry_size(DT_RELRENT, Some(DT_RELR), word)?;
        let plt_size = match (self.get(DT_JMPREL), self.get(DT_PLTREL)) {
            (None, None) => None,
            (Some(_), None) => return missing_with(DT_PLTREL, DT_JMPREL),
            (None, Some(_)) => return missing_with(DT_JMPREL, DT_PLTREL),
            (Some(_), Some(kind)) if kind == u64::from(PLT_RELOCATION) => {
                Some(if PLT_RELOCATION == DT_RELA {
                    rela_size
                } else {
                    rel_size
                })
            }
            (Some(_), Some(kind)) => {
                return fail(format!(
                    "corrupt: DT_PLTREL is {kind}, expected {PLT_RELOCATION} ({})",
                    tag_name(PLT_RELOCATION)
                ))
            }
        };
        let rela = self.table(DT_RELA, DT_RELASZ, rela_size)?;
        let rel = self.table(DT_REL, DT_RELSZ, rel_size)?;
        let plt = match plt_size {
            Some(size) => self.table(DT_JMPREL, DT_PLTRELSZ, size)?,
            None => None,
        };
        let relr = self.table(DT_RELR, DT_RELRSZ, word)?;
        for (array, size) in [
            (DT_INIT_ARRAY, DT_INIT_ARRAYSZ),
            (DT_FINI_ARRAY, DT_FINI_ARRAYSZ),
            (DT_PREINIT_ARRAY, DT_PREINIT_ARRAYSZ),
        ] {
            self.table(array, size, word)?;
        }
        // glibc applies this many relative relocations first, without looking at them.
        for (count_tag, table) in [(DT_RELACOUNT, rela), (DT_RELCOUNT, rel)] {
            if let (Some(count), Some(table)) = (self.get(count_tag), table) {
                if count > table.count {
                    return fail(format!(
                        "corrupt: {} is {count}, but {} has {} entries",
                        tag_name(count_tag),
                        table_name(table.tag),
                        table.count
                    ));
                }
            }
        }

        let symbols = self.hash_tables()?;
        let versions = self.versions()?;
        if let Some(count) = symbols {
            let size = self.elf.entry(0, count, self.elf.layout.symsize)?;
            self.in_file(
                || "the dynamic symbol table (DT_SYMTAB)".to_owned(),
                self.symtab,
                size,
            )?;
            if let Some(versions) = versions {
                let size = self.elf.entry(0, count, 2)?;
                self.in_file(|| table_name(DT_VERSYM), versions.versym, size)?;
            }
            for index in 0..count {
                self.symbol(index, versions)?;
            }
        }
        for table in [rela, rel, plt].into_iter().flatten() {
            self.relocations(table, symbols, versions)?;
        }
        if let Some(table) = relr {
            let entries = (0..table.count).map(|index| {
                self.elf
                    .word(self.elf.entry(table.offset, index, table.entsize)?)
            });
            relr_targets(entries, word, |index, target| {
                self.relocation_target(table.tag, index, target)
            })?;
        }
        for code in [DT_INIT, DT_FINI] {
            if let Some(addr) = self.get(code) {
                self.in_memory(code, addr, 1, if INIT_IS_CODE { PF_X } else { 0 })?;
            }
        }
        if let Some(addr) = self.get(DT_PLTGOT) {
            self.in_memory(DT_PLTGOT, addr, word, PF_W)?;
        }
        Ok(())
    }

    /// Checks an entry-size entry: it must be `expected`, and must be there if `needed_by` is.
    fn entry_size(
        &self,
        tag: u32,
        needed_by: Option<u32>,
        expected: u64,
    ) -> Result<(), ImageError> {
        match self.get(tag) {
            Some(size) if size != expected => fail(format!(
                "corrupt: {} is {size}, expected {expected}",
                tag_name(tag)
            )),
            None if needed_by.is_some_and(|by| self.get(by).is_some()) => {
                missing_with(tag, needed_by.unwrap_or(tag))
            }
            _ => Ok(()),
        }
    }

    /// The file offset of the `size` bytes at address `addr`, which the loader reads as they
    /// are in the file: they must lie in the file part of one loadable segment.
    fn in_file(
        &self,
        what: impl FnOnce() -> String,
        addr: u64,
        size: u64,
    ) -> Result<u64, ImageError> {
        match self
            .loads
            .iter()
            .find_map(|load| load.file_offset(addr, size))
        {
            Some(offset) => Ok(offset),
            None => fail(format!(
                "corrupt: {} at address {addr:#x} ({size} bytes) is not in the file part of \
                 any loadable segment",
                what()
            )),
        }
    }

    /// Checks that the `size` bytes at address `addr`, which `tag` names, lie in the memory of
    /// one loadable segment with the `flags` (`PF_W`, `PF_X`, or none).
    fn in_memory(&self, tag: u32, addr: u64, size: u64, flags: u32) -> Result<(), ImageError> {
        if self.mapped(addr, size, flags) {
            return Ok(());
        }
        fail(format!(
            "corrupt: {} at address {addr:#x} is not in {} loadable segment",
            table_name(tag),
            kind(flags)
        ))
    }

    fn mapped(&self, addr: u64, size: u64, flags: u32) -> bool {
        self.loads
            .iter()
            .any(|load| load.flags & flags == flags && load.holds(addr, size))
    }

    /// The table at the address in `tag`, of the size in `size_tag`, in `entsize`-byte
    /// entries: glibc reads the size whenever the address is there, and the whole table from
    /// the file.
    fn table(&self, tag: u32, size_tag: u32, entsize: u64) -> Result<Option<Table>, ImageError> {
        let Some(addr) = self.get(tag) else {
            return Ok(None);
        };
        let Some(size) = self.get(size_tag) else {
            return missing_with(size_tag, tag);
        };
        if size % entsize != 0 {
            return fail(format!(
                "corrupt: {} is {size} bytes, not a whole number of {entsize}-byte entries",
                tag_name(size_tag)
            ));
        }
        let offset = self.in_file(|| table_name(tag), addr, size)?;
        Ok(Some(Table {
            tag,
            offset,
            count: size / entsize,
            entsize,
        }))
    }

    /// Checks the hash tables and returns the number of dynamic symbols, where they tell it.
    fn hash_tables(&self) -> Result<Option<u64>, ImageError> {
        let elf = self.elf;
        let mut symbols = None;
        if let Some(addr) = self.get(DT_HASH) {
            let what = || table_name(DT_HASH);
            let header = self.in_file(what, addr, 2 * HASH_ENTRY)?;
            let read = |at: u64| {
                if HASH_ENTRY == 8 {
                    elf.u64(at)
                } else {
                    elf.u32(at).map(u64::from)
                }
            };
            let (nbucket, nchain) = (read(header)?, read(header.saturating_add(HASH_ENTRY))?);
            if nbucket == 0 {
                return fail(format!("corrupt: {} has no buckets", what()));
            }
            let entries = nbucket.checked_add(nchain).and_then(|n| n.checked_add(2));
            let size = elf.entry(0, entries.unwrap_or(u64::MAX), HASH_ENTRY)?;
            let table = self.in_file(what, addr, size)?;
            let buckets = table.saturating_add(2 * HASH_ENTRY);
            let chains = elf.entry(buckets, nbucket, HASH_ENTRY)?;
            // Every chain must end (glibc follows it until symbol 0) inside the table. The
            // table is in the file, so `nchain` is no more than the file's size.
            let mut done = vec![false; usize::try_from(nchain).unwrap_or(usize::MAX)];
            let mut path = Vec::new();
            for bucket in 0..nbucket {
                let mut symbol = read(elf.entry(buckets, bucket, HASH_ENTRY)?)?;
                path.clear();
                while symbol != 0 {
                    let Some(seen) = usize::try_from(symbol).ok().and_then(|i| done.get(i)) else {
                        return fail(format!(
                            "corrupt: {} names symbol {symbol}, but has {nchain} chain entries",
                            what()
                        ));
                    };
                    if *seen {
                        break;
                    }
                    if path.len() as u64 >= nchain {
                        return fail(format!("corrupt: {} has a chain that never ends", what()));
                    }
                    path.push(symbol);
                    symbol = read(elf.entry(chains, symbol, HASH_ENTRY)?)?;
                }
                for &symbol in &path {
                    if let Some(seen) = usize::try_from(symbol).ok().and_then(|i| done.get_mut(i)) {
                        *seen = true;
                    }
                }
            }
            symbols = Some(nchain);
        }
        if let Some(addr) = self.get(DT_GNU_HASH) {
            let what = || table_name(DT_GNU_HASH);
            let header = self.in_file(what, addr, 16)?;
            let nbuckets = u64::from(elf.u32(header)?);
            let first = u64::from(elf.u32(header.saturating_add(4))?);
            let bloom = elf.u32(header.saturating_add(8))?;
            if nbuckets == 0 {
                return fail(format!("corrupt: {} has no buckets", what()));
            }
            // glibc asserts this, and masks Bloom filter indices with `bloom - 1`.
            if !bloom.is_power_of_two() {
                return fail(format!(
                    "corrupt: {} has {bloom} Bloom filter words, not a power of two",
                    what()
                ));
            }
            let buckets_addr = elf.entry(addr, u64::from(bloom), self.word_size())?;
            let buckets_addr = buckets_addr
                .checked_add(16)
                .map_or_else(|| fail("corrupt: a table entry's offset overflows"), Ok)?;
            let buckets = self.in_file(what, buckets_addr, nbuckets.saturating_mul(4))?;
            let chains_addr = elf.entry(buckets_addr, nbuckets, 4)?;
            let (mut lowest, mut highest) = (None::<u64>, None::<u64>);
            for bucket in 0..nbuckets {
                let symbol = u64::from(elf.u32(elf.entry(buckets, bucket, 4)?)?);
                if symbol == 0 {
                    continue;
                }
                if symbol < first {
                    return fail(format!(
                        "corrupt: {} bucket {bucket} names symbol {symbol}, below its first \
                         hashed symbol {first}",
                        what()
                    ));
                }
                lowest = Some(lowest.map_or(symbol, |lowest| lowest.min(symbol)));
                highest = Some(highest.map_or(symbol, |highest| highest.max(symbol)));
            }
            if let (Some(lowest), Some(highest)) = (lowest, highest) {
                // Chains are runs of entries that end with one whose low bit is set: the run
                // from the highest bucket's symbol ends last, and each is in the file.
                let mut symbol = highest;
                loop {
                    let at = self.in_file(what, elf.entry(chains_addr, symbol - first, 4)?, 4)?;
                    if elf.u32(at)? & 1 == 1 {
                        break;
                    }
                    symbol = symbol.saturating_add(1);
                }
                let start = elf.entry(chains_addr, lowest - first, 4)?;
                self.in_file(what, start, (symbol - lowest + 1).saturating_mul(4))?;
                symbols = symbols.or(Some(symbol.saturating_add(1)));
            }
        }
        Ok(symbols)
    }

    /// Checks the version requirements and definitions (glibc follows their `next` links
    /// and reads the strings they name) and returns what the symbol version table may say.
    fn versions(&self) -> Result<Option<Versions>, ImageError> {
        let elf = self.elf;
        let mut highest = 1;
        let mut records = 0;
        let mut next = |what: &dyn Fn() -> String, addr: u64, step: u32| {
            records += 1;
            if records > MAX_VERSION_RECORDS {
                return fail(format!(
                    "corrupt: {} has more than {MAX_VERSION_RECORDS} records",
                    what()
                ));
            }
            addr.checked_add(u64::from(step)).map_or_else(
                || fail(format!("corrupt: {} runs past address 2^64", what())),
                Ok,
            )
        };
        if let Some(mut entry) = self.get(DT_VERNEED) {
            let what = || table_name(DT_VERNEED);
            loop {
                let at = self.in_file(what, entry, 16)?;
                let file = elf.u32(at.saturating_add(4))?;
                let name = self.string(what, file)?;
                // glibc asserts that it has loaded the library a requirement names.
                if !self.needed.contains(&name) {
                    return fail(format!(
                        "corrupt: {} name {:?}, which is not a library this one needs \
                         (DT_NEEDED)",
                        what(),
                        String::from_utf8_lossy(name)
                    ));
                }
                let mut aux = next(&what, entry, elf.u32(at.saturating_add(8))?)?;
                loop {
                    let at = self.in_file(what, aux, 16)?;
                    highest = highest.max(u64::from(elf.u16(at.saturating_add(6))? & 0x7fff));
                    self.string(what, elf.u32(at.saturating_add(8))?)?;
                    match elf.u32(at.saturating_add(12))? {
                        0 => break,
                        step => aux = next(&what, aux, step)?,
                    }
                }
                match elf.u32(at.saturating_add(12))? {
                    0 => break,
                    step => entry = next(&what, entry, step)?,
                }
            }
        }
        if let Some(mut entry) = self.get(DT_VERDEF) {
            let what = || table_name(DT_VERDEF);
            loop {
                let at = self.in_file(what, entry, 20)?;
                highest = highest.max(u64::from(elf.u16(at.saturating_add(4))? & 0x7fff));
                let aux = next(&what, entry, elf.u32(at.saturating_add(12))?)?;
                let aux = self.in_file(what, aux, 8)?;
                self.string(what, elf.u32(aux)?)?;
                match elf.u32(at.saturating_add(16))? {
                    0 => break,
                    step => entry = next(&what, entry, step)?,
                }
            }
        }
        let Some(versym) = self.get(DT_VERSYM) else {
            return Ok(None);
        };
        // Without either, glibc has no version array for the symbol version table to index.
        if self.get(DT_VERNEED).is_none() && self.get(DT_VERDEF).is_none() {
            return fail(
                "corrupt: the dynamic segment has DT_VERSYM but neither DT_VERNEED nor DT_VERDEF",
            );
        }
        Ok(Some(Versions { versym, highest }))
    }

    /// The string at `offset` in the dynamic string table, which `what` names.
    fn string(&self, what: impl FnOnce() -> String, offset: u32) -> Result<&[u8], ImageError> {
        match string_at(self.strings, u64::from(offset)) {
            Some(string) => Ok(string),
            None => fail(format!(
                "corrupt: {} names string offset {offset}, not a NUL-terminated string inside \
                 the dynamic string table ({} bytes)",
                what(),
                self.strings.len()
            )),
        }
    }

    /// Checks dynamic symbol `index`: its entry, its name, and its version.
    fn symbol(&self, index: u64, versions: Option<Versions>) -> Result<(), ImageError> {
        let elf = self.elf;
        let what = || format!("dynamic symbol {index}");
        let addr = elf.entry(self.symtab, index, elf.layout.symsize)?;
        let at = self.in_file(what, addr, elf.layout.symsize)?;
        self.string(what, elf.u32(at)?)?;
        if let Some(versions) = versions {
            let addr = elf.entry(versions.versym, index, 2)?;
            let at = self.in_file(|| format!("the version of {}", what()), addr, 2)?;
            let version = u64::from(elf.u16(at)? & 0x7fff);
            if version > versions.highest {
                return fail(format!(
                    "corrupt: {} has version index {version}, but the library's versions go up \
                     to {}",
                    what(),
                    versions.highest
                ));
            }
        }
        Ok(())
    }

    /// Checks every relocation in `table`: where it writes, and the symbol it names.
    fn relocations(
        &self,
        table: Table,
        symbols: Option<u64>,
        versions: Option<Versions>,
    ) -> Result<(), ImageError> {
        let elf = self.elf;
        for index in 0..table.count {
            let at = elf.entry(table.offset, index, table.entsize)?;
            let info = elf.word(at.saturating_add(self.word_size()))?;
            // Type 0 (`R_*_NONE` on every machine) writes nothing.
            if info & ((1 << elf.layout.r_sym_shift) - 1) != 0 {
                self.relocation_target(table.tag, index, elf.word(at)?)?;
            }
            // glibc reads the symbol's version even for relocations of type 0.
            let symbol = info >> elf.layout.r_sym_shift;
            match symbols {
                _ if symbol == 0 => {}
                Some(count) if symbol >= count => {
                    return fail(format!(
                        "corrupt: relocation {index} in {} names dynamic symbol {symbol}, but \
                         there are {count}",
                        table_name(table.tag)
                    ))
                }
                Some(_) => {}
                None => self.symbol(symbol, versions)?,
            }
        }
        Ok(())
    }

    /// Checks that relocation `index` in the table `tag` writes a word at `target` in a
    /// writable segment (any segment, if the library has text relocations).
    fn relocation_target(&self, tag: u32, index: u64, target: u64) -> Result<(), ImageError> {
        let flags = if self.textrel { 0 } else { PF_W };
        if self.mapped(target, self.word_size(), flags) {
            return Ok(());
        }
        fail(format!(
            "corrupt: relocation {index} in {} writes to address {target:#x}, which is not in \
             {} loadable segment",
            table_name(tag),
            kind(flags)
        ))
    }
}

/// "a writable", "an executable" or "any" (loadable segment).
fn kind(flags: u32) -> &'static str {
    if flags & PF_W != 0 {
        "a writable"
    } else if flags & PF_X != 0 {
        "an executable"
    } else {
        "any"
    }
}

fn missing_with<T>(missing: u32, present: u32) -> Result<T, ImageError> {
    fail(format!(
        "corrupt: the dynamic segment has {} but no {} entry",
        tag_name(present),
        tag_name(missing)
    ))
}

/// Calls `check` with each address the `DT_RELR` `entries` relocate (with the entry's index):
/// an even entry is an address, an odd one a bitmap of the words after the last address.
fn relr_targets(
    entries: impl Iterator<Item = Result<u64, ImageError>>,
    word: u64,
    mut check: impl FnMut(u64, u64) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let bits = word * 8;
    let mut next: Option<u64> = None;
    for (index, entry) in (0u64..).zip(entries) {
        let entry = entry?;
        if entry & 1 == 0 {
            check(index, entry)?;
            next = entry.checked_add(word);
            continue;
        }
        let Some(base) = next else {
            return fail(format!(
                "corrupt: entry {index} of the relative relocation table (DT_RELR) is a bitmap \
                 that follows no address"
            ));
        };
        for bit in 1..bits {
            if entry >> bit & 1 == 1 {
                let Some(target) = (bit - 1)
                    .checked_mul(word)
                    .and_then(|o| o.checked_add(base))
                else {
                    return fail(format!(
                        "corrupt: entry {index} of the relative relocation table (DT_RELR) \
                         runs past address 2^64"
                    ));
                };
                check(index, target)?;
            }
        }
        next = (bits - 1)
            .checked_mul(word)
            .and_then(|offset| offset.checked_add(base));
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
    fn relative_relocation_bitmaps_name_the_words_after_an_address() {
        let targets = |entries: &[u64]| {
            let mut found = Vec::new();
            relr_targets(
                entries.iter().map(|&entry| Ok(entry)),
                8,
                |index, target| {
                    found.push((index, target));
                    Ok(())
                },
            )
            .map(|()| found)
        };
        // An address, then a bitmap of the 63 words after it: bits 1 and 3 are words 0 and 2;
        // a second bitmap goes on 63 words further.
        assert_eq!(
            targets(&[0x1000, 0b1011, 1 << 63 | 1]),
            Ok(vec![
                (0, 0x1000),
                (1, 0x1008),
                (1, 0x1018),
                (2, 0x1008 + 63 * 8 + 62 * 8)
            ])
        );
        let first = targets(&[0b11]).unwrap_err().0;
        assert!(first.contains("follows no address"), "{first}");
        let wraps = targets(&[u64::MAX - 7, 1 << 63 | 1]).unwrap_err().0;
        assert!(wraps.contains("follows no address"), "{wraps}");
        let mut refused = |_, target| {
            if target == 0x1018 {
                fail("refused")
            } else {
                Ok(())
            }
        };
        let entries = [0x1000u64, 0b1011].map(Ok);
        assert_eq!(
            relr_targets(entries.into_iter(), 8, &mut refused),
            fail("refused")
        );
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
