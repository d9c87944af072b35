//! Reading the manifests a user would `kubectl apply`: files or directories of YAML documents,
//! each an idn custom resource. Errors name the file, the document and the field.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde::Deserialize;

use crate::resources::{
    DeliveryStrategy, InferenceDeliveryNetwork, InferenceModel, ModelPlacement,
};

/// Namespace of resources whose manifest names none, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why manifests cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: no YAML manifest found")]
    Empty { path: PathBuf },
    #[error("{path}, document {document}: {message}")]
    Invalid {
        path: PathBuf,
        document: usize,
        message: String,
    },
}

/// The idn resources found in a set of manifests.
#[derive(Debug, Default, Clone)]
pub struct Manifests {
    pub models: Vec<InferenceModel>,
    pub strategies: Vec<DeliveryStrategy>,
    pub networks: Vec<InferenceDeliveryNetwork>,
    pub placements: Vec<ModelPlacement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

impl Manifests {
    /// Reads every `.yaml`/`.yml` file of `paths` (files, or directories read in name order).
    pub fn load(paths: &[PathBuf]) -> Result<Self, ManifestError> {
        let mut manifests = Manifests::default();
        for path in paths {
            let files = files(path)?;
            if files.is_empty() {
                return Err(ManifestError::Empty { path: path.clone() });
            }
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|error| ManifestError::Read {
                    path: file.clone(),
                    error,
                })?;
                manifests.add(&file, &text)?;
            }
        }
        Ok(manifests)
    }

    /// Adds the documents of one YAML stream; `path` names it in errors.
    pub fn add(&mut self, path: &Path, text: &str) -> Result<(), ManifestError> {
        for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
            let invalid = |message: String| ManifestError::Invalid {
                path: path.to_owned(),
                document: i + 1,
                message,
            };
            let value =
                serde_norway::Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let meta: TypeMeta =
                serde_norway::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?;
            if meta.api_version.as_deref() != Some("idn.dev/v1alpha1") {
                return Err(invalid(format!(
                    "apiVersion: {:?} is not idn.dev/v1alpha1",
                    meta.api_version.unwrap_or_default()
                )));
            }
            fn parse<T: serde::de::DeserializeOwned + ResourceExt>(
                value: serde_norway::Value,
            ) -> Result<T, String> {
                // The path names the field at fault, e.g. `spec.nodes[0].tier`.
                let mut resource: T = serde_path_to_error::deserialize(value)
                    .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
                if resource.meta().name.as_deref().unwrap_or("").is_empty() {
                    return Err("metadata.name: missing".to_owned());
                }
                if resource.meta().namespace.is_none() {
                    resource.meta_mut().namespace = Some(DEFAULT_NAMESPACE.to_owned());
                }
                Ok(resource)
            }
            match meta.kind.as_deref() {
                Some("InferenceModel") => self.models.push(parse(value).map_err(invalid)?),
                Some("DeliveryStrategy") => self.strategies.push(parse(value).map_err(invalid)?),
                Some("InferenceDeliveryNetwork") => {
                    self.networks.push(parse(value).map_err(invalid)?)
                }
                Some("ModelPlacement") => self.placements.push(parse(value).map_err(invalid)?),
                other => {
                    return Err(invalid(format!(
                        "kind: {:?} is not an idn resource (InferenceModel, DeliveryStrategy, InferenceDeliveryNetwork, ModelPlacement)",
                        other.unwrap_or_default()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The resources of one namespace.
    pub fn in_namespace(&self, namespace: &str) -> Manifests {
        let keep = |ns: Option<String>| ns.as_deref() == Some(namespace);
        Manifests {
            models: self
                .models
                .iter()
                .filter(|r| keep(r.namespace()))
                .cloned()
                .collect(),
            strategies: self
                .strategies
                .iter()
                .filter(|r| keep(r.namespace()))
                .cloned()
                .collect(),
            networks: self
                .networks
                .iter()
                .filter(|r| keep(r.namespace()))
                .cloned()
                .collect(),
            placements: self
                .placements
                .iter()
                .filter(|r| keep(r.namespace()))
                .cloned()
                .collect(),
        }
    }
}

/// The files [`Manifests::load`] reads for `path`: the file itself, or a directory's `.yaml` and
/// `.yml` files in name order.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let read = |error| ManifestError::Read {
        path: path.to_owned(),
        error,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Manifests, String> {
        let mut manifests = Manifests::default();
        manifests
            .add(Path::new("m.yaml"), text)
            .map(|()| manifests)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_manifests_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist");
        let manifests = Manifests::load(&[root]).unwrap();
        assert_eq!(manifests.models.len(), 3);
        assert_eq!(manifests.strategies.len(), 3);
        assert_eq!(manifests.networks.len(), 1);
        assert_eq!(manifests.placements.len(), 1);
        assert_eq!(
            manifests.networks[0].namespace().as_deref(),
            Some("default")
        );
    }

    #[test]
    fn errors_name_the_file_document_and_field() {
        let bad_tier = "apiVersion: idn.dev/v1alpha1\nkind: InferenceDeliveryNetwork\nmetadata: {name: n}\nspec:\n  nodes:\n    - {name: a, tier: moon}\n";
        let err = load(&format!("---\n{bad_tier}")).unwrap_err();
        assert!(err.starts_with("m.yaml, document "), "{err}");
        assert!(
            err.contains("spec.nodes[0].tier: unknown variant `moon`"),
            "{err}"
        );

        let err = load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
        assert!(
            err.contains("apiVersion: \"v1\" is not idn.dev/v1alpha1"),
            "{err}"
        );
        let err =
            load("apiVersion: idn.dev/v1alpha1\nkind: Gadget\nmetadata: {name: x}\n").unwrap_err();
        assert!(
            err.contains("kind: \"Gadget\" is not an idn resource"),
            "{err}"
        );
        let err = load("apiVersion: idn.dev/v1alpha1\nkind: ModelPlacement\nmetadata: {}\nspec: {network: n, nodes: []}\n").unwrap_err();
        assert!(err.contains("metadata.name: missing"), "{err}");
        let err = load("apiVersion: idn.dev/v1alpha1\nkind: DeliveryStrategy\nmetadata: {name: s}\nspec: {threshold: {}}\n").unwrap_err();
        assert!(err.contains("spec.threshold: missing field `tau`"), "{err}");
    }
}
