use super::*;

fn allocator(size: u64, band: u64) -> OffsetAllocator {
    OffsetAllocator::new("test", size, band).with_seed(7)
}

#[test]
fn fills_every_offset_once_then_is_full() {
    for (size, band) in [(1, 0), (6, 0), (30, 16), (254, 16), (2768, 86)] {
        let mut alloc = allocator(size, band);
        let mut seen = vec![false; size as usize];
        for _ in 0..size {
            let offset = alloc.allocate_next().unwrap();
            assert!(!seen[offset as usize], "{offset} handed out twice");
            seen[offset as usize] = true;
        }
        assert_eq!(alloc.allocate_next(), Err(Error::Full));
        assert_eq!((alloc.used(), alloc.free()), (size, 0));
    }
}

#[test]
fn pooled_offsets_are_handed_out_first_without_counting_twice() {
    let mut alloc = allocator(30, 16);
    let mut other = alloc.clone();
    let pooled = [
        other.allocate_next().unwrap(),
        other.allocate_next().unwrap(),
    ];
    // The pool holds allocated offsets only.
    assert!(!alloc.add_to_pool(pooled[0]));
    alloc.restore(&other.snapshot()).unwrap();
    assert!(alloc.add_to_pool(pooled[0]) && alloc.add_to_pool(pooled[1]));
    assert!(!alloc.add_to_pool(pooled[1]));
    assert_eq!(alloc.pooled().collect::<Vec<_>>(), pooled);
    assert_eq!(alloc.allocate_next(), Ok(pooled[0]));
    assert_eq!(alloc.used(), 2);
    assert_eq!(alloc.snapshot(), other.snapshot());
    // Asking for a pooled offset by value takes it out of the pool.
    assert_eq!(alloc.allocate(pooled[1]), Ok(()));
    assert_eq!(alloc.pooled().len(), 0);
    assert_eq!(
        alloc.allocate(pooled[1]),
        Err(Error::OffsetAllocated { offset: pooled[1] })
    );
    let next = alloc.allocate_next().unwrap();
    assert!(!pooled.contains(&next));
    assert_eq!(alloc.used(), 3);
}

#[test]
fn released_or_restored_away_offsets_leave_the_pool() {
    let mut alloc = allocator(30, 16);
    let first = alloc.allocate_next().unwrap();
    let second = alloc.allocate_next().unwrap();
    let before_second = {
        let mut copy = alloc.clone();
        copy.release(second);
        copy.snapshot()
    };
    assert!(alloc.add_to_pool(first) && alloc.add_to_pool(second));
    assert!(alloc.release(first));
    assert_eq!(alloc.pooled().collect::<Vec<_>>(), [second]);
    alloc.allocate(first).unwrap();
    alloc.restore(&before_second).unwrap();
    assert_eq!(alloc.pooled().len(), 0);
    assert!(alloc.add_to_pool(first));
    assert_eq!(alloc.drain_pool(), [first]);
    assert!(alloc.has(first));
}

#[test]
fn the_dynamic_band_free_count_leaves_the_static_band_out() {
    let mut alloc = allocator(30, 16);
    assert_eq!(alloc.dynamic_free(), 14);
    alloc.allocate(3).unwrap();
    alloc.allocate(20).unwrap();
    assert_eq!(alloc.dynamic_free(), 13);
}

#[test]
fn empty_range_is_full_at_once() {
    let mut alloc = allocator(0, 0);
    assert_eq!(alloc.allocate_next(), Err(Error::Full));
}

#[test]
fn dynamic_band_is_filled_before_the_static_band() {
    let (size, band) = (126, 16);
    let mut alloc = allocator(size, band);
    for _ in band..size {
        let offset = alloc.allocate_next().unwrap();
        assert!(
            offset >= band,
            "{offset} taken from the static band too early"
        );
    }
    for _ in 0..band {
        assert!(alloc.allocate_next().unwrap() < band);
    }
    assert_eq!(alloc.allocate_next(), Err(Error::Full));
}

#[test]
fn released_offset_is_the_only_one_left() {
    let mut alloc = allocator(254, 16);
    while alloc.allocate_next().is_ok() {}
    assert!(alloc.release(4));
    assert!(!alloc.release(4));
    assert_eq!(alloc.allocate_next(), Ok(4));
}

#[test]
fn allocate_specific_offsets() {
    let mut alloc = allocator(10, 0);
    assert_eq!(alloc.allocate(3), Ok(()));
    assert_eq!(alloc.allocate(3), Err(Error::OffsetAllocated { offset: 3 }));
    assert_eq!(
        alloc.allocate(10),
        Err(Error::OffsetNotInRange {
            offset: 10,
            size: 10
        })
    );
    assert!(alloc.has(3));
    assert!(!alloc.has(4));
    assert!(!alloc.release(10));
    assert_eq!(alloc.iter().collect::<Vec<_>>(), vec![3]);
}

#[test]
fn first_free_skips_runs_across_containers() {
    for size in [1 << 20, 1 << 40] {
        let mut alloc = allocator(size, 0);
        for offset in 100..200_000 {
            alloc.allocate(offset).unwrap();
        }
        assert_eq!(alloc.offsets.first_free(100, size), Some(200_000));
        assert_eq!(alloc.offsets.first_free(150, 200_000), None);
        assert_eq!(alloc.offsets.first_free(150, 200_001), Some(200_000));
        assert_eq!(alloc.offsets.first_free(99, 200_000), Some(99));
    }
}

#[test]
fn run_up_to_the_last_offset_of_a_wide_range() {
    let size = u64::MAX;
    let mut alloc = allocator(size, 0);
    for offset in size - 5..size {
        alloc.allocate(offset).unwrap();
    }
    assert_eq!(alloc.offsets.first_free(size - 5, size), None);
    assert_eq!(alloc.offsets.first_free(size - 6, size), Some(size - 6));
}

#[test]
fn huge_band_allocates_inside_a_window_that_grows_with_usage() {
    let band = 256;
    let mut alloc = allocator(u64::MAX, band);
    for _ in 0..20_000 {
        let offset = alloc.allocate_next().unwrap();
        assert!((band..band + (1 << 17)).contains(&offset), "{offset}");
    }
    assert_eq!(alloc.window(), 1 << 17);
}

#[test]
fn window_is_never_full_even_when_taken_by_hand() {
    let band = 256;
    let mut alloc = allocator(1 << 40, band);
    for offset in band..band + MIN_WINDOW {
        alloc.allocate(offset).unwrap();
    }
    assert_eq!(alloc.window(), 1 << 18);
    let next = alloc.allocate_next().unwrap();
    assert!(
        (band + MIN_WINDOW..band + (1 << 18)).contains(&next),
        "{next}"
    );
}

#[test]
fn snapshot_restore_round_trip() {
    for size in [1000, 1 << 40] {
        let mut alloc = allocator(size, 16);
        for _ in 0..300 {
            alloc.allocate_next().unwrap();
        }
        alloc.allocate(3).unwrap();
        let snapshot = alloc.snapshot();
        assert_eq!(snapshot.data.len(), alloc.snapshot_size());

        let mut restored = OffsetAllocator::new("test", size, 16);
        restored.restore(&snapshot).unwrap();
        assert_eq!(restored.used(), 301);
        assert_eq!(restored.used_static, alloc.used_static);
        assert!(restored.iter().eq(alloc.iter()));
    }
}

#[test]
fn restore_refuses_other_ranges_and_bad_data() {
    let mut alloc = allocator(100, 0);
    alloc.allocate(5).unwrap();
    let other = Snapshot {
        range: "other".into(),
        data: alloc.snapshot().data,
        extra: Vec::new(),
    };
    assert_eq!(
        alloc.restore(&other),
        Err(Error::RangeMismatch {
            expected: "test".into(),
            found: "other".into()
        })
    );

    let garbage = Snapshot {
        range: "test".into(),
        data: vec![1, 2, 3],
        extra: Vec::new(),
    };
    assert!(matches!(
        alloc.restore(&garbage),
        Err(Error::CorruptSnapshot { .. })
    ));

    let mut larger = allocator(1000, 0);
    larger.allocate(500).unwrap();
    assert!(matches!(
        alloc.restore(&larger.snapshot()),
        Err(Error::CorruptSnapshot { .. })
    ));
    assert!(alloc.has(5));
    assert_eq!(alloc.used(), 1);
}

#[test]
fn same_seed_same_sequence() {
    let run = || {
        let mut alloc = allocator(1 << 20, 256);
        (0..50)
            .map(|_| alloc.allocate_next().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}
