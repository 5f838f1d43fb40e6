//! Keeps the module map of `docs/architecture.md` in step with the source tree:
//! a newcomer finds their way by it, so a file it does not name is a file nobody
//! will find, and a name it keeps after the file is gone sends them nowhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use std::collections::BTreeSet;
use std::path::Path;

fn source_files(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            out.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The first cell of every row of the table under `## Module map`.
fn mapped_files(doc: &str) -> BTreeSet<String> {
    doc.split("## Module map")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let cell = row.split('|').nth(1)?.trim();
            cell.strip_prefix('`')?.strip_suffix('`').map(str::to_owned)
        })
        .collect()
}

#[test]
fn the_module_map_names_every_source_file_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeSet::new();
    source_files(&root, &root, &mut files);
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/architecture.md");
    let doc = std::fs::read_to_string(doc_path).unwrap_or_else(|e| panic!("{doc_path}: {e}"));
    let mapped = mapped_files(&doc);
    let missing: Vec<_> = files.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&files).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's module map is out of date: not named {missing:?}; named but gone {stale:?}"
    );
}
