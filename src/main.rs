//! unicni: one binary for a Kubernetes pod network.
//!
//! With `CNI_COMMAND` in the environment it is a CNI plugin (the container runtime
//! executes it); otherwise it is the command-line tool (install, agent, lab, plan, ...).
//!
//! The C `main` is ours (`no_main`): the standard library's start-up finds the main
//! thread's stack by parsing `/proc/self/maps` and maps a signal stack for stack-overflow
//! reports, about 80 µs of every plugin execution (a tenth of the process's start, measured
//! on a hello-world pair), on the path of every pod start. What of it a plugin and a node
//! agent need is done here: SIGPIPE ignored (a closed pipe or socket is an error to
//! handle, not a death) and the standard descriptors kept open. Left out: the "has
//! overflowed its stack" message (an overflow still stops the process, by SIGSEGV).
// Unit tests of the binary keep the test harness's own `main`.
#![cfg_attr(not(test), no_main)]

mod cli;
mod cmd;
mod factory;
mod logging;

// SAFETY: the symbol is the process entry the C runtime calls once, with argc/argv it
// owns; nothing else defines `main`.
#[allow(unsafe_code)]
#[cfg_attr(not(test), export_name = "main")]
#[cfg_attr(test, allow(dead_code))]
extern "C" fn process_main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    let code = if std::env::var_os("CNI_COMMAND").is_some() {
        cmd::cni::run()
    } else {
        cli::run()
    };
    // The standard library's exit path flushed stdout; ours does (print! leaves a tail).
    let _ = std::io::Write::flush(&mut std::io::stdout());
    status(code)
}

/// What the standard library's start-up did that this binary relies on.
#[allow(unsafe_code)]
fn start_up() {
    // SAFETY: setting a signal's disposition to SIG_IGN passes no pointers.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // A runtime that starts the plugin with a standard descriptor closed would have the
    // next file opened take its number, and results printed into that file.
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the duration of the call.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if polled < 0 {
        return;
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: a constant NUL-terminated path; open returns the lowest free number,
        // which is this closed descriptor (lower ones are open or were just reopened).
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd != p.fd {
            std::process::abort();
        }
    }
}

/// The process status an [`std::process::ExitCode`] stands for (it has no stable accessor).
fn status(code: std::process::ExitCode) -> libc::c_int {
    (0..=u8::MAX)
        .find(|n| std::process::ExitCode::from(*n) == code)
        .map_or(1, libc::c_int::from)
}
