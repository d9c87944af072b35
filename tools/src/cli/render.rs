//! `idn render -f <manifests>`: print the objects the operator would create, without a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use kube::ResourceExt;
use serde::Serialize;

use idn_operator::manifests::Manifests;
use idn_operator::plan::Declared;
use idn_operator::render::{self, Settings};

/// Arguments of `idn render`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Manifest files or directories (YAML), as for `kubectl apply -f`.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// Node-agent image, for networks that name none.
    #[arg(long, value_name = "IMAGE")]
    pub agent_image: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let manifests = Manifests::load(&args.files)?;
    if manifests.networks.is_empty() {
        bail!("no InferenceDeliveryNetwork in the manifests: nothing to render");
    }
    let mut settings = Settings::default();
    if let Some(image) = &args.agent_image {
        settings.agent_image = image.clone();
    }
    let mut documents = Vec::new();
    for network in &manifests.networks {
        let scope = manifests.in_namespace(&network.namespace().unwrap_or_default());
        let declared = Declared {
            network,
            models: &scope.models,
            strategies: &scope.strategies,
            placements: &scope.placements,
        };
        let rendered = render::render(&declared, &settings).map_err(|problems| {
            anyhow::anyhow!(
                "InferenceDeliveryNetwork {} is invalid:\n  {}",
                network.name_any(),
                problems.join("\n  ")
            )
        })?;
        push_all(&mut documents, &rendered.config_maps);
        push_all(&mut documents, &rendered.deployments);
        push_all(&mut documents, &rendered.services);
        push_all(&mut documents, &rendered.autoscalers);
        push_all(&mut documents, &rendered.disruption_budgets);
    }
    print!("{}", documents.join("---\n"));
    Ok(ExitCode::SUCCESS)
}

fn push_all<T: Serialize>(documents: &mut Vec<String>, objects: &[T]) {
    documents.extend(
        objects
            .iter()
            .map(|o| serde_norway::to_string(o).expect("objects serialize")),
    );
}
