//! `host::plugins::image` over a real plugin library built from the workspace: the whole
//! file passes and has its descriptor section; every truncation is refused in one line;
//! damaged dynamic entries and the tables they name are refused; no damage (bit flips, cuts)
//! makes the check panic.

use std::{cell::RefCell, sync::OnceLock};

use host::plugins::image::{inspect_library, ImageError, DESCRIPTOR_SECTION};
use proptest::{prelude::*, sample::Index, test_runner::Config as ProptestConfig};

use crate::harness::built_library;

/// Whether the built plugin is expected to carry the descriptor section (`export_plugin!`
/// writes it).
const EXPECT_DESCRIPTOR: bool = true;

/// Where the ELF, Mach-O or PE headers live, and so where most damage that matters is.
const HEADERS: usize = 64 * 1024;

/// The end of the file, where ELF keeps its section header table.
const TAIL: usize = 8 * 1024;

/// The dice-game plugin library, read once per test binary.
fn library() -> &'static [u8] {
    static LIBRARY: OnceLock<Vec<u8>> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let path = built_library("dice_game");
        std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
    })
}

#[test]
fn every_4_kib_truncation_of_a_real_plugin_is_refused_cleanly() {
    let whole = library();
    let image = inspect_library(whole).unwrap_or_else(|error| panic!("refused: {error}"));
    if EXPECT_DESCRIPTOR {
        assert!(
            image.descriptor.is_some(),
            "the dice-game library has no {DESCRIPTOR_SECTION} section"
        );
    }
    for len in (0..whole.len()).step_by(4096) {
        match inspect_library(&whole[..len]) {
            Ok(_) => panic!("the first {len} of {} bytes were accepted", whole.len()),
            Err(ImageError(message)) => {
                assert!(!message.contains('\n'), "cut at {len}: {message:?}")
            }
        }
    }
    let last = inspect_library(&whole[..whole.len() - 1]).expect_err("one byte short");
    assert!(last.0.starts_with("truncated: "), "{last}");
}

thread_local! {
    /// This thread's copy of the library, damaged in place for one case and then repaired:
    /// the cases of a property run on one thread, so the library is copied once per test.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(library().to_vec());
}

/// Flips bits in this thread's copy of the library, inspects its first `cut` bytes (all of
/// them for `None`), and flips them back (also if the check panics).
fn inspect_damaged(cut: Option<Index>, flips: &[(usize, u8)]) -> Result<(), TestCaseError> {
    struct Repair<'a> {
        bytes: &'a mut [u8],
        flips: &'a [(usize, u8)],
    }
    impl Drop for Repair<'_> {
        fn drop(&mut self) {
            for &(offset, bit) in self.flips {
                self.bytes[offset] ^= 1 << bit;
            }
        }
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let repair = Repair {
            bytes: &mut scratch[..],
            flips,
        };
        for &(offset, bit) in flips {
            repair.bytes[offset] ^= 1 << bit;
        }
        let len = cut.map_or(repair.bytes.len(), |cut| cut.index(repair.bytes.len() + 1));
        if let Err(ImageError(message)) = inspect_library(&repair.bytes[..len]) {
            prop_assert!(!message.contains('\n'), "{message:?}");
        }
        Ok(())
    })
}

/// No cut most of the time (the damage is then all in a complete file), any cut otherwise.
fn cut() -> impl Strategy<Value = Option<Index>> {
    prop_oneof![2 => Just(None), 1 => any::<Index>().prop_map(Some)]
}

/// Reads and patches the 64-bit little-endian ELF plugin the way the dynamic loader sees it.
#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    target_endian = "little"
))]
mod elf {
    pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    pub fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// The program headers: `(p_type, p_flags, p_offset, p_vaddr, p_filesz)`.
    fn segments(bytes: &[u8]) -> Vec<(u32, u32, u64, u64, u64)> {
        let phoff = u64_at(bytes, 32) as usize;
        let phnum = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
        (0..phnum)
            .map(|index| {
                let at = phoff + index * 56;
                let word = |field: usize| {
                    u32::from_le_bytes(bytes[at + field..at + field + 4].try_into().unwrap())
                };
                (
                    word(0),
                    word(4),
                    u64_at(bytes, at + 8),
                    u64_at(bytes, at + 16),
                    u64_at(bytes, at + 32),
                )
            })
            .collect()
    }

    /// The file bytes of the dynamic segment.
    pub fn dynamic(bytes: &[u8]) -> std::ops::Range<usize> {
        let (_, _, offset, _, size) = segments(bytes)
            .into_iter()
            .find(|segment| segment.0 == 2)
            .expect("a PT_DYNAMIC segment");
        offset as usize..(offset + size) as usize
    }

    /// The file offset of the value of the (last) dynamic entry `tag`.
    pub fn entry(bytes: &[u8], tag: u64) -> Option<usize> {
        dynamic(bytes)
            .step_by(16)
            .take_while(|&at| u64_at(bytes, at) != 0)
            .filter(|&at| u64_at(bytes, at) == tag)
            .last()
            .map(|at| at + 8)
    }

    pub fn value(bytes: &[u8], tag: u64) -> u64 {
        u64_at(
            bytes,
            entry(bytes, tag).unwrap_or_else(|| panic!("no dynamic tag {tag:#x}")),
        )
    }

    /// The file offset of address `addr`.
    pub fn file_offset(bytes: &[u8], addr: u64) -> usize {
        segments(bytes)
            .into_iter()
            .find(|&(p_type, _, _, vaddr, filesz)| {
                p_type == 1 && (vaddr..vaddr + filesz).contains(&addr)
            })
            .map(|(_, _, offset, vaddr, _)| (offset + addr - vaddr) as usize)
            .expect("an address in the file")
    }
}

/// Each damage to the dynamic entries, or to the tables they name, that would crash the
/// dynamic loader is refused with its own one-line message.
#[test]
#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    target_endian = "little"
))]
fn damaged_dynamic_tables_are_refused() {
    use object::elf::{
        DT_FINI, DT_FINI_ARRAYSZ, DT_GNU_HASH, DT_INIT, DT_INIT_ARRAY, DT_INIT_ARRAYSZ, DT_JMPREL,
        DT_NEEDED, DT_PLTGOT, DT_PLTREL, DT_RELA, DT_RELACOUNT, DT_RELAENT, DT_RELASZ, DT_RUNPATH,
        DT_SYMENT, DT_VERNEED, DT_VERSYM,
    };
    type Damage = Box<dyn Fn(&mut [u8])>;
    let whole = library();
    let far = 1u64 << 40;
    let value = |tag: u32| elf::value(whole, u64::from(tag));
    let set = |tag: u32, new: u64| -> Damage {
        Box::new(move |bytes: &mut [u8]| {
            let at = elf::entry(bytes, u64::from(tag)).expect("the entry");
            elf::put_u64(bytes, at, new)
        })
    };
    let code = value(DT_INIT);
    let data = value(DT_INIT_ARRAY);
    let rela = elf::file_offset(whole, value(DT_RELA));
    let jmprel = elf::file_offset(whole, value(DT_JMPREL));
    let versym = elf::file_offset(whole, value(DT_VERSYM));
    let cases: Vec<(&str, Damage)> = vec![
        (
            "corrupt: the relocation table (DT_RELA) at address",
            set(DT_RELA, value(DT_RELA) + far),
        ),
        (
            "corrupt: the relocation table (DT_RELA) at address",
            set(DT_RELASZ, value(DT_RELASZ) + 24 * 1_000_000),
        ),
        (
            "corrupt: DT_RELAENT is 16, expected 24",
            set(DT_RELAENT, 16),
        ),
        ("corrupt: DT_SYMENT is 16, expected 24", set(DT_SYMENT, 16)),
        (
            "corrupt: DT_RELACOUNT is",
            set(DT_RELACOUNT, value(DT_RELASZ)),
        ),
        (
            "corrupt: the dynamic segment has DT_RELA but no DT_RELASZ entry",
            Box::new(|bytes: &mut [u8]| {
                let at = elf::entry(bytes, u64::from(DT_RELASZ)).unwrap() - 8;
                elf::put_u64(bytes, at, 0x6000_0000);
            }),
        ),
        (
            "corrupt: the PLT relocation table (DT_JMPREL) at address",
            set(DT_JMPREL, value(DT_JMPREL) ^ far),
        ),
        (
            "corrupt: DT_PLTREL is 17, expected 7 (DT_RELA)",
            set(DT_PLTREL, 17),
        ),
        (
            "corrupt: the GNU symbol hash table (DT_GNU_HASH) at address",
            set(DT_GNU_HASH, value(DT_GNU_HASH) + far),
        ),
        (
            "corrupt: the symbol version table (DT_VERSYM) at address",
            set(DT_VERSYM, value(DT_VERSYM) + far),
        ),
        (
            "corrupt: the version requirements (DT_VERNEED) at address",
            set(DT_VERNEED, value(DT_VERNEED) + far),
        ),
        (
            "corrupt: the initializer function (DT_INIT) at address",
            set(DT_INIT, data),
        ),
        (
            "corrupt: the finalizer function (DT_FINI) at address",
            set(DT_FINI, value(DT_FINI) + far),
        ),
        (
            "corrupt: the initializer array (DT_INIT_ARRAY) at address",
            set(DT_INIT_ARRAY, data + far),
        ),
        (
            "corrupt: the finalizer array (DT_FINI_ARRAY) at address",
            set(DT_FINI_ARRAYSZ, 8 * 1_000_000),
        ),
        (
            "corrupt: DT_INIT_ARRAYSZ is 12 bytes",
            set(DT_INIT_ARRAYSZ, 12),
        ),
        (
            "corrupt: the global offset table (DT_PLTGOT) at address",
            set(DT_PLTGOT, code),
        ),
        (
            "corrupt: relocation 0 in the relocation table (DT_RELA) writes to address",
            Box::new(move |bytes: &mut [u8]| elf::put_u64(bytes, rela, code)),
        ),
        (
            "corrupt: relocation 0 in the PLT relocation table (DT_JMPREL) names dynamic symbol",
            Box::new(move |bytes: &mut [u8]| {
                let info = elf::u64_at(bytes, jmprel + 8);
                elf::put_u64(bytes, jmprel + 8, info | 1 << 60)
            }),
        ),
        (
            "corrupt: dynamic symbol 1 has version index",
            Box::new(move |bytes: &mut [u8]| {
                bytes[versym + 2] = 0x42;
            }),
        ),
        (
            "dynamic entry 0 (DT_RUNPATH) sets a library search path \"libgcc_s.so.1\"",
            Box::new(|bytes: &mut [u8]| {
                let at = elf::dynamic(bytes).start;
                assert_eq!(elf::u64_at(bytes, at), u64::from(DT_NEEDED));
                elf::put_u64(bytes, at, u64::from(DT_RUNPATH));
            }),
        ),
    ];
    for (expected, damage) in cases {
        let mut bytes = whole.to_vec();
        damage(&mut bytes);
        match inspect_library(&bytes) {
            Ok(_) => panic!("accepted, expected {expected:?}"),
            Err(ImageError(message)) => {
                assert!(
                    message.starts_with(expected),
                    "expected {expected:?}, got {message:?}"
                );
                assert!(!message.contains('\n'), "{message:?}");
            }
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn bit_flips_and_truncations_never_panic(
        cut in cut(),
        flips in prop::collection::vec((any::<Index>(), 0u8..8), 0..=8),
    ) {
        let len = library().len();
        let flips: Vec<(usize, u8)> =
            flips.iter().map(|(offset, bit)| (offset.index(len), *bit)).collect();
        inspect_damaged(cut, &flips)?;
    }

    #[test]
    fn bit_flips_in_the_headers_never_panic(
        cut in cut(),
        flips in prop::collection::vec((any::<bool>(), any::<Index>(), 0u8..8), 1..=8),
    ) {
        let len = library().len();
        let flips: Vec<(usize, u8)> = flips
            .iter()
            .map(|(at_end, offset, bit)| {
                let offset = if *at_end {
                    len - 1 - offset.index(TAIL.min(len))
                } else {
                    offset.index(HEADERS.min(len))
                };
                (offset, *bit)
            })
            .collect();
        inspect_damaged(cut, &flips)?;
    }

    /// The new checks read the dynamic entries, which neither property above aims at.
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64", target_endian = "little"))]
    fn bit_flips_in_the_dynamic_segment_never_panic(
        cut in cut(),
        flips in prop::collection::vec((any::<Index>(), 0u8..8), 1..=4),
    ) {
        let dynamic = elf::dynamic(library());
        let flips: Vec<(usize, u8)> = flips
            .iter()
            .map(|(offset, bit)| (dynamic.start + offset.index(dynamic.len()), *bit))
            .collect();
        inspect_damaged(cut, &flips)?;
    }
}
