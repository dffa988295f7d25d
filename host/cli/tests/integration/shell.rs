//! `backplane completions` (loaded into a real bash and asked to complete)
//! and `backplane man`.

use crate::fixtures::{backplane, stderr_of};

fn stdout(args: &[&str]) -> String {
    let output = backplane().args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr_of(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn bash_completes_subcommands_and_flags_from_the_generated_script() {
    let script = stdout(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("backplane.bash"), script).unwrap();
    // What bash offers after `backplane ru<TAB>` and `backplane run --tr<TAB>`.
    let complete = |words: &str, cword: usize| {
        let shell = format!(
            "source ./backplane.bash\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{words}'\n\
             _backplane backplane \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let output = std::process::Command::new("bash").arg("-c").arg(shell).current_dir(dir.path()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let offered = complete("backplane ru", 1);
    let offered: Vec<&str> = offered.lines().collect();
    assert!(offered.contains(&"run") && offered.contains(&"runs"), "{offered:?}");
    let flags = complete("backplane run --tr", 2);
    assert!(flags.lines().any(|l| l == "--trace") && flags.lines().any(|l| l == "--trace-json"), "{flags}");
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_refused() {
    for (shell, marker) in [
        ("zsh", "#compdef backplane"),
        ("fish", "complete -c backplane"),
        ("elvish", "backplane"),
        ("powershell", "backplane"),
    ] {
        let script = stdout(&["completions", shell]);
        assert!(script.contains(marker) && script.contains("report"), "{shell}: {}", &script[..script.len().min(300)]);
    }
    let output = backplane().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("invalid value 'tcsh'") && stderr.contains("bash, elvish, fish, powershell, zsh"),
        "{stderr}"
    );
}

#[test]
fn the_man_pages_cover_every_command() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH backplane 1"), "{}", &page[..page.len().min(300)]);
    // The main page lists each command's page.
    assert!(page.contains(".SH SUBCOMMANDS") && page.contains("backplane\\-run(1)"), "{page}");
    assert!(page.contains("backplane\\-completions(1)") && page.contains("backplane\\-man(1)"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let output = backplane().args(["man", "--out-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let help = stdout(&["--help"]);
    // Every command `--help` lists has a page (the list ends at the `help` pseudo-command).
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "{help}");
    for command in commands {
        let page = std::fs::read_to_string(dir.path().join(format!("backplane-{command}.1")))
            .unwrap_or_else(|e| panic!("no page for `{command}`: {e}"));
        assert!(page.contains(&format!(".TH backplane-{command} 1")), "{command}");
    }
    let run = std::fs::read_to_string(dir.path().join("backplane-run.1")).unwrap();
    assert!(run.contains("\\-\\-report") && run.contains("\\-\\-metrics\\-addr"), "{run}");
    // A subcommand's page has the global options too, and nested commands get pages of their own.
    assert!(run.contains("\\-\\-plugin\\-dir"), "{run}");
    let stats = std::fs::read_to_string(dir.path().join("backplane-cache-stats.1")).unwrap();
    assert!(stats.contains(".TH backplane-cache-stats 1"), "{stats}");
}
