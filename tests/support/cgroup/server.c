/*
 * server: a statically linkable TCP server for the cgroup-mode tests, to check what
 * accepted connections get.
 *
 *   server [--before SPEC] [--count N] HOST PORT
 *
 * SPEC (see options.h) is set on the listening socket before listen(), as a server
 * that turns keepalive on for all its connections would. It prints `listening`, then
 * for each of N accepted connections (default 1) the options the kernel holds for it:
 *
 *   accepted keepalive=1 idle=60 intvl=10 cnt=3 user_timeout=4000
 *
 * and keeps them open until its standard input reaches end of file.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "options.h"

int main(int argc, char **argv) {
    const char *before = NULL;
    int count = 1, i = 1, one = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--before") == 0 && i + 1 < argc)
            before = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = atoi(argv[++i]);
        else
            fail("usage", EINVAL);
    }
    if (argc - i != 2)
        fail("usage", EINVAL);
    struct sockaddr_storage at;
    socklen_t len = address(argv[i], argv[i + 1], &at);
    int listener = socket(at.ss_family, SOCK_STREAM, 0);
    if (listener < 0)
        fail("socket", errno);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (before)
        set_options(listener, before);
    if (bind(listener, (struct sockaddr *)&at, len) != 0)
        fail("bind", errno);
    if (listen(listener, 16) != 0)
        fail("listen", errno);
    printf("listening\n");
    fflush(stdout);
    for (int n = 0; n < count; n++) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            fail("accept", errno);
        print_options("accepted", fd);
    }
    char buffer[64];
    while (read(0, buffer, sizeof buffer) > 0)
        ;
    return 0;
}
