// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * keepalive.bpf.c: TCP keepalive for every TCP connection of a cgroup's processes.
 *
 * Three programs, two of them attached to the same cgroup by the `keepalive` command:
 *
 *   on_sockops    (sock_ops)          sets the configured options on each TCP socket
 *                                     as it connects, and on each connection a
 *                                     listener accepts;
 *   on_setsockopt (cgroup/setsockopt) notes which of these options the program sets
 *                                     itself, so that its own choice wins (mode on and
 *                                     skip), or rewrites its value (mode force);
 *   on_error      (tp_btf, sock:inet_sk_error_report)
 *                                     counts the connections of this attachment that
 *                                     the kernel ended because the peer stopped
 *                                     answering, by cause.
 *
 * The options are set at TCP_CONNECT_CB, before the SYN leaves: the user timeout then
 * also bounds the connect, and whatever the program sets after connect() comes later
 * and wins, as it would under the preload library. What it set before connect() is
 * known from the marks on_setsockopt leaves in socket storage; a listener's marks are
 * cloned to the sockets it accepts (BPF_F_CLONE), as the kernel copies its options.
 *
 * Nesting. Attachments are BPF_F_ALLOW_MULTI, which no unprivileged process can
 * remove, so when cgroups nest the kernel runs every level's programs, the innermost
 * cgroup's first, all with the same context. The first keepalive program to see a
 * new connection claims it by writing CLAIMED into skops->reply, which the kernel
 * ignores for these two callbacks and clears before each one; the programs of the
 * levels above see the claim and leave the connection alone. Each program remembers,
 * in its own socket storage, whether the connection is its own, so that later
 * setsockopt calls are handled by the level that configured the connection only.
 *
 * Rules. An attachment may be limited to some connections, by peer address, port and
 * direction, and may give some of them settings of their own (keepalive.h). The
 * decision is made once, when the connection is made; one outside the attachment's
 * filters is not claimed, so it falls through to the level above, and is marked as
 * passed, so that this level leaves it alone for good: its later setsockopt calls, and
 * a later MPTCP subflow or connect() of the same socket.
 *
 * User space fills `settings` and the rules before attaching and reads `counters` for `status`; their
 * layout is in keepalive.h.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "keepalive.h" /* settings, options, modes, counters: shared with user space */

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define IPPROTO_MPTCP 262
#define SOL_SOCKET 1
#define SO_KEEPALIVE 9
#define TCP_KEEPIDLE 4
#define TCP_KEEPINTVL 5
#define TCP_KEEPCNT 6
#define TCP_USER_TIMEOUT 18
#define PAGE_SIZE 4096
#define EPIPE 32
#define ECONNABORTED 103
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111

/* skops->reply of a connection a keepalive program has claimed ("kpal"). */
#define CLAIMED 0x6b70616c

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

/* Each counter is 64 bits: clang 14 cannot emit 32-bit atomics for BPF. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/* The rules (keepalive.h): user space fills them before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rule_set);
} rule_set SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RULE_SLOTS);
	__type(key, __u32);
	__type(value, struct rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct peer_key);
	__type(value, struct peer_slots);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, struct slots);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RULE_SLOTS);
	__type(key, __u32);
	__type(value, struct rule_counters);
} rule_counters SEC(".maps");

static __always_inline void count(enum counter which, __u64 n)
{
	__u32 key = which;
	__u64 *slot = bpf_map_lookup_elem(&counters, &key);

	if (slot && n)
		__sync_fetch_and_add(slot, n);
}

/* One counter of a rule; a case per counter, so that each access has a constant
 * offset (see read_settings). Slot 0, no rule, is not counted: `counters` holds the
 * attachment's totals, and an attachment without rules pays nothing here. */
static __always_inline void count_rule(__u32 slot, enum rule_counter which)
{
	struct rule_counters *counters;

	if (!slot)
		return;
	counters = bpf_map_lookup_elem(&rule_counters, &slot);
	if (!counters)
		return;
	switch (which) {
	case RULE_CONNECTIONS: __sync_fetch_and_add(&counters->n[RULE_CONNECTIONS], 1); break;
	case RULE_TIMEOUT_KEEPALIVE:
		__sync_fetch_and_add(&counters->n[RULE_TIMEOUT_KEEPALIVE], 1);
		break;
	case RULE_TIMEOUT_RETRANSMISSION:
		__sync_fetch_and_add(&counters->n[RULE_TIMEOUT_RETRANSMISSION], 1);
		break;
	default: __sync_fetch_and_add(&counters->n[RULE_TIMEOUT_CONNECT], 1); break;
	}
}

/* The settings of `slot` (0: the attachment's own), copied: every later access has a
 * constant offset, which the verifier accepts without CAP_PERFMON (a variable offset
 * into a map value it does not). */
static __always_inline int read_settings(__u32 slot, struct settings *out)
{
	__u32 key = 0;
	struct settings *s;

	if (slot) {
		struct rule *rule = bpf_map_lookup_elem(&rules, &slot);

		s = rule ? &rule->settings : 0;
	} else {
		s = bpf_map_lookup_elem(&settings, &key);
	}
	if (!s)
		return 0;
	*out = *s;
	return 1;
}

/* The index of the lowest bit set in `bits`, which is not 0. */
static __always_inline __u32 lowest_bit(__u64 bits)
{
	__u32 n = 0;

	bits &= -bits;
	if (bits & 0xffffffff00000000ULL) n += 32;
	if (bits & 0xffff0000ffff0000ULL) n += 16;
	if (bits & 0xff00ff00ff00ff00ULL) n += 8;
	if (bits & 0xf0f0f0f0f0f0f0f0ULL) n += 4;
	if (bits & 0xccccccccccccccccULL) n += 2;
	if (bits & 0xaaaaaaaaaaaaaaaaULL) n += 1;
	return n;
}

/*
 * Which slot a new connection falls in: the first rule whose filters it matches, 0
 * when it matches none, or -1 when it is outside the attachment's own filters. The
 * peer is the remote address; the port is the remote one of a connection made with
 * connect() and the local one of an accepted connection.
 */
static __always_inline int slot_of(struct bpf_sock_ops *skops)
{
	__u32 zero = 0;
	struct rule_set *set = bpf_map_lookup_elem(&rule_set, &zero);
	struct peer_key peer = { .prefixlen = PEER_FAMILY_BITS + 128 };
	struct port_key port = { .prefixlen = 16 };
	struct peer_slots *by_peer;
	struct slots *by_port;
	int inbound = skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB;
	__u32 number = inbound ? skops->local_port : bpf_ntohl(skops->remote_port);
	__u64 candidates[2];

	if (!set || !set->used)
		return 0;
	if (skops->family == AF_INET) {
		peer.family = 4;
		__builtin_memcpy(peer.addr, &skops->remote_ip4, 4);
	} else if (skops->remote_ip6[0] == 0 && skops->remote_ip6[1] == 0 &&
		   skops->remote_ip6[2] == bpf_htonl(0xffff)) {
		peer.family = 4; /* IPv4-mapped: the IPv4 CIDRs apply */
		__u32 ip4 = skops->remote_ip6[3];
		__builtin_memcpy(peer.addr, &ip4, 4);
	} else {
		__u32 ip6[4] = { skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
				 skops->remote_ip6[3] };

		peer.family = 6;
		__builtin_memcpy(peer.addr, ip6, 16);
	}
	port.port[0] = number >> 8;
	port.port[1] = number & 0xff;
	by_peer = bpf_map_lookup_elem(&peers, &peer);
	by_port = bpf_map_lookup_elem(&ports, &port);
#pragma clang loop unroll(full)
	for (int w = 0; w < 2; w++) {
		__u64 bits = inbound ? set->inbound.bits[w] : set->outbound.bits[w];

		bits &= set->any_peer.bits[w] | (by_peer ? by_peer->peer.bits[w] : 0);
		bits &= ~(by_peer ? by_peer->excluded.bits[w] : 0);
		bits &= set->any_port.bits[w] | (by_port ? by_port->bits[w] : 0);
		candidates[w] = bits;
	}
	if (!(candidates[0] & 1))
		return -1;
	candidates[0] &= ~1ULL;
	if (candidates[0])
		return lowest_bit(candidates[0]);
	if (candidates[1])
		return 64 + lowest_bit(candidates[1]);
	return 0;
}

static __always_inline __s32 value_of(const struct settings *s, enum opt opt)
{
	switch (opt) {
	case OPT_KEEPALIVE: return s->value[OPT_KEEPALIVE];
	case OPT_IDLE: return s->value[OPT_IDLE];
	case OPT_INTVL: return s->value[OPT_INTVL];
	case OPT_CNT: return s->value[OPT_CNT];
	case OPT_USER_TIMEOUT: return s->value[OPT_USER_TIMEOUT];
	default: return UNSET;
	}
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

/* Whether the kernel accepts `value` for `opt`: a call it would refuse is not the
 * program's own setting, and forcing never turns a failing call into a working one. */
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

/* idle + interval * count in ms, as the library computes `auto`. */
static __always_inline int auto_ms_of(int idle, int intvl, int cnt)
{
	__s64 ms = ((__s64)idle + (__s64)intvl * cnt) * 1000;

	return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* The socket's timings, whoever set them; 0 when they cannot be read. Reading them
 * needs Linux 6.1. `ctx` is the sock_ops context or a struct bpf_sock. */
#define READ_TIMINGS(ctx, idle, intvl, cnt)                                               \
	(!bpf_getsockopt(ctx, IPPROTO_TCP, TCP_KEEPIDLE, &(idle), sizeof(int)) &&        \
	 !bpf_getsockopt(ctx, IPPROTO_TCP, TCP_KEEPINTVL, &(intvl), sizeof(int)) &&      \
	 !bpf_getsockopt(ctx, IPPROTO_TCP, TCP_KEEPCNT, &(cnt), sizeof(int)))

/* The kernel's TCP socket, as far as these fields; their offsets are taken from the
 * running kernel's BTF when the program is loaded (CO-RE). Each timing is 0 until the
 * socket is given one of its own, which then overrides the namespace's sysctl. */
struct tcp_sock {
	__u32 segs_in;   /* segments received; an accepted socket starts at 1 */
	__u32 snd_una;   /* first byte not acknowledged */
	__u32 write_seq; /* one past the last byte the program wrote */
	__u32 keepalive_time;
	__u32 keepalive_intvl;
	__u8 keepalive_probes;
} __attribute__((preserve_access_index));

/* The kernel's socket, as far as on_error reads it (CO-RE, as tcp_sock). */
struct sock_common {
	unsigned char skc_state;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	__u16 sk_type;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

/*
 * The options the program set on a socket where this attachment could not see it: on
 * a listener before the attach (its accepted connections inherit them), or on a
 * socket made before the attach and connected after. SO_KEEPALIVE on, a user timeout,
 * or a timing the socket holds itself can only be the program's (nothing of
 * keepalive's is set on a socket before it claims it). SO_KEEPALIVE set to 0 looks
 * like the default, and cannot be told apart.
 */
static __always_inline __u32 visible_own(struct bpf_sock_ops *skops, struct bpf_sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 own = 0;
	int value = 0;

	if (!bpf_getsockopt(skops, SOL_SOCKET, SO_KEEPALIVE, &value, sizeof(value)) && value)
		own |= 1U << OPT_KEEPALIVE;
	value = 0;
	if (!bpf_getsockopt(skops, IPPROTO_TCP, TCP_USER_TIMEOUT, &value, sizeof(value)) && value)
		own |= 1U << OPT_USER_TIMEOUT;
	if (tp) {
		if (tp->keepalive_time)
			own |= 1U << OPT_IDLE;
		if (tp->keepalive_intvl)
			own |= 1U << OPT_INTVL;
		if (tp->keepalive_probes)
			own |= 1U << OPT_CNT;
	}
	return own;
}

/*
 * MPTCP: a program sets its options on the MPTCP socket, which passes them on to its
 * subflows, and sock_ops sees the subflows, which are TCP sockets of their own. The
 * MPTCP socket's storage holds the program's marks and the claim; bpf_skc_to_mptcp_sock
 * (CAP_PERFMON) finds it from a subflow, and is NULL for a plain TCP socket.
 */
static __always_inline struct sock_state *state_of(struct bpf_sock *sk)
{
	struct mptcp_sock *msk = bpf_skc_to_mptcp_sock(sk);

	if (msk)
		return bpf_sk_storage_get(&sock_states, msk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	return bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
}

static __always_inline void configure(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct settings s;
	struct sock_state *state;
	__u64 set = 0, failed = 0, kept = 0, rewritten = 0;
	int first, slot;

	if (!sk || (skops->family != AF_INET && skops->family != AF_INET6))
		return;
	state = state_of(sk);
	if (!state)
		return;
	if (skops->reply == CLAIMED) {
		/* A keepalive attachment further in has it. */
		state->claim = CLAIM_OTHER;
		return;
	}
	/* Decided once per connection: an MPTCP connection's later subflows, or a
	 * connect() retried on the socket, keep the first decision, whatever their
	 * addresses, so that one connection never changes hands between levels. */
	if (state->claim == CLAIM_PASSED)
		return;
	first = state->claim != CLAIM_MINE;
	slot = first ? slot_of(skops) : state->slot;
	if (slot < 0) {
		/* Outside this attachment's filters: left to the next level. */
		state->claim = CLAIM_PASSED;
		return;
	}
	if (!read_settings(slot, &s))
		return;
	skops->reply = CLAIMED;
	state->claim = CLAIM_MINE;
	state->slot = slot;
	if (first) {
		state->own |= visible_own(skops, sk);
		count(CONNECTIONS, 1);
		count_rule(slot, RULE_CONNECTIONS);
	}
	if (s.mode == MODE_OFF)
		return; /* claimed with nothing set, and counted, as are its timeouts */

	/* In order: the timings before the user timeout that `auto` computes from them. */
#pragma clang loop unroll(full)
	for (int opt = 0; opt < OPT_COUNT; opt++) {
		int value = value_of(&s, opt);
		int own = state->own & (1U << opt);

		if (value == UNSET)
			continue;
		if (own && s.mode != MODE_FORCE) {
			kept += first;
			continue;
		}
		if (opt == OPT_USER_TIMEOUT && value == USER_TIMEOUT_AUTO) {
			int idle = 0, intvl = 0, cnt = 0;

			if (!READ_TIMINGS(skops, idle, intvl, cnt)) {
				failed++;
				continue;
			}
			value = auto_ms_of(idle, intvl, cnt);
		}
		if (bpf_setsockopt(skops, level_of(opt), name_of(opt), &value, sizeof(value))) {
			failed++;
			continue;
		}
		set++;
		if (own && first)
			rewritten++;
		if (opt == OPT_USER_TIMEOUT)
			state->auto_ms = value;
	}
	if (!first)
		return;
	count(OPTIONS_SET, set);
	count(OPTIONS_FAILED, failed);
	count(OWN_KEPT, kept);
	count(OWN_REWRITTEN, rewritten);
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

/* `auto` is idle + interval * count of the socket, whoever set them: when the program
 * changes one of the three (Go does, right after connect), the user timeout follows,
 * as long as it is still the one `auto` set (not one the program set itself). The new
 * value is not in the socket yet. */
static __always_inline void follow_auto(struct bpf_sock *sk, struct sock_state *state,
					enum opt changed, int value)
{
	int idle = 0, intvl = 0, cnt = 0, current = 0;

	if (changed != OPT_IDLE && changed != OPT_INTVL && changed != OPT_CNT)
		return;
	if (!READ_TIMINGS(sk, idle, intvl, cnt) ||
	    bpf_getsockopt(sk, IPPROTO_TCP, TCP_USER_TIMEOUT, &current, sizeof(int))) {
		count(OPTIONS_FAILED, 1);
		return;
	}
	if (current != state->auto_ms)
		return;
	if (changed == OPT_IDLE)
		idle = value;
	else if (changed == OPT_INTVL)
		intvl = value;
	else
		cnt = value;
	int user_timeout = auto_ms_of(idle, intvl, cnt);

	if (bpf_setsockopt(sk, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(int))) {
		count(OPTIONS_FAILED, 1);
		return;
	}
	state->auto_ms = user_timeout;
}

/* Whether the socket is connected or connecting (not new, not listening): one that
 * no keepalive program claimed then was connected before this attachment existed. */
static __always_inline int past_connect(const struct bpf_sock *sk)
{
	return sk->state != BPF_TCP_CLOSE && sk->state != BPF_TCP_LISTEN;
}

/* Counts a program's own call after connect once per option and connection. */
static __always_inline void count_after(struct sock_state *state, enum opt opt, enum counter which)
{
	if (state->own_after & (1U << opt))
		return;
	state->own_after |= 1U << opt;
	count(which, 1);
}

SEC("cgroup/setsockopt")
int on_setsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	enum opt opt = opt_of(ctx->level, ctx->optname);
	int *optval = ctx->optval;
	int optlen = ctx->optlen;
	struct settings s;

	/* Over a page, the kernel hands the program only the first page of the value,
	 * and optlen 0 tells it to use the caller's own buffer instead of that copy.
	 * The first int is all these options read, so it is read from that page. */
	if (ctx->optlen > PAGE_SIZE)
		ctx->optlen = 0;
	if (!sk || opt == OPT_COUNT || optlen < (int)sizeof(int))
		return 1;
	if ((sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_MPTCP) ||
	    sk->type != SOCK_STREAM || (sk->family != AF_INET && sk->family != AF_INET6))
		return 1;
	if ((void *)(optval + 1) > ctx->optval_end || !in_range(opt, *optval))
		return 1;

	struct sock_state *state =
		bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!state)
		return 1;
	if (state->claim == CLAIM_NONE) {
		/* Before connect: noted, for sock_ops to decide at connect. A connection
		 * this attachment never saw made, or left to the next level, is left as
		 * the program makes it. */
		if (!past_connect(sk))
			state->own |= 1U << opt;
		return 1;
	}
	if (state->claim != CLAIM_MINE || !read_settings(state->slot, &s) || s.mode == MODE_OFF)
		return 1;

	__s32 forced = value_of(&s, opt);

	if (s.mode == MODE_FORCE && forced != UNSET) {
		if (forced == USER_TIMEOUT_AUTO)
			forced = state->auto_ms > 0 ? state->auto_ms : UNSET;
		if (forced >= 0) {
			*optval = forced;
			if (optlen > PAGE_SIZE)
				ctx->optlen = sizeof(int); /* use the rewritten copy */
			count_after(state, opt, OWN_REWRITTEN);
		}
	} else if (s.mode != MODE_FORCE) {
		state->own |= 1U << opt;
		if (forced != UNSET)
			count_after(state, opt, OWN_AFTER);
	}
	/* An option the program sets itself, under force one that is not configured,
	 * moves `auto` along, as under the preload library. MPTCP sockets have no user
	 * timeout of their own to follow. */
	if (value_of(&s, OPT_USER_TIMEOUT) == USER_TIMEOUT_AUTO && opt != OPT_USER_TIMEOUT &&
	    sk->protocol == IPPROTO_TCP &&
	    !(s.mode != MODE_FORCE && (state->own & (1U << OPT_USER_TIMEOUT))))
		follow_auto(sk, state, opt, *optval);
	if (opt == OPT_USER_TIMEOUT && s.mode != MODE_FORCE)
		state->auto_ms = -1; /* the program's own from now on */
	return 1;
}

/*
 * Dead connections, by cause. The kernel gives up on a connection whose peer stopped
 * answering in tcp_write_err: sk_err becomes ETIMEDOUT (or the ICMP error it was
 * told of meanwhile, such as EHOSTUNREACH), the connection is closed, and the socket
 * reports the error, which is where this tracepoint fires. It fires only for sockets
 * that report an error, so healthy connections never run this program; it fires for
 * every such socket on the machine, and this attachment counts those it claimed.
 *
 * What else reports an error, and is not counted: a reset (ECONNRESET, EPIPE,
 * ECONNREFUSED), a connection killed through sock_diag (ECONNABORTED), an ICMP error a
 * connect() got at once (the connection is not a timeout, and nothing was received:
 * only ETIMEDOUT counts for a connect), and an ICMP error passed on to a program that
 * asked for them with IP_RECVERR, which leaves the connection open (since Linux 6.10
 * the timeout closes the connection before reporting, so an open one is not ended).
 * A socket the program has already closed is not reported by the kernel, and MPTCP
 * subflows are not counted (see below).
 *
 * The cause: nothing ever received means the SYN went unanswered (an accepted socket
 * counts its peer's SYN); data the program wrote and the peer never acknowledged means
 * retransmission (or its TCP_USER_TIMEOUT) gave up; otherwise the connection was idle
 * and keepalive's probes went unanswered.
 */
static __always_inline int is_reset_or_abort(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ECONNREFUSED || err == ECONNABORTED;
}

SEC("tp_btf/inet_sk_error_report")
int on_error(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	struct tcp_sock *tp;
	struct sock_state *state;
	int err = sk->sk_err;
	enum counter cause;

	if (sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM || !err)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	if (tp->segs_in == 0) {
		if (err != ETIMEDOUT)
			return 0; /* refused or unreachable at once: not a timeout */
		cause = TIMEOUT_CONNECT;
	} else {
		if (err != ETIMEDOUT &&
		    (is_reset_or_abort(err) || sk->__sk_common.skc_state != BPF_TCP_CLOSE))
			return 0;
		cause = tp->write_seq != tp->snd_una ? TIMEOUT_RETRANSMISSION : TIMEOUT_KEEPALIVE;
	}
	/* An MPTCP subflow's state is on its MPTCP socket, which bpf_skc_to_mptcp_sock
	 * cannot reach from a tracepoint: the subflow has none, and is not counted. */
	state = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!state || state->claim != CLAIM_MINE || state->timed_out)
		return 0;
	state->timed_out = 1;
	count(cause, 1);
	count_rule(state->slot, cause == TIMEOUT_KEEPALIVE	    ? RULE_TIMEOUT_KEEPALIVE :
				cause == TIMEOUT_RETRANSMISSION ? RULE_TIMEOUT_RETRANSMISSION :
								  RULE_TIMEOUT_CONNECT);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
