//! Every example node-agent config loads, validates, and points at models that load.

use std::path::Path;

use idn_contract::config::NodeAgentConfig;
use idn_node_agent::model::Model;

fn configs(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            configs(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
}

#[test]
fn example_configs_load_and_their_models_are_ready() {
    let mut found = Vec::new();
    configs(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent"),
        &mut found,
    );
    assert!(found.len() >= 4, "{found:?}");
    for path in found {
        let config = NodeAgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for model in config.models {
            let name = model.name.clone();
            assert!(
                Model::load(model).is_ready(),
                "{}: model {name}",
                path.display()
            );
        }
    }
}
