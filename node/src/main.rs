//! `konsilium`: set up and run a node, or run the demo federation.

/// See the workspace's `mimalloc` entry.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use clap::Parser;

/// Errors are printed as one readable chain ("what failed: why"), never as a
/// backtrace: they are addressed to an operator, not a developer.
fn main() -> std::process::ExitCode {
    // Everything the node writes (database, blobs, uploads, sockets) holds
    // or guards patient data: private to the node's user from creation on.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // A view piped into `head` ends quietly when the pipe closes, as any
    // Unix tool does, instead of panicking in `println!`.
    // SAFETY: at the start of main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
