//! A global allocator for programs that run simulations: the system allocator, except for
//! blocks that ask for more alignment than `malloc` gives.
//!
//! tokio aligns every task to 128 bytes (a cache line pair on x86_64), so every spawn asks
//! the system allocator for an over-aligned block. glibc serves those with `posix_memalign`,
//! which bypasses its per-thread caches and splits a larger block each time: about 600
//! instructions a spawn, and about 150 more to free it, where a cached `malloc` of the same
//! size costs a few dozen. A simulation spawns several tasks per request (docs/figures.md, the
//! eighth pass), so [`MallocAligned`] takes such blocks from `malloc` with room to
//! align them, and frees them the same way.
//!
//! The `windtunnel` binary and every bench install it; the library does not, so a program
//! that links windtunnel keeps whatever allocator it chose:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// The alignment `malloc` guarantees on the platforms windtunnel runs on (two words).
const MALLOC_ALIGN: usize = 2 * std::mem::size_of::<usize>();

/// The largest alignment served from `malloc`: beyond it the padding would cost more than
/// `posix_memalign`'s split (nothing in a simulation asks for more than 128).
const MAX_PADDED_ALIGN: usize = 4096;

/// The system allocator, with over-aligned blocks of up to 4 KiB alignment carved out of
/// `malloc` blocks (see the module's documentation).
///
/// Such a block is `size + align` bytes from `malloc` (so it holds up to `align` bytes more
/// than asked: 128 for a tokio task), aligned upwards within it; the word just below the
/// aligned address keeps where the `malloc` block starts, to free it. All other requests go to
/// [`System`] unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct MallocAligned;

/// Whether `layout` is carved out of a padded `malloc` block.
fn padded(layout: &Layout) -> bool {
    layout.align() > MALLOC_ALIGN && layout.align() <= MAX_PADDED_ALIGN
}

/// The `malloc` block that holds a padded block of `layout` (`None` if it would overflow).
fn outer(layout: &Layout) -> Option<Layout> {
    let size = layout.size().checked_add(layout.align())?;
    Layout::from_size_align(size, MALLOC_ALIGN).ok()
}

// SAFETY: every block comes from `System`, and goes back to it with the layout it was
// allocated with: unchanged for unpadded layouts; for padded ones the outer layout, which
// `outer` computes the same way from the same layout at allocation and at deallocation
// (`GlobalAlloc` guarantees the caller passes the layout it allocated with).
unsafe impl GlobalAlloc for MallocAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !padded(&layout) {
            // SAFETY: the caller's layout has a non-zero size, as `GlobalAlloc` requires.
            return unsafe { System.alloc(layout) };
        }
        let Some(outer) = outer(&layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` is at least `align` bytes, so not zero-sized.
        let raw = unsafe { System.alloc(outer) };
        if raw.is_null() {
            return raw;
        }
        // `raw` is `MALLOC_ALIGN`-aligned (two words) and `align` a larger power of two, so the
        // next multiple of `align` strictly above `raw` is between `MALLOC_ALIGN` and `align`
        // bytes in: room for the word below it, and `size` bytes after it inside the block.
        let offset = layout.align() - (raw as usize & (layout.align() - 1));
        // SAFETY: `offset <= align`, inside the `size + align` bytes of the block.
        let aligned = unsafe { raw.add(offset) };
        // SAFETY: the word below `aligned` is inside the block (offset >= two words) and
        // aligned to a word, as `aligned` is a multiple of at least four words.
        unsafe { aligned.cast::<*mut u8>().sub(1).write(raw) };
        aligned
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !padded(&layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let Some(outer) = outer(&layout) else {
            return; // never allocated: `alloc` returned null for this layout
        };
        // SAFETY: `alloc` wrote the block's start in the word below `ptr`.
        let raw = unsafe { ptr.cast::<*mut u8>().sub(1).read() };
        // SAFETY: `raw` came from `System.alloc(outer)`.
        unsafe { System.dealloc(raw, outer) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !padded(&layout) {
            // SAFETY: as in `alloc`.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.alloc(layout) };
        if !ptr.is_null() {
            // SAFETY: `ptr` has `size` writable bytes.
            unsafe { ptr.write_bytes(0, layout.size()) };
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !padded(&layout) {
            // SAFETY: `ptr` came from `System` with `layout`; the caller's `new_size` is valid.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: as in `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks hold at least the smaller size, and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_is_aligned_writable_and_freed_with_its_contents_intact() {
        // Goal: blocks of every alignment up to a page and beyond come back aligned, hold
        // their size, keep their bytes through a realloc up and down, and free cleanly (a bad
        // start word would make the system allocator abort). Method: allocate, fill, check,
        // realloc, check, free, for each alignment and a few sizes.
        let a = MallocAligned;
        for align in [1, 8, 16, 32, 64, 128, 256, 4096, 8192] {
            for size in [1, 24, 128, 384, 1000, 5000] {
                let layout = Layout::from_size_align(size, align).expect("a valid layout");
                // SAFETY: the layout is not zero-sized; each block is freed once, with the
                // layout it has then.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "align {align} size {size}");
                    for i in 0..size {
                        p.add(i).write((i % 251) as u8);
                    }
                    let grown = a.realloc(p, layout, size * 2);
                    assert_eq!(grown as usize % align, 0);
                    for i in 0..size {
                        assert_eq!(grown.add(i).read(), (i % 251) as u8);
                    }
                    let bigger = Layout::from_size_align(size * 2, align).expect("valid");
                    let shrunk = a.realloc(grown, bigger, size / 2 + 1);
                    assert_eq!(shrunk as usize % align, 0);
                    for i in 0..size / 2 + 1 {
                        assert_eq!(shrunk.add(i).read(), (i % 251) as u8);
                    }
                    a.dealloc(
                        shrunk,
                        Layout::from_size_align(size / 2 + 1, align).expect("valid"),
                    );
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| z.add(i).read() == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn a_layout_too_large_to_pad_is_refused_not_wrapped() {
        // Goal: a size that overflows once padded gets null (the caller's out-of-memory
        // path), not a block smaller than asked: the largest page-aligned layout there is,
        // whose padded block would be one byte past `isize::MAX`.
        let layout = Layout::from_size_align(isize::MAX as usize + 1 - 4096, 4096).expect("valid");
        assert!(outer(&layout).is_none());
        // SAFETY: not zero-sized; a null result is not freed.
        let p = unsafe { MallocAligned.alloc(layout) };
        assert!(p.is_null());
    }
}
