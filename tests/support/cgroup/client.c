/*
 * client: a TCP client the preload library cannot reach, for the cgroup-mode tests.
 * The tests build this one file three ways: `gcc -static` (static glibc), `musl-gcc
 * -static` (static musl) and `gcc -DUSE_IO_URING -luring`, where the socket is created
 * and connected by io_uring (IORING_OP_SOCKET, IORING_OP_CONNECT), so the program
 * never calls socket() or connect() at all. Built plainly (`cc`, dynamic), the same
 * program runs under preload mode too, so that the two modes can be compared on it.
 *
 *   client [--before SPEC] [--after SPEC] [--then SPEC] [--optlen N] [--mptcp]
 *          [--keep-going] [--send] [--wait] HOST PORT
 *
 * SPEC is a comma list of the options the program sets itself, in that order:
 * keepalive=0|1, idle=S, intvl=S, cnt=N, user_timeout=MS. --before sets them between
 * socket() and connect() (as curl does), --after right after connect() (as Go and
 * redis-cli do). HOST is an IPv4 or IPv6 literal; an IPv4-mapped one (::ffff:a.b.c.d)
 * gives an AF_INET6 socket. After connecting it prints one line, read back from the
 * kernel with getsockopt ("-" for an option that cannot be read):
 *
 *   connected keepalive=1 idle=60 intvl=10 cnt=3 user_timeout=4000
 *
 * With --then it next waits for a line (or end of file) on standard input, sets that
 * SPEC and prints the options again, on a `then ...` line: a test can change the
 * world in between (attach keepalive to the client's cgroup, say).
 *
 * --optlen N passes each value in a buffer of N bytes, the int at its start (8192: over
 * a page). --mptcp opens an MPTCP socket (IPPROTO_MPTCP) instead of a TCP one; it has
 * no TCP_USER_TIMEOUT, which then reads "-". --keep-going reports a setsockopt the
 * kernel refuses as `refused NAME errno=N` and goes on.
 *
 * With --send it next waits for a line on standard input and sends one byte (into a
 * path the test has cut, for a retransmission timeout). With --wait it then blocks in
 * recv() and prints how that ended: `eof`, `data` or `error errno=N`. A failing step prints `failed STEP errno=N` and exits 1.
 */
#define _GNU_SOURCE
#include <unistd.h>

/* IPPROTO_MPTCP, which older C libraries (and musl) may not name. */
#define PROTOCOL_MPTCP 262

#include "options.h"

#ifdef USE_IO_URING
#include <liburing.h>
#endif

#ifdef USE_IO_URING
/* Submits the one prepared request and returns its result (a value or -errno). */
static int complete(struct io_uring *ring) {
    struct io_uring_cqe *cqe;
    int result = io_uring_submit_and_wait(ring, 1);
    if (result < 0)
        return result;
    if ((result = io_uring_wait_cqe(ring, &cqe)) < 0)
        return result;
    result = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return result;
}

static int open_socket(int family, int protocol) {
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) < 0)
        fail("io_uring_queue_init", ENOSYS);
    io_uring_prep_socket(io_uring_get_sqe(&ring), family, SOCK_STREAM, protocol, 0);
    int fd = complete(&ring);
    io_uring_queue_exit(&ring);
    if (fd < 0)
        fail("IORING_OP_SOCKET", -fd);
    return fd;
}

static void connect_to(int fd, const struct sockaddr_storage *to, socklen_t len) {
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) < 0)
        fail("io_uring_queue_init", ENOSYS);
    io_uring_prep_connect(io_uring_get_sqe(&ring), fd, (const struct sockaddr *)to, len);
    int result = complete(&ring);
    io_uring_queue_exit(&ring);
    if (result < 0)
        fail("IORING_OP_CONNECT", -result);
}
#else
static int open_socket(int family, int protocol) {
    int fd = socket(family, SOCK_STREAM, protocol);
    if (fd < 0)
        fail("socket", errno);
    return fd;
}

static void connect_to(int fd, const struct sockaddr_storage *to, socklen_t len) {
    if (connect(fd, (const struct sockaddr *)to, len) != 0)
        fail("connect", errno);
}
#endif

int main(int argc, char **argv) {
    const char *before = NULL, *after = NULL, *then = NULL;
    int wait = 0, send_byte = 0, protocol = 0, i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(argv[i], "--send") == 0)
            send_byte = 1;
        else if (strcmp(argv[i], "--before") == 0 && i + 1 < argc)
            before = argv[++i];
        else if (strcmp(argv[i], "--after") == 0 && i + 1 < argc)
            after = argv[++i];
        else if (strcmp(argv[i], "--then") == 0 && i + 1 < argc)
            then = argv[++i];
        else if (strcmp(argv[i], "--optlen") == 0 && i + 1 < argc)
            value_length = (size_t)atoi(argv[++i]);
        else if (strcmp(argv[i], "--mptcp") == 0)
            protocol = PROTOCOL_MPTCP;
        else if (strcmp(argv[i], "--keep-going") == 0)
            keep_going = 1;
        else
            fail("usage", EINVAL);
    }
    if (argc - i != 2)
        fail("usage", EINVAL);
    struct sockaddr_storage to;
    socklen_t len = address(argv[i], argv[i + 1], &to);
    int fd = open_socket(to.ss_family, protocol);
    if (before)
        set_options(fd, before);
    connect_to(fd, &to, len);
    if (after)
        set_options(fd, after);
    print_options("connected", fd);
    if (then) {
        char line[64];
        if (fgets(line, sizeof line, stdin) == NULL && ferror(stdin))
            fail("read", errno);
        set_options(fd, then);
        print_options("then", fd);
    }
    if (send_byte) {
        char line[64];
        if (fgets(line, sizeof line, stdin) == NULL && ferror(stdin))
            fail("read", errno);
        if (send(fd, "x", 1, 0) != 1)
            fail("send", errno);
    }
    if (!wait)
        return 0;
    char buffer[256];
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n > 0)
        printf("data\n");
    else if (n == 0)
        printf("eof\n");
    else
        printf("error errno=%d\n", errno);
    return 0;
}
