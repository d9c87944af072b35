//! Learned state as data: one service's (exported at `/v2/models/{service}/learned`, seeded
//! by a PUT there) and the node's file of all of them (`learnedStateFile`), read at start and
//! rewritten while serving, so a restart — with the same config or a changed one — resumes
//! where the replica was, for every service whose learner still fits.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::threshold::Learned;
use super::weights::LearnedWeights;

/// What one service learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum ServiceState {
    Threshold(Learned),
    Ensemble(LearnedWeights),
}

/// The state file: each learning service's state, by service name.
pub(crate) type States = BTreeMap<String, ServiceState>;

/// Reads the state file; a file that does not exist yet holds nothing.
pub(crate) fn read(path: &Path) -> Result<States, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("learned state {} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(States::new()),
        Err(e) => Err(format!("cannot read learned state {}: {e}", path.display())),
    }
}

/// Writes the state file whole, through a temporary file, so a crash mid-write leaves the
/// previous state.
pub(crate) fn write(path: &Path, states: &States) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let bytes = serde_json::to_vec(states).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_empty_and_a_written_one_reads_back() {
        let dir = std::env::temp_dir().join(format!("idn-learned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("learned.json");
        assert_eq!(read(&path), Ok(States::new()));
        let mut states = States::new();
        states.insert(
            "vote".into(),
            ServiceState::Ensemble(LearnedWeights {
                members: vec!["a".into()],
                weights: vec![1.0],
                labels: 3,
                mistakes: vec![1],
            }),
        );
        write(&path, &states).unwrap();
        assert_eq!(read(&path), Ok(states));
        std::fs::write(&path, "{").unwrap();
        assert!(
            read(&path)
                .unwrap_err()
                .contains("learned.json is not valid")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
