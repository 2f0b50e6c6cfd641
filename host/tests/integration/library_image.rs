//! `host::plugins::image` over a real plugin library built from the workspace: the whole
//! file passes and has its descriptor section; every truncation is refused in one line; no
//! damage (bit flips, cuts) makes the check panic.

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
}
