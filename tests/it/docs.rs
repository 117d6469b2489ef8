//! The README's directive table is generated from the directive table;
//! this fails when the copy is stale (regenerate with
//! `SWITCHYARD_UPDATE_README=1 cargo test docs_`).

use switchyard::docs::{BEGIN, END, directives_markdown};

#[test]
fn docs_readme_directive_table_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README lacks the directives begin marker")
        + BEGIN.len();
    let end = readme
        .find(END)
        .expect("README lacks the directives end marker");
    let current = readme[start..end].trim();
    let wanted = directives_markdown();
    if current != wanted.trim() {
        if std::env::var_os("SWITCHYARD_UPDATE_README").is_some() {
            let updated = format!("{}\n{}{}", &readme[..start], wanted, &readme[end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        panic!(
            "README.md's directive table is stale: run SWITCHYARD_UPDATE_README=1 cargo test docs_"
        );
    }
}

#[test]
fn docs_every_directive_is_documented() {
    for d in switchyard::config::directives::DIRECTIVES {
        assert!(!d.doc.is_empty(), "{} has no description", d.name);
    }
}
