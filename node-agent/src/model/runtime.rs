//! The model runtime: loading ONNX models through ONNX Runtime and running a session.
//!
//! A model that cannot be loaded (missing file, wrong sha256, not an ONNX graph, names that do
//! not match the config) is kept, not ready, with the reason, so the agent serves its other
//! models and reports why this one is not ready.

use std::sync::Arc;

use idn_contract::names::sha256_hex;
use ort::session::{Session, builder::GraphOptimizationLevel};
use ort::value::{DynValue, TensorElementType, ValueType};

use super::ort_library;
use super::signature::{Signature, TensorSpec, check_config};
use crate::error::RequestError;
use crate::wire::tensor::{DataType, Tensor, TensorData};
use idn_contract::config::ModelConfig;

/// Whether a model can serve, and what a worker needs to open a session on it.
#[derive(Debug, Clone)]
enum ModelState {
    Ready {
        signature: Signature,
        bytes: Arc<[u8]>,
    },
    Unavailable {
        reason: String,
    },
}

/// A model of this node: its config and what loading it gave.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    state: ModelState,
}

impl Model {
    /// Loads a model; a failure leaves it not ready, with the reason.
    pub fn load(config: ModelConfig) -> Self {
        let state = match load_checked(&config) {
            Ok((signature, bytes)) => ModelState::Ready { signature, bytes },
            Err(reason) => ModelState::Unavailable { reason },
        };
        Model { config, state }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, ModelState::Ready { .. })
    }

    /// The signature of a model that loaded; why it did not otherwise.
    pub fn readiness(&self) -> Result<&Signature, &str> {
        match &self.state {
            ModelState::Ready { signature, .. } => Ok(signature),
            ModelState::Unavailable { reason } => Err(reason),
        }
    }

    /// The signature, or the request error of a model that cannot serve.
    pub(crate) fn ready_signature(&self) -> Result<&Signature, RequestError> {
        self.readiness().map_err(|reason| {
            RequestError::Unavailable(format!("model {:?} is not ready: {reason}", self.name()))
        })
    }

    /// A session of its own on this model; each inference worker holds one per model.
    pub fn open_session(&self) -> Result<ModelSession, RequestError> {
        let ModelState::Ready { signature, bytes } = &self.state else {
            return Err(self.ready_signature().unwrap_err());
        };
        let session = open_session(bytes).map_err(RequestError::Unavailable)?;
        Ok(ModelSession {
            session,
            signature: signature.clone(),
        })
    }

    /// Checks `inputs` against the signature (no batch limit) and runs them once on a session
    /// of their own: for offline use, where no pool is worth starting.
    pub fn infer_once(
        &self,
        inputs: Vec<Tensor>,
        outputs: &[String],
    ) -> Result<Vec<Tensor>, RequestError> {
        self.ready_signature()?
            .check_inputs(self.name(), &inputs, usize::MAX)?;
        self.open_session()?.run(inputs, outputs)
    }
}

/// An ONNX Runtime session on one model, used by one thread at a time.
pub struct ModelSession {
    session: Session,
    signature: Signature,
}

impl ModelSession {
    /// Runs checked inputs and returns the named outputs, in the order asked.
    pub fn run(
        &mut self,
        inputs: Vec<Tensor>,
        outputs: &[String],
    ) -> Result<Vec<Tensor>, RequestError> {
        run(&mut self.session, &self.signature, inputs, outputs)
            .map_err(|e| RequestError::Internal(format!("inference failed: {e}")))
    }
}

fn load_checked(config: &ModelConfig) -> Result<(Signature, Arc<[u8]>), String> {
    let path = config.path.display();
    let bytes = std::fs::read(&config.path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if let Some(expected) = &config.sha256 {
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "sha256 of {path} is {actual}, the config expects {expected}"
            ));
        }
    }
    let session = open_session(&bytes).map_err(|e| format!("cannot load {path}: {e}"))?;
    let signature = Signature {
        inputs: specs(session.inputs().iter().map(|o| (o.name(), o.dtype())))?,
        outputs: specs(session.outputs().iter().map(|o| (o.name(), o.dtype())))?,
    };
    check_config(config, &signature)?;
    Ok((signature, bytes.into()))
}

/// Opens a session, single-threaded, so that the pool's size alone decides how many cores
/// inference uses.
fn open_session(bytes: &[u8]) -> Result<Session, String> {
    let environment = ort_library::environment().map_err(|e| e.to_string())?;
    let open = || -> ort::Result<Session> {
        Session::builder(environment)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_memory(bytes)
    };
    open().map_err(|e| e.to_string())
}

fn specs<'a>(
    outlets: impl Iterator<Item = (&'a str, &'a ValueType)>,
) -> Result<Vec<TensorSpec>, String> {
    outlets
        .map(|(name, dtype)| match dtype {
            ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
                name: name.to_owned(),
                datatype: datatype(*ty).ok_or_else(|| {
                    format!("tensor {name:?} has element type {ty}, which the agent does not serve")
                })?,
                shape: shape.to_vec(),
            }),
            other => Err(format!("{name:?} is a {other}, not a tensor")),
        })
        .collect()
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        _ => return None,
    })
}
/// Runs checked inputs through a session and returns the named outputs, in the order asked.
fn run(
    session: &mut Session,
    signature: &Signature,
    inputs: Vec<Tensor>,
    outputs: &[String],
) -> Result<Vec<Tensor>, String> {
    let values = inputs
        .into_iter()
        .map(|t| Ok((t.name.clone(), to_ort(t)?)))
        .collect::<ort::Result<Vec<(String, DynValue)>>>()
        .map_err(|e| e.to_string())?;
    let results = session.run(values).map_err(|e| e.to_string())?;
    outputs
        .iter()
        .map(|name| {
            let spec = signature
                .output(name)
                .ok_or_else(|| format!("no output {name:?}"))?;
            let value = results
                .get(name)
                .ok_or_else(|| format!("ONNX Runtime returned no {name:?}"))?;
            from_ort(name, spec.datatype, value).map_err(|e| e.to_string())
        })
        .collect()
}

fn to_ort(tensor: Tensor) -> ort::Result<DynValue> {
    let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
    macro_rules! value {
        ($($variant:ident),+) => {
            match tensor.data {
                $(TensorData::$variant(v) => ort::value::Tensor::from_array((shape, v))?.into_dyn()),+
            }
        };
    }
    Ok(value!(Bool, Uint8, Int8, Int32, Int64, Fp32, Fp64))
}

fn from_ort(name: &str, datatype: DataType, value: &DynValue) -> ort::Result<Tensor> {
    macro_rules! extract {
        ($($variant:ident: $elem:ty),+) => {
            match datatype {
                $(DataType::$variant => {
                    let (shape, data) = value.try_extract_tensor::<$elem>()?;
                    (shape.iter().map(|&d| d as usize).collect(), TensorData::$variant(data.to_vec()))
                }),+
            }
        };
    }
    let (shape, data) =
        extract!(Bool: bool, Uint8: u8, Int8: i8, Int32: i32, Int64: i64, Fp32: f32, Fp64: f64);
    Ok(Tensor {
        name: name.to_owned(),
        shape,
        data,
    })
}
