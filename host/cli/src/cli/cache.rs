//! `backplane cache stats|verify|gc|clear`.

use super::{load_config, print_json, say};
use crate::{Failure, GlobalArgs};
use backplane_cache::maintenance;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
    /// The cache directory (default: `[cache] dir`, else `BACKPLANE_CACHE_DIR`,
    /// else `.backplane/cache` beside `--workflow` or in the current directory).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The workflow whose cache to use.
    #[arg(long, global = true, value_name = "FILE")]
    workflow: Option<PathBuf>,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Entries, segments, blobs and their sizes.
    Stats,
    /// Check every entry's checksum and every blob against its name; exit 1 on a problem.
    Verify,
    /// Merge segments, drop old or excess entries, remove blobs nothing names.
    Gc {
        /// Keep the newest entries that fit in SIZE (e.g. 10GiB).
        #[arg(long, value_name = "SIZE", value_parser = crate::parse_size)]
        max_size: Option<u64>,
        /// Drop entries stored longer ago than DURATION (e.g. 30d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
    },
    /// Remove every entry and blob.
    Clear,
}

fn cache_dir(global: &GlobalArgs, args: &CacheArgs) -> Result<PathBuf, Failure> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    let config = load_config(global)?;
    if let Some(dir) = config.cache.dir {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("BACKPLANE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let base = args.workflow.as_deref().and_then(Path::parent).filter(|p| !p.as_os_str().is_empty());
    Ok(backplane_host::cache::default_dir(base.unwrap_or(Path::new("."))))
}

fn store_failure(e: backplane_cache::StoreError) -> Failure {
    Failure::Environment(format!("error: {e}"))
}

pub fn cache(global: &GlobalArgs, args: CacheArgs) -> Result<(), Failure> {
    if args.json {
        super::reserve_stdout_for_json();
    }
    let dir = cache_dir(global, &args)?;
    if !dir.join("FORMAT").exists() && !dir.join("entries").exists() {
        return Err(Failure::Invalid(format!(
            "error: there is no cache at {}\n  help: runs create it; pass --dir or --workflow to name another",
            dir.display()
        )));
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    match args.command {
        CacheCommand::Stats => {
            let stats = maintenance::stats(&dir).map_err(store_failure)?;
            if args.json {
                return print_json(&serde_json::json!({ "dir": dir, "stats": stats }));
            }
            say!("{}", dir.display());
            say!(
                "  entries:  {} ({} records in {} segments, {:.1} MiB)",
                stats.entries,
                stats.records,
                stats.segments,
                mib(stats.segment_bytes)
            );
            say!("  blobs:    {} ({:.1} MiB)", stats.blobs, mib(stats.blob_bytes));
            if let (Some(oldest), Some(newest)) = (stats.oldest, stats.newest) {
                let at = |s: u64| {
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
                };
                say!("  stored:   {} to {}", at(oldest), at(newest));
            }
            if stats.damaged > 0 {
                say!("  damaged:  {} (run `backplane cache verify`)", stats.damaged);
            }
            Ok(())
        }
        CacheCommand::Verify => {
            let v = maintenance::verify(&dir).map_err(store_failure)?;
            if args.json {
                print_json(&serde_json::json!({ "dir": dir, "ok": v.ok(), "verification": v }))?;
            } else {
                say!("{}: {} entries, {} blobs checked", dir.display(), v.entries, v.blobs_checked);
                for p in &v.problems {
                    say!("  problem: {p}");
                }
                if v.more_problems > 0 {
                    say!("  ... and {} more problems", v.more_problems);
                }
                if v.ok() {
                    say!("  ok: every entry and blob is sound");
                }
            }
            if v.ok() { Ok(()) } else { Err(Failure::Run) }
        }
        CacheCommand::Gc { max_size, older_than } => {
            let c = maintenance::gc(&dir, max_size, older_than).map_err(store_failure)?;
            if args.json {
                return print_json(&serde_json::json!({ "dir": dir, "gc": c }));
            }
            say!(
                "{}: kept {} entries, removed {}; merged {} segments ({} in use left alone); removed {} blobs; freed {:.1} MiB",
                dir.display(),
                c.entries_kept,
                c.entries_removed,
                c.segments_merged,
                c.segments_in_use,
                c.blobs_removed,
                mib(c.bytes_freed)
            );
            Ok(())
        }
        CacheCommand::Clear => {
            let (segments, bytes) = maintenance::clear(&dir).map_err(store_failure)?;
            if args.json {
                return print_json(
                    &serde_json::json!({ "dir": dir, "segments_removed": segments, "bytes_freed": bytes }),
                );
            }
            say!("{}: cleared ({} segments, {:.1} MiB freed)", dir.display(), segments, mib(bytes));
            Ok(())
        }
    }
}
