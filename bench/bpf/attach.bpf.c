// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * An empty reference for bench/attach.py: one kprobe.multi program, which one
 * link attaches to many functions at once (libbpf's
 * bpf_program__attach_kprobe_multi_opts; kernel 5.18+, through fprobe: one
 * ftrace_ops for every function of the link).  The agent's function hooks are
 * one link per function, so each edge registers or unregisters one ftrace_ops
 * per hook; this prices the batched alternative's attach and detach, nothing
 * else (it never runs on a packet the bench cares about).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("kprobe.multi")
int kprobe_multi_empty(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
