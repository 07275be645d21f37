//! Shared pieces of the fan-out, memory, reconnection and allocation
//! benchmarks: the loopback side of `benches/e2e.rs` (included by path, so
//! both measure the same bytes against the same server) and `/proc` readings.

#[path = "../../benches/support/loopback.rs"]
mod loopback;

pub use loopback::{
    SERVER_CHUNK, Server, Summary, Workload, arg, chunks_body, client_runtime, llm,
    loopback_client, pin_current_thread, process_cpu_time, receive_events, runtime_name, slices,
    small, sse_response, watchdog, workload_router,
};

/// This process's resident set size in bytes (`VmRSS` in `/proc/self/status`).
pub fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .expect("a VmRSS line in kB")
        * 1024
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Raises the soft open-file limit to `wanted` (and the hard limit too when the
/// process may, as root can). Returns the soft limit in force afterwards.
pub fn raise_nofile(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_max < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return wanted;
            }
        }
        let soft = libc::rlimit {
            rlim_cur: wanted.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}
