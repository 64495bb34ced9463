/* Shared by the benchmark programs that make TCP sockets: failing loudly, and setting
 * and reading an integer socket option. */
#ifndef BENCH_SOCKETS_H
#define BENCH_SOCKETS_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void set(int fd, int level, int name, int value) {
    if (setsockopt(fd, level, name, &value, sizeof value) != 0)
        die("setsockopt");
}

/* The option's value, or -1 when it cannot be read. */
static int get(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    return getsockopt(fd, level, name, &value, &len) == 0 ? value : -1;
}

#endif
