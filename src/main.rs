use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    bound_malloc_arenas();
    let cli = eures_sync::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(eures_sync::cli::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An error's text may carry what a remote answered.
            let shown = if std::env::var_os("RUST_BACKTRACE").is_some() {
                format!("{e:?}")
            } else {
                format!("{e:#}")
            };
            let lines: Vec<_> = shown.lines().map(eures_sync::printable::text).collect();
            eprintln!("error: {}", lines.join("\n"));
            if e.downcast_ref::<eures_sync::cli::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// glibc gives every thread that allocates concurrently an arena of its own
/// (up to 8 per core) and returns little of them to the system: with tokio's
/// workers and one thread per SQLite connection that costs peak RSS for no
/// speed (BENCHMARKS.md). Two arenas are plenty for a service this size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}
