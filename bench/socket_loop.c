/* Times socket()+close() in a tight loop, for the benchmark in scripts/bench.sh.
 *
 *   socket_loop KIND BATCHES BATCH_SIZE   timed: prints the median ns per socket
 *   socket_loop KIND untimed COUNT        for callgrind and strace: only the loop
 *
 * KIND: tcp       socket(AF_INET, SOCK_STREAM, 0) + close()
 *       tcp-own   the same, and the program sets SO_KEEPALIVE, TCP_KEEPIDLE=60,
 *                 TCP_KEEPINTVL=10, TCP_KEEPCNT=3 itself (the floor of any library)
 *       other     a UDP socket and an AF_UNIX stream socket (time per socket)
 *
 * The median of many short batches leaves out the batches in which another process
 * took the CPU. After timing, one more socket of the same kind reports what the
 * kernel says of it ("keepalive=1 idle=60 ..."), so that the script can check that
 * the preloaded library really did its work in the run it timed.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockets.h"
#include "timing.h"

enum kind { TCP, TCP_OWN, OTHER };

static int open_socket(int domain, int type) {
    int fd = socket(domain, type, 0);
    if (fd < 0)
        die("socket");
    return fd;
}

/* One unit of work; returns how many sockets it created. */
static int once(enum kind kind) {
    int fd;
    switch (kind) {
    case TCP:
        close(open_socket(AF_INET, SOCK_STREAM));
        return 1;
    case TCP_OWN:
        fd = open_socket(AF_INET, SOCK_STREAM);
        set(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
        set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
        set(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
        set(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
        close(fd);
        return 1;
    case OTHER:
        close(open_socket(AF_INET, SOCK_DGRAM));
        close(open_socket(AF_UNIX, SOCK_STREAM));
        return 2;
    }
    return 0;
}

static double median_ns_per_socket(enum kind kind, int batches, int size) {
    double *per_socket = calloc(batches, sizeof *per_socket);
    if (!per_socket)
        die("calloc");
    for (int i = 0; i < size; i++) /* warm-up: caches, lazy binding, first use */
        once(kind);
    for (int b = 0; b < batches; b++) {
        int sockets = 0;
        double start = now_ns();
        for (int i = 0; i < size; i++)
            sockets += once(kind);
        per_socket[b] = (now_ns() - start) / sockets;
    }
    double result = median(per_socket, batches);
    free(per_socket);
    return result;
}

/* What the kernel says of a new socket of this kind, created as the loop does. */
static void report_options(enum kind kind) {
    int fd = kind == OTHER ? open_socket(AF_INET, SOCK_DGRAM) : open_socket(AF_INET, SOCK_STREAM);
    if (kind == TCP_OWN) {
        set(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
        set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
        set(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
        set(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
    }
    printf(" keepalive=%d", get(fd, SOL_SOCKET, SO_KEEPALIVE));
    if (kind != OTHER)
        printf(" idle=%d intvl=%d cnt=%d", get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
               get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT));
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s tcp|tcp-own|other BATCHES BATCH_SIZE | untimed COUNT\n", argv[0]);
        return 2;
    }
    enum kind kind;
    if (strcmp(argv[1], "tcp") == 0)
        kind = TCP;
    else if (strcmp(argv[1], "tcp-own") == 0)
        kind = TCP_OWN;
    else if (strcmp(argv[1], "other") == 0)
        kind = OTHER;
    else {
        fprintf(stderr, "unknown kind %s\n", argv[1]);
        return 2;
    }
    if (strcmp(argv[2], "untimed") == 0) {
        for (int i = atoi(argv[3]); i > 0; i--)
            once(kind);
        return 0;
    }
    int batches = atoi(argv[2]), size = atoi(argv[3]);
    if (batches < 1 || size < 1) {
        fprintf(stderr, "BATCHES and BATCH_SIZE must be positive\n");
        return 2;
    }
    printf("ns=%.1f", median_ns_per_socket(kind, batches, size));
    report_options(kind);
    printf("\n");
    return 0;
}
