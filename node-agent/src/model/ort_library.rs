//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`, so the library is found at run time: `ORT_DYLIB_PATH`
//! when set, else next to the executable, else in the workspace's `.ort/` folder that
//! `make ort` fills. Users of a fresh clone need not set anything.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// File name of the pinned library (`make ort` fetches exactly this version).
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";

/// Where `make ort` puts the library, relative to the workspace root.
const WORKSPACE_DIR: &str = ".ort";

/// Candidate paths, in order of preference.
fn candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![PathBuf::from(path)];
    }
    let mut paths = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        paths.push(dir.join(LIBRARY_FILE));
        // target/{debug,release}[/deps]/ -> workspace root
        paths.extend(
            dir.ancestors()
                .take(4)
                .map(|d| d.join(WORKSPACE_DIR).join(LIBRARY_FILE)),
        );
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    paths.push(workspace.join(WORKSPACE_DIR).join(LIBRARY_FILE));
    paths
}

/// The library path that will be loaded, or an error saying in one line how to get it.
pub fn locate() -> Result<PathBuf> {
    let candidates = candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::OrtLibrary(format!(
                "ONNX Runtime library not found (looked at {}): run `make ort`, or set ORT_DYLIB_PATH to a {LIBRARY_FILE}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Loads the library and creates the process-wide ONNX Runtime environment, once.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
        OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = locate().map_err(|e| e.to_string())?;
            ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
                .with_name("idn")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| Error::OrtLibrary(e.clone()))
}
