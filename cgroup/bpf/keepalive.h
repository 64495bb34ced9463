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

/*
 * Rules: where an attachment applies, and with which settings. Slot 0 is the
 * attachment's own filters (its scope): a connection outside them falls through to the
 * next keepalive attachment above, as if this one were not there. Slots 1 to MAX_RULES
 * are its rules, in order: the first that matches gives the connection its settings
 * (rules.settings, the table's own already filled in by user space), and a connection
 * that matches none gets `settings`.
 *
 * Each filter is a set of slots, one bit per slot, so that matching costs the same for
 * one rule or a hundred: the peer address and the port are each looked up once in a
 * longest-prefix-match trie whose entries hold the slots of every CIDR (or port range,
 * cut into prefixes) that contains them, and the bits that survive every filter are
 * the candidates; the lowest is the first rule that matches.
 */
#define RULE_SLOTS 128
#define MAX_RULES (RULE_SLOTS - 1)
#define RULE_NAME_SIZE 64
/* Entries per trie: the distinct CIDRs of all slots, and their port prefixes. */
#define MAX_PREFIXES 4096

struct slots {
	__u64 bits[RULE_SLOTS / 64];
};

/* rule_set[0]: which slots take connections whatever their peer or port, and which
 * take each direction. `used` is 0 when the attachment has neither filters nor rules:
 * every connection is its own, with `settings`, and nothing is looked up. */
struct rule_set {
	__u32 used;
	__u32 unused;
	struct slots any_peer;
	struct slots any_port;
	struct slots outbound; /* connections made with connect() */
	struct slots inbound;  /* connections accepted from a listener */
};

/* A key of the `peers` trie: an IPv4 address (IPv4-mapped IPv6 ones included) as
 * family 4 in addr[0..4], an IPv6 one as family 6; prefixlen counts the family's 32
 * bits and then the address's. */
#define PEER_FAMILY_BITS 32
struct peer_key {
	__u32 prefixlen;
	__u32 family;
	__u8 addr[16];
};

/* What a CIDR entry of `peers` holds: the slots it is a peer of, and those it is
 * excluded from, each with the slots of every shorter CIDR that contains it. */
struct peer_slots {
	struct slots peer;
	struct slots excluded;
};

/* A key of the `ports` trie: the port in network byte order; prefixlen up to 16. */
struct port_key {
	__u32 prefixlen;
	__u8 port[2];
	__u8 unused[2];
};

/* rules[slot], for slots 1 to MAX_RULES (slot 0 is unused: its settings are `settings`). */
struct rule {
	struct settings settings;
	char name[RULE_NAME_SIZE]; /* for status; "" when the rule has none */
};

/* Per rule (rule_counters[slot]); slot 0 is unused, as in `rules`. */
enum rule_counter {
	RULE_CONNECTIONS,
	RULE_TIMEOUT_KEEPALIVE,
	RULE_TIMEOUT_RETRANSMISSION,
	RULE_TIMEOUT_CONNECT,
	RULE_COUNTER_COUNT
};

struct rule_counters {
	__u64 n[RULE_COUNTER_COUNT];
};

/* Whose a connection is, as an attachment knows it: not decided yet, its own, another
 * (inner) attachment's, or outside its filters (left to the level above). */
enum claim { CLAIM_NONE = 0, CLAIM_MINE = 1, CLAIM_OTHER = 2, CLAIM_PASSED = 3 };

/*
 * Per socket, for one attachment (its sk_storage map, sock_states): which options the
 * program set itself, which of those were counted after connect, the user timeout
 * `auto` last set, the claim, whether its end was counted, and the rule it matched. `attach --existing`
 * writes it from user space for the connections it changed, which the attachment
 * then treats as its own, as if it had configured them at connect.
 */
struct sock_state {
	__u32 own;       /* a bit per enum opt */
	__u32 own_after; /* a bit per enum opt, counted under OWN_AFTER or OWN_REWRITTEN */
	__s32 auto_ms;   /* 0 until set */
	__u16 claim;     /* enum claim */
	__u8 timed_out;  /* 1 once counted under a TIMEOUT_* counter */
	__u8 slot;       /* the rule that gave its settings; 0: none (the attachment's own) */
};

#endif
