//! The README's directive table and variable list are generated from the
//! tables in the code; these fail when a copy is stale (regenerate with
//! `SWITCHYARD_UPDATE_README=1 cargo test docs_`).

use switchyard::docs::{
    BEGIN, END, VARIABLES_BEGIN, VARIABLES_END, directives_markdown, variables_markdown,
};

/// Compares the README between `begin` and `end` with `wanted`; rewrites
/// it instead when `SWITCHYARD_UPDATE_README` is set.
fn check_region(begin: &str, end: &str, wanted: &str, what: &str) {
    // The tests run in parallel and may both rewrite the file.
    static README: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = README.lock().unwrap_or_else(|e| e.into_inner());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme
        .find(begin)
        .unwrap_or_else(|| panic!("README lacks the {what} begin marker"))
        + begin.len();
    let stop = readme
        .find(end)
        .unwrap_or_else(|| panic!("README lacks the {what} end marker"));
    if readme[start..stop].trim() == wanted.trim() {
        return;
    }
    if std::env::var_os("SWITCHYARD_UPDATE_README").is_some() {
        let updated = format!("{}\n{}{}", &readme[..start], wanted, &readme[stop..]);
        std::fs::write(path, updated).unwrap();
        panic!("README.md's {what} was stale and has been rewritten: review and commit it");
    }
    panic!("README.md's {what} is stale: run SWITCHYARD_UPDATE_README=1 cargo test docs_");
}

#[test]
fn docs_readme_directive_table_is_current() {
    check_region(BEGIN, END, &directives_markdown(), "directive table");
}

#[test]
fn docs_readme_variable_list_is_current() {
    check_region(
        VARIABLES_BEGIN,
        VARIABLES_END,
        &variables_markdown(),
        "variable list",
    );
}
#[test]
fn docs_every_directive_is_documented() {
    for d in switchyard::config::walk::all() {
        assert!(!d.doc.is_empty(), "{} has no description", d.name);
    }
}
