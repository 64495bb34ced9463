/*
 * threads THREADS PER_THREAD EXPECT: THREADS threads wait on a barrier, so that the
 * process's first socket() calls race, then each creates and closes PER_THREAD TCP
 * sockets (IPv4 and IPv6 alternately), checking every one against EXPECT.
 * Prints "sockets=N mismatches=M failures=F".
 */
#include "common.h"
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

static pthread_barrier_t start;
static struct expect expected;
static int per_thread;
static long sockets, mismatches, failures;
static pthread_mutex_t totals = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    (void)arg;
    long made = 0, wrong = 0, failed = 0;
    pthread_barrier_wait(&start);
    for (int i = 0; i < per_thread; i++) {
        errno = 4242;
        int fd = socket(i % 2 ? AF_INET6 : AF_INET, SOCK_STREAM | (i % 3 ? SOCK_CLOEXEC : 0), 0);
        if (fd < 0 || errno != 4242) {
            failed++;
            if (fd < 0)
                continue;
        }
        made++;
        wrong += !matches(fd, &expected);
        close(fd);
    }
    pthread_mutex_lock(&totals);
    sockets += made;
    mismatches += wrong;
    failures += failed;
    pthread_mutex_unlock(&totals);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int threads = atoi(argv[1]);
    per_thread = atoi(argv[2]);
    expected = parse_expect(argv[3]);
    pthread_t ids[256];
    if (threads < 1 || threads > 256)
        return 2;
    pthread_barrier_init(&start, NULL, threads);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, worker, NULL) != 0)
            return 3;
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    printf("sockets=%ld mismatches=%ld failures=%ld\n", sockets, mismatches, failures);
    return 0;
}
