//! Records the git commit the binary is built from, for
//! `eures_sync_build_info{commit}`: `EURES_SYNC_COMMIT` when the builder
//! sets it (a container build has no `.git`), else `git rev-parse`, else
//! "unknown" (a build from a source tarball).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // `sqlx::migrate!` embeds the migration files, and stable Rust cannot
    // tell cargo so: without this a new migration is missing from the next
    // incremental build.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=EURES_SYNC_COMMIT");
    let given = std::env::var("EURES_SYNC_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let commit = given
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=EURES_SYNC_BUILD_COMMIT={commit}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Build again when HEAD moves: HEAD itself (a checkout), the branch it
    // names (a commit) and packed-refs (a gc). A path that does not exist
    // would make cargo run this script on every build, so only existing
    // ones are named; `--git-path` resolves them inside a worktree too.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}
