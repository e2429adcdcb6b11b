//! The committed schema of summary.json is the one the code writes.

#[test]
fn committed_summary_schema_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/summary.schema.json"
    ))
    .expect("docs/summary.schema.json exists");
    assert!(
        committed == pushbench::report::summary::schema(),
        "docs/summary.schema.json is stale: regenerate it with `cargo run -- schema > docs/summary.schema.json` \
         and bump SCHEMA_VERSION if readers would notice"
    );
}
