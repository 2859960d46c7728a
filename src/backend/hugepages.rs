//! Large weight buffers backed by transparent huge pages where the kernel allows it
//! (`madvise(MADV_HUGEPAGE)`; THP is commonly in `madvise` mode).
//!
//! Decoding at batch 1 streams every weight once per token. With 4 KiB pages the
//! hardware prefetchers stop at each page boundary and the TLB misses once per 4 KiB;
//! 2 MiB pages remove both (issue 4: the f32 NLLB LM head read at 19.6 GB/s from 4 KiB
//! pages, see `benches/int8.rs`).

/// Below this, huge pages cannot help.
const MIN_BYTES: usize = 4 << 20;

/// A vector of `len` copies of `fill`, asking for huge pages before the memory is first
/// touched (pages that are already mapped would have to wait for khugepaged).
pub fn filled<T: Copy>(len: usize, fill: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    advise(v.as_mut_ptr() as *mut u8, len * std::mem::size_of::<T>());
    v.resize(len, fill);
    v
}

/// A copy of `src` in huge-page-backed memory (see [`filled`]).
pub fn copied<T: Copy>(src: &[T]) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(src.len());
    advise(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(src));
    v.extend_from_slice(src);
    v
}

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < MIN_BYTES {
        return;
    }
    // Only whole 2 MiB pages inside the allocation.
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies inside an allocation we own and have not yet written;
        // MADV_HUGEPAGE only changes how its pages are backed. Failure (THP disabled)
        // is harmless, so the result is ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *mut u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn contents_are_right_whatever_the_pages() {
        let v = super::filled(3 << 20, 7u8);
        assert!(v.len() == 3 << 20 && v.iter().all(|&b| b == 7));
        let src: Vec<u32> = (0..(2 << 20)).collect();
        assert_eq!(super::copied(&src), src);
    }
}
