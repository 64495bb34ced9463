/* keepalive 0.4.0's BPF program (commit 00ef8b5), kept as it was for the upgrade test in
 * cli/tests/cgroup_hostile.rs: that version attached it with BPF_F_ALLOW_OVERRIDE. */
// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * keepalive.bpf.c: TCP keepalive for every TCP connection of a cgroup's processes.
 *
 * Two programs, attached to the same cgroup by the `keepalive` command:
 *
 *   on_sockops    (sock_ops)         sets the configured options on each TCP socket
 *                                    as it connects, and on each connection a listener
 *                                    accepts;
 *   on_setsockopt (cgroup/setsockopt) notes which of these options the program sets
 *                                    itself, so that its own choice wins (mode on and
 *                                    skip), or rewrites its value (mode force).
 *
 * The options are set at TCP_CONNECT_CB, before the SYN leaves: the user timeout then
 * also bounds the connect, and whatever the program sets after connect() comes later
 * and wins, as it would under the preload library. What it set before connect() is
 * known from the marks on_setsockopt leaves in socket storage; a listener's marks are
 * cloned to the sockets it accepts (BPF_F_CLONE), as the kernel copies its options.
 *
 * User space fills `settings` before attaching and reads `counters` for `status`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_SOCKET 1
#define SO_KEEPALIVE 9
#define TCP_KEEPIDLE 4
#define TCP_KEEPINTVL 5
#define TCP_KEEPCNT 6
#define TCP_USER_TIMEOUT 18
#define PAGE_SIZE 4096

/* The options, as bits of a mark and as indexes. Keep in step with src/settings.rs. */
enum opt { OPT_KEEPALIVE, OPT_IDLE, OPT_INTVL, OPT_CNT, OPT_USER_TIMEOUT, OPT_COUNT };

/* Values of settings.mode. Off is attached too: in a cgroup nested inside another
 * that has keepalive, it turns keepalive off for that inner cgroup. */
enum mode { MODE_OFF = 0, MODE_ON = 1, MODE_SKIP = 2, MODE_FORCE = 3 };

/* settings.value[OPT_USER_TIMEOUT] for auto: idle + interval * count, in ms. */
#define USER_TIMEOUT_AUTO -2
/* A value that is not configured: the option is left as it is. */
#define UNSET -1

struct settings {
	__u32 mode;
	__s32 value[OPT_COUNT]; /* UNSET, or what to set (seconds, count, ms, 0/1) */
};

/* What `status` shows. Each is a 64-bit count: clang 14 cannot emit 32-bit atomics. */
enum counter {
	CONNECTIONS,      /* sockets configured: connects and accepts */
	OPTIONS_SET,      /* options set by us */
	OPTIONS_FAILED,   /* options the kernel refused */
	OWN_KEPT,         /* options left as the program set them itself */
	OWN_REWRITTEN,    /* program's own calls rewritten (force) */
	COUNTER_COUNT
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Per socket: which options the program set itself, and the user timeout `auto`
 * came to at connect, for force to put in place of the program's own. */
struct sock_state {
	__u32 own;      /* a bit per enum opt */
	__s32 auto_ms;  /* 0 until computed */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

static __always_inline void count(enum counter which, __u64 n)
{
	__u32 key = which;
	__u64 *slot = bpf_map_lookup_elem(&counters, &key);

	if (slot && n)
		__sync_fetch_and_add(slot, n);
}

static __always_inline struct settings *current_settings(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&settings, &key);
}

static __always_inline int level_of(enum opt opt)
{
	return opt == OPT_KEEPALIVE ? SOL_SOCKET : IPPROTO_TCP;
}

static __always_inline int name_of(enum opt opt)
{
	switch (opt) {
	case OPT_KEEPALIVE: return SO_KEEPALIVE;
	case OPT_IDLE: return TCP_KEEPIDLE;
	case OPT_INTVL: return TCP_KEEPINTVL;
	case OPT_CNT: return TCP_KEEPCNT;
	default: return TCP_USER_TIMEOUT;
	}
}

/* The option a setsockopt(level, name) call sets, or OPT_COUNT for any other. */
static __always_inline enum opt opt_of(int level, int name)
{
	if (level == SOL_SOCKET)
		return name == SO_KEEPALIVE ? OPT_KEEPALIVE : OPT_COUNT;
	if (level != IPPROTO_TCP)
		return OPT_COUNT;
	switch (name) {
	case TCP_KEEPIDLE: return OPT_IDLE;
	case TCP_KEEPINTVL: return OPT_INTVL;
	case TCP_KEEPCNT: return OPT_CNT;
	case TCP_USER_TIMEOUT: return OPT_USER_TIMEOUT;
	default: return OPT_COUNT;
	}
}

/* idle + interval * count of the socket, in ms, whoever set them; -1 if unknown. */
static __always_inline __s64 auto_user_timeout(struct bpf_sock_ops *skops)
{
	int idle = 0, intvl = 0, cnt = 0;

	/* Reading these needs Linux 6.1; older kernels refuse, and auto is then skipped. */
	if (bpf_getsockopt(skops, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
	    bpf_getsockopt(skops, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
	    bpf_getsockopt(skops, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)))
		return -1;
	__s64 ms = ((__s64)idle + (__s64)intvl * cnt) * 1000;
	return ms > 0x7fffffff ? 0x7fffffff : ms;
}

/* The value to set for `opt` on a new connection, or UNSET to leave it. */
static __always_inline __s64 wanted(struct bpf_sock_ops *skops, const struct settings *s, enum opt opt)
{
	__s64 value = s->value[opt];

	if (opt == OPT_USER_TIMEOUT && value == USER_TIMEOUT_AUTO)
		return auto_user_timeout(skops);
	return value;
}

static __always_inline void configure(struct bpf_sock_ops *skops)
{
	const struct settings *s = current_settings();
	struct sock_state *state;
	__u64 set = 0, failed = 0, kept = 0;
	__u32 own = 0;

	if (!s || s->mode == MODE_OFF || !skops->sk)
		return;
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return;
	/* Created only under force, which keeps the auto value for later rewrites. */
	state = bpf_sk_storage_get(&sock_states, skops->sk, 0,
				   s->mode == MODE_FORCE ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (state)
		own = state->own;

	/* In order: the timings before the user timeout that `auto` computes from them. */
	for (int opt = 0; opt < OPT_COUNT; opt++) {
		if (s->value[opt] == UNSET)
			continue;
		if (s->mode != MODE_FORCE && (own & (1U << opt))) {
			kept++;
			continue;
		}
		__s64 value = wanted(skops, s, opt);
		int v = (int)value;

		if (value < 0 || bpf_setsockopt(skops, level_of(opt), name_of(opt), &v, sizeof(v))) {
			failed++;
			continue;
		}
		set++;
		if (state && opt == OPT_USER_TIMEOUT)
			state->auto_ms = v;
	}
	count(CONNECTIONS, 1);
	count(OPTIONS_SET, set);
	count(OPTIONS_FAILED, failed);
	count(OWN_KEPT, kept);
}

SEC("sockops")
int on_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:         /* connect(), before the SYN */
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: /* accepted, before accept() returns */
		configure(skops);
		break;
	}
	return 1;
}

/* Whether a value is one the kernel accepts for `opt`, so forcing cannot turn a
 * program's failing call into a succeeding one. */
static __always_inline int in_range(enum opt opt, int value)
{
	switch (opt) {
	case OPT_IDLE:
	case OPT_INTVL: return value >= 1 && value <= 32767;
	case OPT_CNT: return value >= 1 && value <= 127;
	case OPT_USER_TIMEOUT: return value >= 0;
	default: return 1;
	}
}

/* `auto` is idle + interval * count of the socket, whoever set them: when the program
 * changes one of the three (Go does, right after connect), the user timeout follows,
 * unless the program set that too. The new value is not in the socket yet. */
static __always_inline void follow_auto(struct bpf_sock *sk, enum opt changed, int value)
{
	int timing[OPT_COUNT] = {};

	if (changed != OPT_IDLE && changed != OPT_INTVL && changed != OPT_CNT)
		return;
	if (bpf_getsockopt(sk, IPPROTO_TCP, TCP_KEEPIDLE, &timing[OPT_IDLE], sizeof(int)) ||
	    bpf_getsockopt(sk, IPPROTO_TCP, TCP_KEEPINTVL, &timing[OPT_INTVL], sizeof(int)) ||
	    bpf_getsockopt(sk, IPPROTO_TCP, TCP_KEEPCNT, &timing[OPT_CNT], sizeof(int))) {
		count(OPTIONS_FAILED, 1);
		return;
	}
	timing[changed] = value;
	__s64 ms = ((__s64)timing[OPT_IDLE] + (__s64)timing[OPT_INTVL] * timing[OPT_CNT]) * 1000;
	int user_timeout = ms > 0x7fffffff ? 0x7fffffff : (int)ms;

	if (bpf_setsockopt(sk, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(int)))
		count(OPTIONS_FAILED, 1);
	else
		count(OPTIONS_SET, 1);
}

SEC("cgroup/setsockopt")
int on_setsockopt(struct bpf_sockopt *ctx)
{
	const struct settings *s = current_settings();
	struct bpf_sock *sk = ctx->sk;
	enum opt opt = opt_of(ctx->level, ctx->optname);
	int *optval = ctx->optval;

	/* Hand back what is not ours untouched; over a page, the kernel's copy is
	 * truncated and optlen 0 tells it to use the program's own buffer. */
	if (ctx->optlen > PAGE_SIZE)
		ctx->optlen = 0;
	if (!s || s->mode == MODE_OFF || !sk || opt == OPT_COUNT || ctx->optlen < (int)sizeof(int))
		return 1;
	if (sk->protocol != IPPROTO_TCP || sk->type != SOCK_STREAM ||
	    (sk->family != AF_INET && sk->family != AF_INET6))
		return 1;
	if ((void *)(optval + 1) > ctx->optval_end)
		return 1;

	if (s->mode == MODE_FORCE) {
		__s32 forced = s->value[opt];

		if (forced == USER_TIMEOUT_AUTO) {
			struct sock_state *state = bpf_sk_storage_get(&sock_states, sk, 0, 0);

			forced = state && state->auto_ms > 0 ? state->auto_ms : UNSET;
		}
		/* Only a call the kernel would accept is rewritten, so that forcing never
		 * turns a program's failing call into a succeeding one. */
		if (forced >= 0 && in_range(opt, *optval)) {
			*optval = forced;
			count(OWN_REWRITTEN, 1);
		}
		return 1;
	}

	struct sock_state *state =
		bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!state)
		return 1;
	state->own |= 1U << opt;
	if (s->value[OPT_USER_TIMEOUT] == USER_TIMEOUT_AUTO &&
	    !(state->own & (1U << OPT_USER_TIMEOUT)) && in_range(opt, *optval))
		follow_auto(sk, opt, *optval);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
