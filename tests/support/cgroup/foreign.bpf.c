// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * foreign.bpf.c: a sock_ops program that does nothing, standing for another tool's
 * program (systemd's BPFProgram=, Cilium...) in the cgroup-mode tests, which attach it
 * with bpftool beside, before and after keepalive's, and check that keepalive never
 * removes or replaces it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sockops")
int foreign_sockops(struct bpf_sock_ops *skops)
{
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
