//! The committed schema of summary.json and the scenario reference are
//! the ones the code writes.

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

#[test]
fn committed_scenario_reference_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scenario.md"))
            .expect("docs/scenario.md exists");
    assert!(
        committed == pushbench::scenario::keys::markdown(),
        "docs/scenario.md is stale: regenerate it with `cargo run -- scenario-reference > docs/scenario.md`"
    );
}
