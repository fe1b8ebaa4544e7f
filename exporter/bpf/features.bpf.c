// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * One empty program per attach family, for `pktpath check`: loading and
 * attaching each tells whether this kernel allows that family at all
 * (fentry is refused under lockdown, kprobes need CONFIG_KPROBES).
 * ip_rcv is the target because every IPv4 kernel has it and it is never
 * inlined (it is called through a function pointer).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("fentry/ip_rcv")
int fentry__probe(void *ctx)
{
	return 0;
}

SEC("kprobe/ip_rcv")
int kprobe__probe(void *ctx)
{
	return 0;
}

SEC("tp_btf/kfree_skb")
int tracepoint__probe(void *ctx)
{
	return 0;
}
