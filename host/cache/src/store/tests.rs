use super::*;
use crate::{KeyComponents, maintenance};

fn key(n: u32) -> Key {
    let settings = format!("{{\"n\":{n}}}");
    KeyComponents { node_type: "t", node_version: "1", settings: &settings, inputs: &[], salt: "" }.key()
}

fn output<'a>(port: &'a str, data: &'a [u8]) -> entry::OutputRef<'a> {
    entry::OutputRef {
        port,
        content_type: "application/octet-stream",
        data_hash: *blake3::hash(data).as_bytes(),
        data,
        extensions: vec![("x", "y")],
    }
}

fn put(writer: &Writer, n: u32) {
    let (s, l) = (small(n), large(n));
    writer.put(key(n), "t", &[output("small", &s), output("large", &l)]);
}

fn small(n: u32) -> Vec<u8> {
    format!("small {n}").into_bytes()
}

fn large(n: u32) -> Vec<u8> {
    (0..INLINE_MAX as u32 + 100).map(|i| (i.wrapping_mul(n + 7) >> 3) as u8).collect()
}

/// Stores keys `range`, each with a small and a large output.
fn store_range(root: &Path, range: std::ops::Range<u32>) -> WriteReport {
    let store = LocalStore::open(root).unwrap();
    let writer = store.writer("run-a", None);
    for n in range {
        put(&writer, n);
    }
    writer.finish()
}

fn assert_hit(store: &LocalStore, n: u32) {
    match store.get(&key(n)) {
        Lookup::Hit(hit) => {
            assert_eq!(hit.run_id, "run-a");
            assert_eq!(hit.outputs.len(), 2);
            assert_eq!((hit.outputs[0].port.as_str(), &hit.outputs[0].data), ("small", &small(n)));
            assert_eq!((hit.outputs[1].port.as_str(), &hit.outputs[1].data), ("large", &large(n)));
            assert_eq!(hit.outputs[1].extensions, vec![("x".to_owned(), "y".to_owned())]);
            assert_eq!(hit.outputs[1].data_hash, *blake3::hash(&large(n)).as_bytes());
        }
        other => panic!("key {n}: expected a hit, got {other:?}"),
    }
}

fn only_segment(root: &Path) -> PathBuf {
    let files = segment_files(root).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn stored_results_are_hits_after_reopening_and_others_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let report = store_range(dir.path(), 0..50);
    assert_eq!(report, WriteReport { committed: 50, dropped: 0, error: None });
    let store = LocalStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 50);
    (0..50).for_each(|n| assert_hit(&store, n));
    assert_eq!(store.get(&key(50)), Lookup::Absent);
    assert_eq!(store.problems().0.len(), 0);
    // Large outputs are blobs named by their hash; small ones are inline.
    assert!(blob_path(dir.path(), blake3::hash(&large(3)).as_bytes()).is_file());
    assert!(!blob_path(dir.path(), blake3::hash(&small(3)).as_bytes()).exists());
}

#[test]
fn concurrent_writers_in_one_directory_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || store_range(&root, t * 100..t * 100 + 100))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().committed, 100);
    }
    let store = LocalStore::open(&root).unwrap();
    assert_eq!(store.len(), 400);
    (0..400).for_each(|n| assert_hit(&store, n));
    assert_eq!(segment_files(&root).unwrap().len(), 4);
}

#[test]
fn a_segment_cut_anywhere_keeps_every_whole_record_and_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    store_range(dir.path(), 0..3);
    let segment = only_segment(dir.path());
    let full = fs::read(&segment).unwrap();
    let ends: Vec<usize> = scan_segment(&segment).unwrap().records.iter().map(|r| r.1.end + 32).collect();
    for cut in SEGMENT_HEADER..full.len() {
        fs::write(&segment, &full[..cut]).unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        assert_eq!(store.len(), whole, "cut at {cut}");
        (0..whole as u32).for_each(|n| assert_hit(&store, n));
        assert_eq!(store.problems().0.len(), 0, "a torn tail is not damage (cut at {cut})");
    }
}

#[test]
fn a_flipped_byte_never_gives_a_wrong_hit() {
    let dir = tempfile::tempdir().unwrap();
    store_range(dir.path(), 0..3);
    let segment = only_segment(dir.path());
    let full = fs::read(&segment).unwrap();
    for at in SEGMENT_HEADER..full.len() {
        let mut bad = full.clone();
        bad[at] ^= 0x10;
        fs::write(&segment, &bad).unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for n in 0..3 {
            match store.get(&key(n)) {
                Lookup::Hit(_) => assert_hit(&store, n),
                Lookup::Absent | Lookup::Corrupt(_) => {}
            }
        }
        assert!(store.len() < 3, "flipping byte {at} went unnoticed");
    }
}

#[test]
fn a_corrupt_or_missing_blob_is_a_miss_and_storing_again_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    store_range(dir.path(), 0..2);
    let blob = blob_path(dir.path(), blake3::hash(&large(0)).as_bytes());
    let mut bytes = fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    fs::write(&blob, &bytes).unwrap();
    fs::remove_file(blob_path(dir.path(), blake3::hash(&large(1)).as_bytes())).unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    for n in 0..2 {
        let Lookup::Corrupt(why) = store.get(&key(n)) else { panic!("key {n} should be corrupt") };
        assert!(why.contains(if n == 0 { "does not match its name" } else { "is missing" }), "{why}");
    }
    // The rerun stores the result again through the same store: the blob is rewritten.
    let writer = store.writer("run-a", None);
    for n in 0..2 {
        put(&writer, n);
    }
    assert_eq!(writer.finish().committed, 2);
    let store = LocalStore::open(dir.path()).unwrap();
    (0..2).for_each(|n| assert_hit(&store, n));
    assert!(maintenance::verify(dir.path()).unwrap().problems.iter().all(|p| !p.contains("corrupt")));
}

#[test]
fn a_newer_format_or_a_foreign_directory_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("FORMAT"), "backplane-cache 2\n").unwrap();
    let err = LocalStore::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::NewerFormat { found: 2, .. }), "{err}");
    assert!(err.to_string().contains("use a newer Backplane, or another `[cache] dir`"), "{err}");

    fs::write(dir.path().join("FORMAT"), "my notes\n").unwrap();
    let err = LocalStore::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("is not a Backplane cache"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("entries")).unwrap();
    let err = LocalStore::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("it is a symbolic link, not a directory"), "{err}");
}

#[test]
fn an_unreadable_segment_is_skipped_with_a_problem_and_the_rest_still_hit() {
    let dir = tempfile::tempdir().unwrap();
    store_range(dir.path(), 0..2);
    fs::write(entries_dir(dir.path()).join("0000000000000-x-0.seg"), b"not a segment").unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    (0..2).for_each(|n| assert_hit(&store, n));
    let (problems, _) = store.problems();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("bad header"), "{problems:?}");
}

#[test]
fn gc_merges_keeps_the_newest_and_respects_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    store_range(dir.path(), 0..10);
    store_range(dir.path(), 5..15);
    // Segments this young are left alone (a writer may not have locked its yet): age them.
    for path in segment_files(dir.path()).unwrap() {
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() - std::time::Duration::from_secs(120))
            .unwrap();
    }
    let before = maintenance::stats(dir.path()).unwrap();
    assert_eq!((before.entries, before.records, before.segments), (15, 20, 2));
    let c = maintenance::gc(dir.path(), None, None).unwrap();
    assert_eq!((c.entries_kept, c.entries_removed, c.segments_merged), (15, 5, 2));
    let store = LocalStore::open(dir.path()).unwrap();
    (0..15).for_each(|n| assert_hit(&store, n));
    assert_eq!(segment_files(dir.path()).unwrap().len(), 1);
    // A size that fits about half the entries.
    let per_entry = (large(0).len() + 200) as u64;
    let c = maintenance::gc(dir.path(), Some(per_entry * 7), None).unwrap();
    assert!(c.entries_kept > 0 && c.entries_kept <= 7, "{c:?}");
    // Nothing is an hour old yet.
    let kept = c.entries_kept;
    let c = maintenance::gc(dir.path(), None, Some(std::time::Duration::from_secs(3600))).unwrap();
    assert_eq!((c.entries_kept, c.entries_removed), (kept, 0));
    let v = maintenance::verify(dir.path()).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
}

#[test]
fn clear_removes_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    store_range(dir.path(), 0..5);
    let (segments, bytes) = maintenance::clear(dir.path()).unwrap();
    assert_eq!(segments, 1);
    assert!(bytes > 5 * INLINE_MAX as u64);
    assert!(LocalStore::open(dir.path()).unwrap().is_empty());
}
