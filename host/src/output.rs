//! Writing a run's workflow outputs where the workflow says.

use crate::{plan::Plan, workflow::OutputTarget};
use backplane_plugin_api::Payload;
use std::{io::Write, path::Path};

/// Writes `path` atomically: a reader sees the old file or the new one, never half.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Writes every produced output; returns the files written. Outputs of a
/// failed run that were produced are still written (results are never lost).
pub fn write_outputs(plan: &Plan, outputs: &[Option<Payload>]) -> Result<Vec<std::path::PathBuf>, String> {
    let mut written = Vec::new();
    for (declared, payload) in plan.outputs.iter().zip(outputs) {
        let Some(payload) = payload else { continue };
        match &declared.target {
            OutputTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&payload.data)
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot write to stdout: {e}"))?;
            }
            OutputTarget::File(path) => {
                write_atomically(path, &payload.data)
                    .map_err(|e| format!("cannot write output {}: {e}", path.display()))?;
                written.push(path.clone());
            }
        }
    }
    Ok(written)
}
