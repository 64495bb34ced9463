/*
 * probe: an ordinary dynamically linked program that creates sockets and reports
 * what the kernel holds for each, for the tests to run with and without the library.
 *
 *   probe [--own-keepalive 0|1] [--own-timings IDLE,INTVL,CNT] [--own-user-timeout MS]
 *         [--hold] KIND...
 *
 * For each KIND it sets errno to a sentinel, calls socket(), and prints one line:
 *   kind=tcp4 fd=3 errno=4242 keepalive=1 idle=60 intvl=10 cnt=3 user_timeout=0
 * errno is what socket() left (the sentinel when it succeeded and nothing touched
 * errno). An option that cannot be read prints "-". The --own-* options make the
 * probe set options itself after socket(), as redis-cli or curl do, before reading.
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
    {"unix-stream", AF_UNIX, SOCK_STREAM, 0},
    {"unix-seqpacket", AF_UNIX, SOCK_SEQPACKET, 0},
    {"unix-dgram", AF_UNIX, SOCK_DGRAM, 0},
    /* Calls that fail: socket() must return -1 with the kernel's errno. */
    {"bad-protocol", AF_INET, SOCK_STREAM, IPPROTO_UDP},
    {"bad-domain", 4321, SOCK_STREAM, 0},
};

static int own_keepalive = -1, own_idle, own_intvl, own_cnt, own_user_timeout = -1;

static void print_option(const char *label, int fd, int level, int name)
{
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, level, name, &value, &len) == 0)
        printf(" %s=%d", label, value);
    else
        printf(" %s=-", label);
}

static void set_option(int fd, int level, int name, int value)
{
    /* The program's own calls: their failures are the program's business. */
    (void)setsockopt(fd, level, name, &value, sizeof value);
}

static void probe(const struct kind *k)
{
    errno = SENTINEL;
    int fd = socket(k->domain, k->type, k->protocol);
    int saved = errno;
    printf("kind=%s fd=%d errno=%d", k->name, fd, saved);
    if (fd >= 0) {
        if (own_keepalive >= 0)
            set_option(fd, SOL_SOCKET, SO_KEEPALIVE, own_keepalive);
        if (own_idle > 0) {
            set_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, own_idle);
            set_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, own_intvl);
            set_option(fd, IPPROTO_TCP, TCP_KEEPCNT, own_cnt);
        }
        if (own_user_timeout >= 0)
            set_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, own_user_timeout);
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
    int hold = 0, i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--own-keepalive") == 0 && i + 1 < argc)
            own_keepalive = atoi(argv[++i]);
        else if (strcmp(argv[i], "--own-timings") == 0 && i + 1 < argc)
            sscanf(argv[++i], "%d,%d,%d", &own_idle, &own_intvl, &own_cnt);
        else if (strcmp(argv[i], "--own-user-timeout") == 0 && i + 1 < argc)
            own_user_timeout = atoi(argv[++i]);
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
