//! Writing a run's workflow outputs where the workflow says.
//!
//! Files are written with [`backplane_atomic_file::write`]: atomically, never
//! through a link or into a special file. One output that cannot be written
//! does not stop the others.

use crate::{plan::Plan, workflow::OutputTarget};
use backplane_plugin_api::Payload;
use std::{io::Write, path::PathBuf};

/// What writing a run's outputs did: the files written and every failure.
#[derive(Debug, Default)]
pub struct WrittenOutputs {
    pub files: Vec<PathBuf>,
    /// One message per output that could not be written.
    pub errors: Vec<String>,
}

/// Writes every produced output. Outputs of a failed run that were produced
/// are still written (results are never lost).
pub fn write_outputs(plan: &Plan, outputs: &[Option<Payload>]) -> WrittenOutputs {
    let mut written = WrittenOutputs::default();
    for (declared, payload) in plan.outputs.iter().zip(outputs) {
        let Some(payload) = payload else { continue };
        match &declared.target {
            OutputTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                if let Err(e) = out.write_all(&payload.data).and_then(|()| out.flush()) {
                    written.errors.push(format!("cannot write output {}: {e}", declared.describe()));
                }
            }
            OutputTarget::File(path) => match backplane_atomic_file::write(path, &payload.data) {
                Ok(()) => written.files.push(path.clone()),
                Err(e) => written.errors.push(format!("cannot write output {}: {e}", declared.describe())),
            },
        }
    }
    written
}
