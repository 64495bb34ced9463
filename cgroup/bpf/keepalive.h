/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * keepalive.h: the data the two sides of cgroup mode share, written once. The BPF
 * program (keepalive.bpf.c) includes it; the Rust crate's build.rs compiles a small
 * program against it that prints the same numbers as Rust constants (layout.rs in
 * OUT_DIR), so that the settings struct, the option and counter indexes and the
 * sentinels cannot drift apart.
 */
#ifndef KEEPALIVE_H
#define KEEPALIVE_H

#include <linux/types.h>

/* The options, as bits of a mark and as indexes, in the order they are set: the
 * timings before the user timeout that `auto` computes from them. */
enum opt { OPT_KEEPALIVE, OPT_IDLE, OPT_INTVL, OPT_CNT, OPT_USER_TIMEOUT, OPT_COUNT };

/* Values of settings.mode. Off is attached too: in a cgroup nested inside another
 * that has keepalive, it claims the connections and turns keepalive off for them. */
enum mode { MODE_OFF = 0, MODE_ON = 1, MODE_SKIP = 2, MODE_FORCE = 3 };

/* settings.value[OPT_USER_TIMEOUT] for auto: idle + interval * count, in ms. */
#define USER_TIMEOUT_AUTO -2
/* A value that is not configured: the option is left as it is. */
#define UNSET -1

struct settings {
	__u32 mode;
	__s32 value[OPT_COUNT]; /* UNSET, or what to set (seconds, count, ms, 0/1) */
};

/*
 * What `status` shows, per attachment: X(ENUM, "name", "meaning"). Options are
 * counted once per connection and option; an MPTCP connection, and a connect()
 * retried on one socket, count as one connection. The EXISTING_* counters are written
 * by user space (`attach --existing` works from there), the others by the programs.
 */
#define KEEPALIVE_COUNTERS(X)                                                           \
	X(CONNECTIONS, "connections",                                                   \
	  "connections this attachment configured (connects and accepts)")             \
	X(OPTIONS_SET, "options_set", "options it set on them at connect or accept")     \
	X(OPTIONS_FAILED, "options_failed", "options the kernel refused")                \
	X(OWN_KEPT, "own_kept",                                                         \
	  "options the program had set itself before connect, kept (on, skip)")         \
	X(OWN_REWRITTEN, "own_rewritten",                                               \
	  "options the program set itself, replaced by the configured value (force)")   \
	X(OWN_AFTER, "own_after_connect",                                               \
	  "options the program set itself after connect, over ours (on, skip)")         \
	X(TIMEOUT_KEEPALIVE, "timeouts_keepalive",                                      \
	  "connections ended because keepalive probes went unanswered")                 \
	X(TIMEOUT_RETRANSMISSION, "timeouts_retransmission",                            \
	  "connections ended because data stayed unacknowledged (user timeout or "      \
	  "retransmission limit)")                                                      \
	X(TIMEOUT_CONNECT, "timeouts_connect",                                          \
	  "connects that timed out (SYN unanswered)")                                   \
	X(EXISTING_APPLIED, "existing_applied",                                         \
	  "times `attach --existing` applied the settings to connections already open") \
	X(EXISTING_CONNECTIONS, "existing_connections",                                 \
	  "connections already open that it changed")                                   \
	X(EXISTING_OPTIONS, "existing_options", "options it set on them")

enum counter {
#define KEEPALIVE_COUNTER_ENUM(name, text, meaning) name,
	KEEPALIVE_COUNTERS(KEEPALIVE_COUNTER_ENUM)
#undef KEEPALIVE_COUNTER_ENUM
	COUNTER_COUNT
};

/* Whose a connection is, as an attachment knows it. */
enum claim { CLAIM_NONE = 0, CLAIM_MINE = 1, CLAIM_OTHER = 2 };

/*
 * Per socket, for one attachment (its sk_storage map, sock_states): which options the
 * program set itself, which of those were counted after connect, the user timeout
 * `auto` last set, the claim, and whether its end was counted. `attach --existing`
 * writes it from user space for the connections it changed, which the attachment
 * then treats as its own, as if it had configured them at connect.
 */
struct sock_state {
	__u32 own;       /* a bit per enum opt */
	__u32 own_after; /* a bit per enum opt, counted under OWN_AFTER or OWN_REWRITTEN */
	__s32 auto_ms;   /* 0 until set */
	__u16 claim;     /* enum claim */
	__u16 timed_out; /* 1 once counted under a TIMEOUT_* counter */
};

#endif
