/* Times whole TCP connections on loopback, for the cgroup-mode rows of
 * scripts/bench.sh: socket(), connect(), close() against a server in another process.
 *
 *   connect_loop serve PORT_FILE                 the server: accepts and closes, until
 *                                                killed; writes its port to PORT_FILE
 *   connect_loop KIND PORT BATCHES BATCH_SIZE    timed: prints the median ns per
 *                                                connection
 *
 * KIND: tcp       socket(AF_INET, SOCK_STREAM, 0), connect(), close()
 *       tcp-own   the same, and the program sets SO_KEEPALIVE, TCP_KEEPIDLE=60,
 *                 TCP_KEEPINTVL=10, TCP_KEEPCNT=3 itself before connect (the floor)
 *
 * The server runs outside whatever is measured (no library, no cgroup), so that only
 * the connecting side's cost differs between variants. Connections end with a reset
 * (SO_LINGER 0): thousands of them in TIME_WAIT would exhaust the ephemeral ports.
 * After timing, one more connection reports what the kernel holds for it
 * ("keepalive=1 idle=60 ..."), so that the script can check the variant did its work.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockets.h"
#include "timing.h"

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

static _Noreturn void serve(const char *port_file) {
    struct sockaddr_in address = loopback(0);
    socklen_t len = sizeof address;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, len) != 0 ||
        listen(listener, 4096) != 0 || getsockname(listener, (struct sockaddr *)&address, &len) != 0)
        die("listen");
    FILE *file = fopen(port_file, "w");
    if (!file)
        die(port_file);
    fprintf(file, "%d\n", ntohs(address.sin_port));
    fclose(file);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd >= 0)
            close(fd);
    }
}

/* One connection, left open for the caller. */
static int connect_once(int own, int port) {
    struct sockaddr_in address = loopback(port);
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    if (own) {
        set(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
        set(fd, IPPROTO_TCP, TCP_KEEPIDLE, 60);
        set(fd, IPPROTO_TCP, TCP_KEEPINTVL, 10);
        set(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0)
        die("connect");
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) != 0)
        die("SO_LINGER");
    return fd;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        serve(argv[2]);
    if (argc != 5 || (strcmp(argv[1], "tcp") != 0 && strcmp(argv[1], "tcp-own") != 0)) {
        fprintf(stderr, "usage: %s serve PORT_FILE | tcp|tcp-own PORT BATCHES BATCH_SIZE\n", argv[0]);
        return 2;
    }
    int own = strcmp(argv[1], "tcp-own") == 0;
    int port = atoi(argv[2]), batches = atoi(argv[3]), size = atoi(argv[4]);
    if (port < 1 || batches < 1 || size < 1) {
        fprintf(stderr, "PORT, BATCHES and BATCH_SIZE must be positive\n");
        return 2;
    }
    double *per_connection = calloc(batches, sizeof *per_connection);
    if (!per_connection)
        die("calloc");
    for (int i = 0; i < size; i++) /* warm-up */
        close(connect_once(own, port));
    for (int b = 0; b < batches; b++) {
        double start = now_ns();
        for (int i = 0; i < size; i++)
            close(connect_once(own, port));
        per_connection[b] = (now_ns() - start) / size;
    }
    int fd = connect_once(own, port);
    printf("ns=%.1f keepalive=%d idle=%d intvl=%d cnt=%d\n", median(per_connection, batches),
           get(fd, SOL_SOCKET, SO_KEEPALIVE), get(fd, IPPROTO_TCP, TCP_KEEPIDLE),
           get(fd, IPPROTO_TCP, TCP_KEEPINTVL), get(fd, IPPROTO_TCP, TCP_KEEPCNT));
    close(fd);
    free(per_connection);
    return 0;
}
