//! `schemas/schema.graphql` is what the code builds; `tools/update-schema` rewrites it.

#[test]
fn committed_sdl_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/schema.graphql");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let built = assetlog::api::graphql::schema().sdl();
    assert!(
        committed == built,
        "schemas/schema.graphql differs from the schema the code builds; run tools/update-schema"
    );
}
