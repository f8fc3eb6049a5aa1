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

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::keep_freed_memory());
        // Large blocks still allocate, free and come back zeroed.
        let v = vec![0.0f32; 1 << 24];
        assert!(v.iter().all(|&x| x == 0.0));
    }
}
