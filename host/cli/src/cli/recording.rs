//! A run's cache and record: opened before the engine starts, committed and
//! written after it ends.

use super::observers::Observed;
use crate::Failure;
use backplane_host::{
    Host,
    cache::{self, ResultCache, reason::Components},
    config::Config,
    engine::RunOutcome,
    plan::Plan,
    runs::{self, RecordContext, RunRecord},
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

/// `run`'s cache flags.
#[derive(clap::Args, Default)]
pub struct CacheArgs {
    /// Neither read nor write the result cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Run the nodes whose ids match GLOB even when cached (repeatable);
    /// their consumers then hit or miss by content.
    #[arg(long, value_name = "GLOB")]
    pub rerun: Vec<String>,
}

pub struct Recording {
    pub run_id: String,
    started: SystemTime,
    runs_dir: PathBuf,
    workflow_path: String,
    workflow_text: String,
    config: Option<(String, String)>,
    pub cache: Option<Arc<ResultCache>>,
    required: bool,
    salt: String,
    /// Why the run has no cache, when it has none.
    no_cache: String,
    previous: HashMap<String, Components>,
    params: serde_json::Map<String, serde_json::Value>,
    selection: Option<String>,
}

/// What finishing wrote.
pub struct Recorded {
    pub record: RunRecord,
    /// Where it was written (`None`: it could not be).
    pub path: Option<PathBuf>,
    /// Results the cache committed during the run.
    pub stored: usize,
    /// A problem storing results (the run's outputs are unaffected).
    pub cache_error: Option<String>,
}

/// `path` made absolute, for the record; a workflow from stdin is `<stdin>`
/// (no file to tell its runs apart by).
fn absolute(path: &Path) -> String {
    if path.as_os_str() == "-" {
        return backplane_host::workflow::STDIN_NAME.to_owned();
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned()).to_string_lossy().into_owned()
}

impl Recording {
    /// Opens the cache (unless told not to) and writes the record's header.
    pub fn start(
        config: &Config,
        plan: &Plan,
        workflow_path: &Path,
        workflow_text: String,
        args: &CacheArgs,
    ) -> Result<Self, Failure> {
        let started = SystemTime::now();
        let run_id = runs::new_run_id(started);
        let rerun = if args.rerun.is_empty() {
            None
        } else {
            let mut set = globset::GlobSetBuilder::new();
            for pattern in &args.rerun {
                let glob = globset::Glob::new(pattern)
                    .map_err(|e| Failure::Invalid(format!("error: --rerun `{pattern}` is not a glob: {e}")))?;
                set.add(glob);
            }
            Some(set.build().map_err(|e| Failure::Invalid(format!("error: --rerun: {e}")))?)
        };
        let settings = &config.cache;
        let dir = settings
            .dir
            .clone()
            .or_else(|| std::env::var_os("BACKPLANE_CACHE_DIR").filter(|d| !d.is_empty()).map(PathBuf::from))
            .unwrap_or_else(|| cache::default_dir(&plan.working_dir));
        let (cache, no_cache) = if args.no_cache {
            (None, "the run has no cache (--no-cache)".to_owned())
        } else if !settings.enabled {
            (None, "the run has no cache ([cache] enabled = false)".to_owned())
        } else {
            let shared = match &settings.shared {
                Some(shared) => match crate::shared_cache::NatsTier::connect(shared) {
                    Ok(tier) => Some(Arc::new(tier) as Arc<dyn backplane_cache::SharedTier>),
                    Err(e) if settings.required => {
                        return Err(Failure::Environment(format!(
                            "error: the shared result cache cannot be used: {e}\n  help: fix it, or set `[cache] required = false` to run without it"
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(
                            "the shared result cache cannot be used, so this run uses the local one only: {e}"
                        );
                        None
                    }
                },
                None => None,
            };
            match ResultCache::open(&dir, &run_id, &settings.salt, rerun, shared) {
                Ok(cache) => (Some(Arc::new(cache)), String::new()),
                Err(e) if settings.required => {
                    return Err(Failure::Environment(format!(
                        "error: the result cache cannot be used: {e}\n  help: fix it, or set `[cache] required = false` to run without it"
                    )));
                }
                Err(e) => {
                    tracing::warn!("the result cache cannot be used, so this run has none: {e}");
                    (None, format!("the cache could not be used: {e}"))
                }
            }
        };
        let runs_dir = runs::runs_dir(&plan.working_dir);
        let workflow_path = absolute(workflow_path);
        let previous = runs::previous_components(&runs_dir, &workflow_path);
        let config_source = config.source.as_ref().map(|s| (absolute(&s.path), s.text.clone()));
        let recording = Recording {
            run_id,
            started,
            runs_dir,
            workflow_path,
            workflow_text,
            config: config_source,
            cache,
            required: settings.required,
            salt: settings.salt.clone(),
            no_cache,
            previous,
            params: plan.params.iter().map(|p| (p.name.clone(), p.value.clone())).collect(),
            selection: plan.partial.as_ref().map(|p| p.selection.clone()),
        };
        // The header marks the run as started: a killed run leaves it behind.
        if let Err(e) = runs::write(&recording.runs_dir, &runs::started(&recording.context(&[]))) {
            tracing::warn!("cannot write the run record in {}: {e}", recording.runs_dir.display());
        }
        Ok(recording)
    }

    fn context<'a>(&'a self, plugins: &'a [backplane_host::PluginInfo]) -> RecordContext<'a> {
        RecordContext {
            run_id: &self.run_id,
            started: self.started,
            workflow_path: &self.workflow_path,
            workflow_text: &self.workflow_text,
            config: self.config.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            cache_dir: self.cache.as_ref().and_then(|c| c.dir().to_str()),
            salt: &self.salt,
            no_cache: &self.no_cache,
            plugins,
            params: &self.params,
            selection: self.selection.as_deref(),
        }
    }

    /// Commits the cache's writes and writes the whole record (and what
    /// nodes logged, beside it), from the engine's outcome and what the
    /// run's observers saw.
    pub fn finish(
        self,
        host: &Host,
        plan: &Plan,
        outcome: &RunOutcome,
        observed: Observed,
        written: &[PathBuf],
    ) -> Result<Recorded, Failure> {
        let report = self.cache.as_ref().map(|c| c.finish()).unwrap_or_default();
        let cx = self.context(&host.plugins);
        let nodes = runs::node_records(plan, outcome, &observed.timeline, &self.previous, &cx);
        let logs = match runs::logs::write(&self.runs_dir, &self.run_id, plan, &observed.logs) {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!("cannot write what the nodes logged in {}: {e}", self.runs_dir.display());
                None
            }
        };
        let mut record = runs::started(&cx);
        record.end = Some(runs::end(plan, outcome, written, logs, SystemTime::now()));
        record.nodes = nodes;
        let path = match runs::write(&self.runs_dir, &record) {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::warn!("cannot write the run record in {}: {e}", self.runs_dir.display());
                None
            }
        };
        // The record is written either way: the run happened.
        if let Some(e) = &report.error
            && self.required
        {
            return Err(Failure::Environment(format!(
                "error: results could not be stored in the cache: {e}\n  help: `[cache] required = true` makes this an error"
            )));
        }
        Ok(Recorded { record, path, stored: report.committed, cache_error: report.error })
    }
}
