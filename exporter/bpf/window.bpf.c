// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * window.bpf.o: a sampling window's function hooks as two kprobe.multi links
 * (window_call, window_return) and the kprobe.multi twins they tail-call, one
 * per function hook (hooks.bpf.h).  The same source as pktpath.bpf.o, built
 * without its tracepoint, fentry and kprobe programs: the agent opens this
 * object only where windows attach their function hooks as links
 * (exporter/loader/window_links.py), and shares every map of pktpath.bpf.o
 * with it.
 */
#define PKTPATH_WINDOW_OBJECT
#include "pktpath.bpf.c"
