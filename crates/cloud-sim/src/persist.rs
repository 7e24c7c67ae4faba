//! Saving and loading the emulated region as JSON, atomically (unicni-fsutil), so a
//! crash mid-write never leaves a torn state file.

use crate::error::SimError;
use crate::state::State;
use std::path::Path;

pub fn save(state: &State, path: &Path) -> Result<(), SimError> {
    let text = serde_json::to_string_pretty(state).expect("state serializes");
    unicni_fsutil::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| SimError::Write {
        path: e.path,
        source: e.source,
    })
}

/// `None` when the file does not exist yet (first start).
pub fn load(path: &Path) -> Result<Option<State>, SimError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SimError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let mut st: State = serde_json::from_str(&text).map_err(|e| SimError::Parse {
        path: path.into(),
        reason: format!("not an emulator state file: {e}"),
    })?;
    st.settle_all();
    st.events.clear();
    Ok(Some(st))
}
