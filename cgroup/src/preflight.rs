//! What cgroup mode needs from the machine, checked before anything is created, so
//! that a refusal leaves nothing behind and says what is missing.

use crate::Error;

/// The oldest kernel the BPF program is written for: bpf_setsockopt and
/// bpf_getsockopt of the keepalive options from sock_ops and from cgroup/setsockopt
/// (the generic socket-option helpers of Linux 6.1).
pub const MIN_KERNEL: (u32, u32) = (6, 1);
pub const MIN_KERNEL_TEXT: &str = "6.1";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Refuses a kernel older than [`MIN_KERNEL`] or privileges that cannot load and
/// attach the programs.
pub fn check() -> Result<(), Error> {
    let release = kernel_release();
    match parse_release(&release) {
        Some(version) if version >= MIN_KERNEL => {}
        _ => {
            return Err(Error::new(format!(
                "cgroup mode needs Linux {MIN_KERNEL_TEXT} or later, and this kernel is {release}; \
                 preload mode (keepalive without --cgroup) works on it for dynamically linked programs"
            )));
        }
    }
    let caps = effective_capabilities();
    let has = |cap: u32| caps & (1 << cap) != 0;
    // CAP_BPF loads programs, CAP_PERFMON lets them use what the verifier keeps from
    // unprivileged loaders (finding an MPTCP connection from its subflows), and
    // CAP_NET_ADMIN attaches them to a cgroup; CAP_SYS_ADMIN stands for the first two.
    let can_load = (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN);
    if !can_load || !has(CAP_NET_ADMIN) {
        let missing: Vec<&str> = [
            (CAP_BPF, "CAP_BPF"),
            (CAP_PERFMON, "CAP_PERFMON"),
            (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        ]
        .into_iter()
        .filter(|&(cap, _)| {
            let covered = has(cap) || (cap != CAP_NET_ADMIN && has(CAP_SYS_ADMIN));
            !covered
        })
        .map(|(_, name)| name)
        .collect();
        return Err(Error::new(format!(
            "cgroup mode needs root, or the capabilities CAP_BPF, CAP_PERFMON and \
             CAP_NET_ADMIN (missing: {}), to load and attach its BPF programs; run it \
             with sudo, or use preload mode (keepalive without --cgroup)",
            missing.join(", ")
        )));
    }
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// "6.18.44-fc-v782" → (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// CapEff of /proc/self/status, 0 when it cannot be read.
fn effective_capabilities() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_to_major_and_minor() {
        assert_eq!(parse_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_release("6.1"), Some((6, 1)));
        assert_eq!(parse_release("garbage"), None);
        assert!(parse_release("5.19.0").unwrap() < MIN_KERNEL);
    }
}
