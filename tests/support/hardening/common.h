/*
 * Shared by the hardening test programs: reading a TCP socket's options back from
 * the kernel and comparing them with what the test expects, and a loopback peer for
 * a socket that has taken descriptor 2.
 *
 * EXPECT is "KEEPALIVE,IDLE,INTVL,CNT,USER_TIMEOUT" (the probe's order), as the test
 * computed it from the configuration it gave the library.
 */
#ifndef HARDENING_COMMON_H
#define HARDENING_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct expect {
    int values[5];
};

static const int option_levels[5] = {SOL_SOCKET, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP};
static const int option_names[5] = {SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT};

static inline struct expect parse_expect(const char *text)
{
    struct expect e;
    if (!text || sscanf(text, "%d,%d,%d,%d,%d", &e.values[0], &e.values[1], &e.values[2],
                        &e.values[3], &e.values[4]) != 5) {
        fprintf(stderr, "bad EXPECT: %s\n", text ? text : "(unset)");
        exit(2);
    }
    return e;
}

/* 1 when every option of fd holds the expected value; uses only getsockopt, which is
 * async-signal-safe, so that signal handlers can call it. */
static inline int matches(int fd, const struct expect *e)
{
    for (int i = 0; i < 5; i++) {
        int value = -1;
        socklen_t len = sizeof value;
        if (getsockopt(fd, option_levels[i], option_names[i], &value, &len) != 0 || value != e->values[i])
            return 0;
    }
    return 1;
}

/* Connects `client` to a new listener on loopback and returns the accepted peer, or
 * -1; the listener is left in *listener for the caller to close. */
static inline int connect_over_loopback(int client, int *listener)
{
    *listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(*listener, (struct sockaddr *)&addr, len) || listen(*listener, 1) ||
        getsockname(*listener, (struct sockaddr *)&addr, &len) ||
        connect(client, (struct sockaddr *)&addr, len))
        return -1;
    return accept(*listener, NULL, NULL);
}

/* Reads whatever arrives on fd until it has been quiet for 200 ms; returns the number
 * of bytes. */
static inline long drain(int fd)
{
    char buf[4096];
    long total = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 200) > 0) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        total += n;
    }
    return total;
}

#endif
