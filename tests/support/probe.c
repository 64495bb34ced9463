/*
 * probe: an ordinary dynamically linked program that creates sockets and reports
 * what the kernel holds for each, for the tests to run with and without the library.
 *
 *   probe [--own-keepalive 0|1] [--own-timings IDLE,INTVL,CNT] [--own-user-timeout MS]
 *         [--own-bad-call] [--start-errno] [--hold] KIND...
 *
 * For each KIND it sets errno to a sentinel, calls socket(), and prints one line:
 *   kind=tcp4 fd=3 errno=4242 keepalive=1 idle=60 intvl=10 cnt=3 user_timeout=0
 * errno is what socket() left (the sentinel when it succeeded and nothing touched
 * errno). An option that cannot be read prints "-". The --own-* options make the
 * probe set options itself after socket(), as redis-cli or curl do, in the order
 * given, before reading. --own-bad-call makes a setsockopt(TCP_KEEPIDLE) call with a
 * length of 0, which the kernel refuses, and reports "bad_call=RESULT/ERRNO".
 * Each --own-* call is reported as own=RESULT/ERRNO (errno set to the sentinel before it).
 * --start-errno first prints "start errno=N", errno as main() found it (C says 0).
 * --hold keeps the sockets open until standard input closes (for inspecting from
 * outside), after printing "ready".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

#define SENTINEL 4242

struct kind {
    const char *name;
    int domain, type, protocol;
};

static const struct kind kinds[] = {
    {"tcp4", AF_INET, SOCK_STREAM, 0},
    {"tcp6", AF_INET6, SOCK_STREAM, 0},
    {"tcp4-proto", AF_INET, SOCK_STREAM, IPPROTO_TCP},
    {"tcp6-proto", AF_INET6, SOCK_STREAM, IPPROTO_TCP},
    {"tcp4-cloexec", AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0},
    {"tcp4-nonblock", AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0},
    {"tcp6-both", AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0},
    {"mptcp4", AF_INET, SOCK_STREAM, IPPROTO_MPTCP},
    {"mptcp6", AF_INET6, SOCK_STREAM, IPPROTO_MPTCP},
    {"udp4", AF_INET, SOCK_DGRAM, 0},
    {"udp6", AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0},
    {"raw4", AF_INET, SOCK_RAW, IPPROTO_TCP},
    {"raw6", AF_INET6, SOCK_RAW, IPPROTO_TCP},
    {"unix-stream", AF_UNIX, SOCK_STREAM, 0},
    {"unix-seqpacket", AF_UNIX, SOCK_SEQPACKET, 0},
    {"unix-dgram", AF_UNIX, SOCK_DGRAM, 0},
    /* Calls that fail: socket() must return -1 with the kernel's errno. */
    {"bad-protocol", AF_INET, SOCK_STREAM, IPPROTO_UDP},
    {"bad-domain", 4321, SOCK_STREAM, 0},
};

/* The program's own setsockopt calls, in command-line order. */
struct own_call {
    int level, name, value;
};
static struct own_call own_calls[16];
static size_t own_count;
static int own_bad_call;

static void add_own(int level, int name, int value)
{
    if (own_count == sizeof own_calls / sizeof own_calls[0]) {
        fprintf(stderr, "probe: too many --own options\n");
        exit(2);
    }
    own_calls[own_count++] = (struct own_call){level, name, value};
}

static void print_option(const char *label, int fd, int level, int name)
{
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, level, name, &value, &len) == 0)
        printf(" %s=%d", label, value);
    else
        printf(" %s=-", label);
}

static void set_own_options(int fd)
{
    /* The program's own calls: their failures are the program's business, but what
     * each returned and left in errno (set to the sentinel first) is reported, as
     * own=RESULT/ERRNO,RESULT/ERRNO,... in call order. */
    for (size_t i = 0; i < own_count; i++) {
        errno = SENTINEL;
        int result = setsockopt(fd, own_calls[i].level, own_calls[i].name, &own_calls[i].value, sizeof(int));
        int saved = errno;
        printf("%s%d/%d", i == 0 ? " own=" : ",", result, saved);
    }
}

static void bad_call(int fd)
{
    int value = 30;
    errno = SENTINEL;
    int result = setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &value, 0);
    printf(" bad_call=%d/%d", result, errno);
}

static void probe(const struct kind *k)
{
    errno = SENTINEL;
    int fd = socket(k->domain, k->type, k->protocol);
    int saved = errno;
    printf("kind=%s fd=%d errno=%d", k->name, fd, saved);
    if (fd >= 0) {
        set_own_options(fd);
        if (own_bad_call)
            bad_call(fd);
        print_option("keepalive", fd, SOL_SOCKET, SO_KEEPALIVE);
        print_option("idle", fd, IPPROTO_TCP, TCP_KEEPIDLE);
        print_option("intvl", fd, IPPROTO_TCP, TCP_KEEPINTVL);
        print_option("cnt", fd, IPPROTO_TCP, TCP_KEEPCNT);
        print_option("user_timeout", fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
    }
    printf("\n");
}

static const struct kind *find_kind(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    fprintf(stderr, "probe: unknown socket kind %s\n", name);
    exit(2);
}

int main(int argc, char **argv)
{
    int start_errno = errno;
    int hold = 0, i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        int idle, intvl, cnt;
        if (strcmp(argv[i], "--own-keepalive") == 0 && i + 1 < argc)
            add_own(SOL_SOCKET, SO_KEEPALIVE, atoi(argv[++i]));
        else if (strcmp(argv[i], "--own-timings") == 0 && i + 1 < argc &&
                 sscanf(argv[++i], "%d,%d,%d", &idle, &intvl, &cnt) == 3) {
            add_own(IPPROTO_TCP, TCP_KEEPIDLE, idle);
            add_own(IPPROTO_TCP, TCP_KEEPINTVL, intvl);
            add_own(IPPROTO_TCP, TCP_KEEPCNT, cnt);
        } else if (strcmp(argv[i], "--own-user-timeout") == 0 && i + 1 < argc)
            add_own(IPPROTO_TCP, TCP_USER_TIMEOUT, atoi(argv[++i]));
        else if (strcmp(argv[i], "--own-bad-call") == 0)
            own_bad_call = 1;
        else if (strcmp(argv[i], "--start-errno") == 0)
            printf("start errno=%d\n", start_errno);
        else if (strcmp(argv[i], "--hold") == 0)
            hold = 1;
        else {
            fprintf(stderr, "probe: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    for (; i < argc; i++)
        probe(find_kind(argv[i]));
    if (hold) {
        printf("ready\n");
        fflush(stdout);
        char buf[64];
        while (read(0, buf, sizeof buf) > 0)
            ;
    }
    return 0;
}
