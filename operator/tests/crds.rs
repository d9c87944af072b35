//! The committed CRD YAML (crds/ and the Helm chart's crds/) matches the Rust types.

use std::path::Path;

#[test]
fn committed_crds_match_the_rust_types() {
    let generated = idn_operator::resources::crds_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["crds/idn.dev.yaml", "charts/idn-operator/crds/idn.dev.yaml"] {
        let committed = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            committed == generated,
            "{file} is out of date with the CRD types: run `make crds`"
        );
    }
}
