//! Keep freed memory for reuse. A training step allocates and frees the same
//! large buffers (activations, gradients: tens of MB each) every time. glibc
//! serves each with a fresh `mmap` and returns it on free, so every step
//! pays a page fault and a zeroing per 4 KiB page touched - measured at 10-15 %
//! of an AlexNet step. PyTorch avoids this with its caching allocator; we
//! ask glibc to serve large blocks from its heap and not to give freed memory
//! back, so later steps reuse pages that are already mapped. The cost: the
//! process keeps its peak memory until it exits. All threads share the one
//! heap: a thread of the pool otherwise gets its own arena, whose heaps glibc
//! shrinks on free whatever the trim threshold (measured: 57 000 page faults
//! per AlexNet step run on a pool thread, none with one arena).

/// Tune the allocator as described above (glibc on Linux; elsewhere nothing).
/// Returns whether the allocator accepted the settings.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // glibc's malloc.h: M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4, M_ARENA_MAX = -8.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt takes two ints and only changes the allocator's
        // tuning parameters (glibc documents these three); no memory is passed.
        unsafe {
            mallopt(M_ARENA_MAX, 1) == 1 && mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// glibc's `struct mallinfo`: ten ints (enough for the sizes used here;
    /// `mallinfo2` would need glibc 2.33), the fifth `hblkhd`, the bytes in
    /// blocks glibc mapped on their own.
    #[repr(C)]
    struct Mallinfo([i32; 10]);

    extern "C" {
        fn mallinfo() -> Mallinfo;
    }

    /// Bytes glibc maps on their own for a 40 MiB block while it is held.
    /// Above 32 MiB: freeing a smaller mapped block raises glibc's mmap
    /// threshold to its size, so a smaller one would come from the heap on
    /// the second try even untuned.
    fn mapped_for_a_large_block() -> usize {
        // Safety: mallinfo only reads the allocator's statistics.
        let mapped = || unsafe { mallinfo() }.0[4] as usize;
        let before = mapped();
        let block = std::hint::black_box(vec![1u8; 40 << 20]);
        let during = mapped();
        drop(block);
        during.saturating_sub(before)
    }

    /// The settings change the process they are made in, so they are made in
    /// a child process of their own (this test binary again, running the
    /// ignored test below), not in the one every other test shares.
    #[test]
    fn large_blocks_come_from_the_heap_once_tuned() {
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["memory::tests::tuned_in_a_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains("1 passed"), "{out}{}", String::from_utf8_lossy(&o.stderr));
    }

    #[test]
    #[ignore = "changes the allocator of its process: run by large_blocks_come_from_the_heap_once_tuned in a child"]
    fn tuned_in_a_child() {
        // On new threads, as the pool's threads start after the settings.
        let on_a_new_thread = || std::thread::spawn(mapped_for_a_large_block).join().unwrap();
        // Untuned, glibc maps a block this large on its own (and unmaps it
        // on free: a page fault per page at every reuse).
        for _ in 0..2 {
            assert!(on_a_new_thread() >= 40 << 20, "untuned glibc did not map the block on its own");
        }
        assert!(super::keep_freed_memory());
        // Tuned, it comes from the heap, whose freed memory stays for reuse.
        // (This sees M_MMAP_MAX; the arena and trim settings act on threads
        // and heaps a test harness has already set up.)
        assert_eq!(on_a_new_thread(), 0, "tuned glibc still maps large blocks on their own");
    }
}
