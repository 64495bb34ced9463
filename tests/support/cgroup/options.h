/*
 * options.h: what the cgroup-mode test programs share: the options they set and
 * report, a SPEC parser, the report line, and socket addresses from HOST PORT.
 */
#ifndef OPTIONS_H
#define OPTIONS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static inline void fail(const char *step, int error) {
    printf("failed %s errno=%d\n", step, error);
    exit(1);
}

struct option_name {
    const char *name;
    int level, optname;
};

static const struct option_name options[] = {
    {"keepalive", SOL_SOCKET, SO_KEEPALIVE},
    {"idle", IPPROTO_TCP, TCP_KEEPIDLE},
    {"intvl", IPPROTO_TCP, TCP_KEEPINTVL},
    {"cnt", IPPROTO_TCP, TCP_KEEPCNT},
    {"user_timeout", IPPROTO_TCP, TCP_USER_TIMEOUT},
};
#define OPTION_COUNT (sizeof options / sizeof options[0])

/* How set_options passes values: in a zeroed buffer of this many bytes with the int at
 * its start (the client's --optlen; over a page, the kernel hands a cgroup/setsockopt
 * program only the first page), and whether a call the kernel refuses ends the program
 * (`failed setsockopt errno=N`) or is reported (`refused NAME errno=N`) and passed over,
 * as a program that ignores setsockopt's result would (the client's --keep-going). */
static size_t value_length = sizeof(int);
static int keep_going = 0;

/* Sets each name=value of a SPEC on fd, in order. */
static inline void set_options(int fd, const char *spec) {
    char *copy = strdup(spec), *rest = copy, *item;
    while ((item = strsep(&rest, ",")) != NULL) {
        char *value = strchr(item, '=');
        size_t i;
        if (value == NULL)
            fail("spec", EINVAL);
        *value++ = '\0';
        for (i = 0; i < OPTION_COUNT && strcmp(options[i].name, item) != 0; i++)
            ;
        if (i == OPTION_COUNT)
            fail("spec", EINVAL);
        int v = atoi(value);
        size_t size = value_length > sizeof v ? value_length : sizeof v;
        char *buffer = calloc(1, size);
        if (buffer == NULL)
            fail("calloc", ENOMEM);
        memcpy(buffer, &v, sizeof v);
        int result = setsockopt(fd, options[i].level, options[i].optname, buffer,
                                (socklen_t)value_length);
        int error = errno;
        free(buffer);
        if (result != 0 && !keep_going)
            fail("setsockopt", error);
        if (result != 0) {
            printf("refused %s errno=%d\n", options[i].name, error);
            fflush(stdout);
        }
    }
    free(copy);
}

static inline void print_options(const char *event, int fd) {
    printf("%s", event);
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        int v;
        socklen_t len = sizeof v;
        if (getsockopt(fd, options[i].level, options[i].optname, &v, &len) == 0)
            printf(" %s=%d", options[i].name, v);
        else
            printf(" %s=-", options[i].name);
    }
    printf("\n");
    fflush(stdout);
}

/* HOST PORT as a socket address: AF_INET for a dotted quad, AF_INET6 otherwise. */
static inline socklen_t address(const char *host, const char *port, struct sockaddr_storage *out) {
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(atoi(port));
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
        fail("address", EINVAL);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(atoi(port));
    return sizeof *v6;
}

#endif
