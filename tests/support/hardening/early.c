/*
 * early.so: another preloaded library whose constructor creates TCP sockets, which
 * may run before libkeepalive's own constructor (glibc runs the constructors of
 * preloaded libraries from the last listed to the first).
 *
 * EARLY_THREADS (default 1) threads start on a barrier and each creates EARLY_SOCKETS
 * (default 50) TCP sockets, checking each against EARLY_EXPECT. With EARLY_FD2=1 the
 * constructor first closes descriptor 2, so that its first socket lands there, and
 * connects that socket to a listener of its own to see whether anything arrives on
 * it. Prints "early: constructor" to stderr when it starts (before any socket), and
 * "early: sockets=N mismatches=M leaked=B" to stdout.
 */
#include "common.h"
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static pthread_barrier_t start;
static struct expect expected;
static int per_thread = 50;
static long sockets, mismatches;
static pthread_mutex_t totals = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < per_thread; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            continue;
        int ok = matches(fd, &expected);
        close(fd);
        pthread_mutex_lock(&totals);
        sockets++;
        mismatches += !ok;
        pthread_mutex_unlock(&totals);
    }
    return NULL;
}

static void race(int threads)
{
    pthread_t ids[64];
    if (threads > 64)
        threads = 64;
    pthread_barrier_init(&start, NULL, threads);
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
}

/* The first socket of the process lands on the closed descriptor 2; whatever the
 * library writes to "standard error" would then go to the peer. Returns how many
 * bytes the peer received. */
static long socket_on_fd2(void)
{
    close(2);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client != 2)
        return -1;
    sockets++;
    mismatches += !matches(client, &expected);
    int listener;
    int peer = connect_over_loopback(client, &listener);
    if (peer < 0)
        return -1;
    /* Anything logged from now on, e.g. for the next socket at debug, would arrive. */
    int next = socket(AF_INET, SOCK_STREAM, 0);
    close(next);
    long total = drain(peer);
    close(peer);
    close(listener);
    close(client);
    return total;
}

__attribute__((constructor)) static void early(void)
{
    static const char hello[] = "early: constructor\n";
    expected = parse_expect(getenv("EARLY_EXPECT"));
    const char *fd2 = getenv("EARLY_FD2");
    long leaked = 0;
    if (fd2 && strcmp(fd2, "1") == 0) {
        leaked = socket_on_fd2();
    } else {
        (void)!write(2, hello, sizeof hello - 1);
        const char *threads = getenv("EARLY_THREADS");
        const char *each = getenv("EARLY_SOCKETS");
        if (each)
            per_thread = atoi(each);
        race(threads ? atoi(threads) : 1);
    }
    printf("early: sockets=%ld mismatches=%ld leaked=%ld\n", sockets, mismatches, leaked);
    fflush(stdout);
}
