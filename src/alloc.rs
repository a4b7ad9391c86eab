//! A global allocator for programs that run simulations: the system allocator, with blocks
//! that ask for more alignment than `malloc` gives carved out of `malloc` blocks, and freed
//! blocks of up to 32 KiB kept per thread for the next allocation of their size.
//!
//! tokio aligns every task to 128 bytes (a cache line pair on x86_64), so every spawn asks
//! the system allocator for an over-aligned block. glibc serves those with `posix_memalign`,
//! which bypasses its per-thread caches and splits a larger block each time: about 600
//! instructions a spawn, and about 150 more to free it, where a cached `malloc` of the same
//! size costs a few dozen. A simulation spawns several tasks per request (docs/figures.md, the
//! eighth pass), so [`MallocAligned`] takes such blocks from `malloc` with room to
//! align them.
//!
//! The `windtunnel` binary and every bench install it; the library does not, so a program
//! that links windtunnel keeps whatever allocator it chose:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;
//! ```
//!
//! glibc's per-thread cache holds at most 7 freed blocks of a size, and none past 1,032
//! bytes. A simulation frees blocks in bursts (50 callers answered in one tick free 50 of each
//! of their blocks), and a request makes several blocks past 1,032 bytes (a boxed future, a
//! task holding one). Either way a block goes through glibc's bins: about 160 instructions to
//! allocate and as many to free, where a cached one costs a few dozen. So [`MallocAligned`]
//! keeps freed blocks of up to 32 KiB per thread itself, in lists by size class, and hands
//! them out again at the cost of a list's pop.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The alignment `malloc` guarantees on the platforms windtunnel runs on (two words).
const MALLOC_ALIGN: usize = 2 * std::mem::size_of::<usize>();

/// The largest alignment served from `malloc`: beyond it the padding would cost more than
/// `posix_memalign`'s split (nothing in a simulation asks for more than 128).
const MAX_PADDED_ALIGN: usize = 4096;

/// The system allocator, with over-aligned blocks of up to 4 KiB alignment carved out of
/// `malloc` blocks, and freed blocks of up to 32 KiB kept per thread (see the module's
/// documentation).
///
/// A block of up to 32 KiB aligned to at most 128 belongs to a size class (see [`Class`]).
/// Freed, it goes on its thread's list for its class, and the next allocation of the class on
/// that thread takes it back. The lists hold at most 64 blocks a class and 1 MiB in all
/// (counted at the classes' sizes; `malloc`'s own headers and a carved block's padding come
/// on top); past that a block goes back to `malloc`. A block freed on another thread than
/// the one that made it joins that thread's lists, which is safe as every block is a `malloc`
/// block. A thread's lists are emptied as it ends.
///
/// A block aligned to more than 128, or larger than 32 KiB and aligned to more than two
/// words, is `size + align` bytes from `malloc`, aligned upwards within it; the word just
/// below the aligned address keeps where the `malloc` block starts, to free it (a block of a
/// carved class is made the same way).
///
/// All other requests go to [`System`] unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct MallocAligned;

/// Small size classes are multiples of this (`malloc`'s own granule), up to [`SMALL_MAX`].
const GRANULE: usize = 16;

/// The largest block of a small class; past it (up to 32 KiB), and for any alignment past two
/// words, blocks are carved (see [`Class`]).
const SMALL_MAX: usize = 1024;

/// Carved size classes are multiples of this, and carved blocks aligned to it.
const GRAIN: usize = 128;

/// The largest block the per-thread cache keeps.
const CACHED_MAX: usize = 32 * 1024;

/// Class numbers past this are carved classes.
const SMALL_CLASSES: usize = SMALL_MAX / GRANULE;

/// The number of size classes, small and carved, with the unused class 0.
const CLASSES: usize = SMALL_CLASSES + CACHED_MAX / GRAIN + 1;

/// The most blocks a thread keeps of one class.
const PER_CLASS: u8 = 64;

/// The most bytes a thread keeps in all.
const PER_THREAD_BYTES: usize = 1 << 20;

/// A size class of the per-thread cache: every block of a class is alike, so a freed one
/// serves any later layout of the class.
///
/// - Small classes (1 to 64): layouts of at most 1,024 bytes aligned to at most two words; a
///   block is a plain `malloc` block of the class's size, a multiple of 16 bytes.
/// - Carved classes (65 onwards): every other layout of at most 32 KiB aligned to at most 128;
///   a block is carved (see [`carve`]) out of a `malloc` block a grain larger than the class's
///   size, a multiple of 128 bytes, and aligned to 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class(usize);

impl Class {
    /// The class of `layout`, if the per-thread cache serves it.
    fn of(layout: &Layout) -> Option<Class> {
        let (size, align) = (layout.size(), layout.align());
        if align > GRAIN || size > CACHED_MAX {
            None
        } else if align <= MALLOC_ALIGN && size <= SMALL_MAX {
            Some(Class(size.div_ceil(GRANULE)))
        } else {
            Some(Class(SMALL_CLASSES + size.div_ceil(GRAIN)))
        }
    }

    /// The usable bytes of a block of this class.
    fn bytes(self) -> usize {
        if self.0 <= SMALL_CLASSES {
            self.0 * GRANULE
        } else {
            (self.0 - SMALL_CLASSES) * GRAIN
        }
    }

    /// The `malloc` block behind a block of this class.
    fn outer(self) -> Layout {
        let size = if self.0 <= SMALL_CLASSES {
            self.bytes()
        } else {
            self.bytes() + GRAIN
        };
        // SAFETY: a class's size is at most 32 KiB and a grain, far below `isize::MAX`, and
        // `MALLOC_ALIGN` is a power of two.
        unsafe { Layout::from_size_align_unchecked(size, MALLOC_ALIGN) }
    }

    /// A new block of this class from `malloc` (null if it fails).
    fn make(self) -> *mut u8 {
        if self.0 <= SMALL_CLASSES {
            // SAFETY: a small class is at least 16 bytes, so not zero-sized.
            unsafe { System.alloc(self.outer()) }
        } else {
            // SAFETY: the outer block is the class's size and a grain more.
            unsafe { carve(self.outer(), GRAIN) }
        }
    }

    /// Gives `block` back to `malloc`.
    ///
    /// # Safety
    /// `block` came from `make` of this class and is freed once.
    unsafe fn unmake(self, block: *mut u8) {
        if self.0 <= SMALL_CLASSES {
            // SAFETY: `block` came from `System.alloc(self.outer())`.
            unsafe { System.dealloc(block, self.outer()) }
        } else {
            // SAFETY: `block` was carved from a block of `self.outer()`.
            unsafe { uncarve(block, self.outer()) }
        }
    }
}

/// One thread's lists of freed blocks, by size class. Each list is threaded through its
/// blocks: a free block's first word holds the next one.
struct Cache {
    heads: [Cell<*mut u8>; CLASSES],
    counts: [Cell<u8>; CLASSES],
    bytes: Cell<usize>,
    /// Whether the thread will empty the lists as it ends (see [`keep`]).
    state: Cell<Emptied>,
}

/// Whether a thread's lists will be emptied as it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emptied {
    /// Not arranged yet: the thread has kept no block.
    Unarranged,
    /// Being arranged: a block freed meanwhile is not kept.
    Arranging,
    /// The thread's [`EMPTY_AT_EXIT`] will empty the lists.
    Arranged,
    /// The lists were emptied as the thread ends; nothing more is kept.
    Done,
}

impl Cache {
    const fn new() -> Cache {
        Cache {
            heads: [const { Cell::new(std::ptr::null_mut()) }; CLASSES],
            counts: [const { Cell::new(0) }; CLASSES],
            bytes: Cell::new(0),
            state: Cell::new(Emptied::Unarranged),
        }
    }

    /// Gives every kept block back to `malloc`.
    fn empty(&self) {
        for c in 1..CLASSES {
            while let Some(block) = self.pop(Class(c)) {
                // SAFETY: every kept block of list `c` was made as a block of class `c`.
                unsafe { Class(c).unmake(block) };
            }
        }
    }

    /// A kept block of class `c`, if there is one.
    fn pop(&self, c: Class) -> Option<*mut u8> {
        let head = self.heads[c.0].get();
        if head.is_null() {
            return None;
        }
        // SAFETY: `head` is a free block of this list; `push` wrote the next one in its
        // first word, which is aligned (blocks are aligned to at least two words).
        let next = unsafe { head.cast::<*mut u8>().read() };
        self.heads[c.0].set(next);
        self.counts[c.0].set(self.counts[c.0].get() - 1);
        self.bytes.set(self.bytes.get() - c.bytes());
        Some(head)
    }

    /// Keeps `block` of class `c`; false if the lists are full.
    fn push(&self, c: Class, block: *mut u8) -> bool {
        let bytes = self.bytes.get() + c.bytes();
        if self.counts[c.0].get() >= PER_CLASS || bytes > PER_THREAD_BYTES {
            return false;
        }
        // SAFETY: the caller gives up `block`, at least 16 bytes aligned to at least two
        // words, so its first word can hold the list's next block.
        unsafe { block.cast::<*mut u8>().write(self.heads[c.0].get()) };
        self.heads[c.0].set(block);
        self.counts[c.0].set(self.counts[c.0].get() + 1);
        self.bytes.set(bytes);
        true
    }
}

thread_local! {
    // No destructor, so on targets with native thread-locals (Linux, where windtunnel runs)
    // no registration at a thread's first allocation (which could itself allocate) and no
    // state to check on each access; the lists outlive every destructor of the thread.
    static CACHE: Cache = const { Cache::new() };

    // Its destructor empties the thread's lists as the thread ends, so threads that come and
    // go (a runtime's blocking pool) leave nothing behind. Registered at the first block a
    // thread keeps.
    static EMPTY_AT_EXIT: EmptyAtExit = const { EmptyAtExit };
}

/// Empties the thread's lists when dropped, as the thread ends.
struct EmptyAtExit;

impl Drop for EmptyAtExit {
    fn drop(&mut self) {
        let _ = CACHE.try_with(|cache| {
            cache.state.set(Emptied::Done);
            cache.empty();
        });
    }
}

/// Keeps freed `block` of class `c` on this thread's lists; false if it is not kept (the lists
/// are full, or the thread is ending and they were emptied already).
fn keep(c: Class, block: *mut u8) -> bool {
    CACHE
        .try_with(|cache| {
            (cache.state.get() == Emptied::Arranged || arrange(cache)) && cache.push(c, block)
        })
        .unwrap_or(false)
}

/// Arranges for this thread's lists to be emptied as it ends, at the first block it keeps;
/// false if they cannot be (being arranged, or the thread is ending).
#[cold]
#[inline(never)]
fn arrange(cache: &Cache) -> bool {
    match cache.state.get() {
        Emptied::Arranged => true,
        Emptied::Arranging | Emptied::Done => false,
        Emptied::Unarranged => {
            // Registering the destructor may allocate and free (on targets without native
            // thread-local destructors); a block freed meanwhile is not kept, so this is not
            // entered twice.
            cache.state.set(Emptied::Arranging);
            let arranged = EMPTY_AT_EXIT.try_with(|_| ()).is_ok();
            cache.state.set(if arranged {
                Emptied::Arranged
            } else {
                Emptied::Done
            });
            arranged
        }
    }
}

/// A block aligned to `align` carved out of a `malloc` block of `outer` bytes, with the
/// `malloc` block's start in the word below it and at least `outer.size() - align` bytes
/// after it (null if `malloc` fails).
///
/// # Safety
/// `outer` is at least `align` bytes, and `align` a power of two above `MALLOC_ALIGN`.
unsafe fn carve(outer: Layout, align: usize) -> *mut u8 {
    // SAFETY: `outer` is at least `align` bytes, so not zero-sized.
    let raw = unsafe { System.alloc(outer) };
    if raw.is_null() {
        return raw;
    }
    // `raw` is `MALLOC_ALIGN`-aligned (two words) and `align` a larger power of two, so the
    // next multiple of `align` strictly above `raw` is between `MALLOC_ALIGN` and `align`
    // bytes in: room for the word below it, and `outer.size() - align` bytes after it.
    let offset = align - (raw as usize & (align - 1));
    // SAFETY: `offset <= align <= outer.size()`, inside the block.
    let aligned = unsafe { raw.add(offset) };
    // SAFETY: the word below `aligned` is inside the block (offset >= two words) and
    // aligned to a word, as `aligned` is a multiple of at least four words.
    unsafe { aligned.cast::<*mut u8>().sub(1).write(raw) };
    aligned
}

/// Frees a block `carve` made from a `malloc` block of `outer` bytes.
///
/// # Safety
/// `ptr` came from `carve(outer, _)` and is freed once.
unsafe fn uncarve(ptr: *mut u8, outer: Layout) {
    // SAFETY: `carve` wrote the block's start in the word below `ptr`.
    let raw = unsafe { ptr.cast::<*mut u8>().sub(1).read() };
    // SAFETY: `raw` came from `System.alloc(outer)`.
    unsafe { System.dealloc(raw, outer) }
}

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
// allocated with: unchanged for plain layouts; for padded ones the outer layout, which `outer`
// computes the same way from the same layout at allocation and at deallocation; for cached
// ones the outer layout of their class, which `Class::of` computes the same way from the same
// layout (`GlobalAlloc` guarantees the caller passes the layout it allocated with). A cached
// block is handed out again only after it was freed, and only for a layout of its class.
unsafe impl GlobalAlloc for MallocAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = Class::of(&layout) {
            if let Some(block) = CACHE.try_with(|cache| cache.pop(c)).ok().flatten() {
                return block;
            }
            return c.make();
        }
        if !padded(&layout) {
            // SAFETY: the caller's layout has a non-zero size, as `GlobalAlloc` requires.
            return unsafe { System.alloc(layout) };
        }
        let Some(outer) = outer(&layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` is `size + align` bytes (so `size` follow the carved block), and
        // `align` is past `MALLOC_ALIGN`.
        unsafe { carve(outer, layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(c) = Class::of(&layout) {
            if !keep(c, ptr) {
                // SAFETY: `alloc` made `ptr` as a block of its class.
                unsafe { c.unmake(ptr) };
            }
            return;
        }
        if !padded(&layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let Some(outer) = outer(&layout) else {
            return; // never allocated: `alloc` returned null for this layout
        };
        // SAFETY: `alloc` carved `ptr` from a block of `outer` bytes.
        unsafe { uncarve(ptr, outer) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Class::of(&layout).is_none() && !padded(&layout) {
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
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let (old_class, new_class) = (Class::of(&layout), Class::of(&new_layout));
        if old_class.is_none() && new_class.is_none() && !padded(&layout) {
            // SAFETY: `ptr` came from `System` with `layout`; the caller's `new_size` is valid.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if old_class.is_some() && old_class == new_class {
            return ptr; // the block's class holds the new size too
        }
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
            for size in [1, 24, 128, 384, 1000, 1100, 5000, 40_000] {
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

    #[test]
    fn a_freed_block_is_handed_out_again_for_its_class_and_zeroed_when_asked() {
        // Goal: the per-thread cache reuses a freed block for a layout of its class (same or
        // smaller size, alignment up to 128), small and carved alike, and `alloc_zeroed`
        // clears a reused block.
        let a = MallocAligned;
        let small = Layout::from_size_align(40, 8).expect("valid");
        // SAFETY: each block is freed once with its own layout.
        unsafe {
            let p = a.alloc(small);
            a.dealloc(p, small);
            let q = a.alloc(Layout::from_size_align(33, 1).expect("valid"));
            assert_eq!(q, p, "33 and 40 bytes are both 48-byte blocks");
            a.dealloc(q, Layout::from_size_align(33, 1).expect("valid"));
            let r = a.alloc(Layout::from_size_align(40, 64).expect("valid"));
            assert_ne!(r, p, "an aligned layout is carved, not a small block");
            assert_eq!(r as usize % 64, 0);
            a.dealloc(r, Layout::from_size_align(40, 64).expect("valid"));
        }
        let big = Layout::from_size_align(2000, 8).expect("valid");
        let task = Layout::from_size_align(1950, 128).expect("valid");
        // SAFETY: each block is freed once with its own layout.
        unsafe {
            let p = a.alloc(big);
            p.write_bytes(0xab, 2000);
            a.dealloc(p, big);
            let q = a.alloc(task);
            assert_eq!(q, p, "a block of the same class is reused");
            assert_eq!(q as usize % 128, 0);
            a.dealloc(q, task);
            let z = a.alloc_zeroed(big);
            assert_eq!(z, p);
            assert!((0..2000).all(|i| z.add(i).read() == 0));
            // Growing within the class keeps the block; past it moves the bytes.
            let same = a.realloc(z, big, 2048);
            assert_eq!(same, z);
            same.write_bytes(7, 2048);
            let grown_layout = Layout::from_size_align(2048, 8).expect("valid");
            let moved = a.realloc(same, grown_layout, 9000);
            assert_ne!(moved, same);
            assert!((0..2048).all(|i| moved.add(i).read() == 7));
            a.dealloc(moved, Layout::from_size_align(9000, 8).expect("valid"));
        }
    }

    #[test]
    fn the_per_thread_lists_are_bounded_by_count_and_by_bytes() {
        // Goal: a thread keeps at most `PER_CLASS` blocks of a class and `PER_THREAD_BYTES`
        // in all; the rest go back to `malloc` (a fresh cache, so other tests' blocks do not
        // count).
        let cache = Cache::new();
        let small = Class::of(&Layout::from_size_align(40, 8).expect("valid")).expect("cached");
        let big =
            Class::of(&Layout::from_size_align(CACHED_MAX, 128).expect("valid")).expect("cached");
        assert_eq!((small.bytes(), big.bytes()), (48, CACHED_MAX));
        // SAFETY: blocks come from `make` of their class; each is either kept by the cache or
        // unmade here, once; the kept ones are unmade at the end.
        unsafe {
            let blocks: Vec<*mut u8> = (0..100).map(|_| small.make()).collect();
            let kept = blocks.iter().filter(|&&b| cache.push(small, b)).count();
            assert_eq!(kept, usize::from(PER_CLASS));
            for &b in &blocks[kept..] {
                small.unmake(b);
            }
            let mut taken = 0;
            while taken < 60 {
                let b = big.make();
                assert_eq!(b as usize % GRAIN, 0);
                if !cache.push(big, b) {
                    big.unmake(b);
                    break;
                }
                taken += 1;
            }
            assert_eq!(
                taken,
                (PER_THREAD_BYTES - kept * small.bytes()) / big.bytes(),
                "stopped by the byte bound"
            );
            for class in [small, big] {
                while let Some(b) = cache.pop(class) {
                    class.unmake(b);
                }
            }
            assert_eq!(cache.bytes.get(), 0);
        }
    }

    #[test]
    fn a_block_freed_on_another_thread_is_kept_or_freed_there_safely() {
        // Goal: blocks cross threads (a task made on one runtime, dropped on another); the
        // freeing thread's lists take them, and reuse them for its own allocations.
        let a = MallocAligned;
        let layout = Layout::from_size_align(3000, 16).expect("valid");
        // SAFETY: each block is freed once, with its layout.
        let addrs: Vec<usize> = (0..8)
            .map(|i| unsafe {
                let p = a.alloc(layout);
                p.write_bytes(i as u8, 3000);
                p as usize
            })
            .collect();
        std::thread::spawn(move || {
            let a = MallocAligned;
            // SAFETY: as above; the blocks were made by this allocator.
            unsafe {
                for &p in &addrs {
                    a.dealloc(p as *mut u8, layout);
                }
                let again = a.alloc(layout);
                assert!(addrs.contains(&(again as usize)));
                a.dealloc(again, layout);
            }
        })
        .join()
        .expect("the other thread ends");
    }

    #[test]
    fn a_thread_arranges_to_empty_its_lists_at_its_first_kept_block_and_empties_them_as_it_ends() {
        // Goal: the lists of a thread that ends go back to `malloc` (a runtime's blocking
        // threads come and go for as long as a service runs), and nothing is kept after.
        // Method: on a fresh thread, free blocks (kept, and the emptying arranged), then run
        // the emptying as the thread's end would, and free one more.
        std::thread::spawn(|| {
            let a = MallocAligned;
            let layout = Layout::from_size_align(5000, 8).expect("valid");
            assert_eq!(CACHE.with(|c| c.state.get()), Emptied::Unarranged);
            // SAFETY: each block is freed once, with its layout.
            unsafe {
                let blocks: Vec<*mut u8> = (0..3).map(|_| a.alloc(layout)).collect();
                for b in blocks {
                    a.dealloc(b, layout);
                }
            }
            let kept = CACHE.with(|c| (c.state.get(), c.bytes.get()));
            assert_eq!(kept, (Emptied::Arranged, 3 * 5120));
            drop(EmptyAtExit);
            // SAFETY: as above.
            unsafe {
                let late = a.alloc(layout);
                a.dealloc(late, layout);
            }
            let after = CACHE.with(|c| (c.state.get(), c.bytes.get()));
            assert_eq!(after, (Emptied::Done, 0), "emptied, and nothing kept after");
        })
        .join()
        .expect("the thread's checks pass");
    }
}
