//! The README's key table is generated from the commands table; this test
//! fails when they drift. `UPDATE_README=1 cargo test --test readme`
//! rewrites the table in place.

use pie_edit::editor::Keymap;
use pie_edit::editor::commands::markdown_key_table;

const START: &str = "<!-- keys:start -->\n";
const END: &str = "<!-- keys:end -->";

#[test]
fn readme_key_table_matches_the_commands_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find(START).expect("README has a keys:start marker") + START.len();
    let end = readme.find(END).expect("README has a keys:end marker");
    let expected = markdown_key_table(&Keymap::default());
    if readme[start..end] != expected {
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "README key table is stale; run UPDATE_README=1 cargo test --test readme. Expected:\n{expected}"
            );
        }
    }
}
