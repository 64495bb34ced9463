/*
 * signals SECONDS EXPECT: a timer interrupts the program every 50 us while its main
 * thread creates and closes TCP sockets; the SIGALRM handler creates and checks a
 * socket of its own, so that socket() runs inside socket(). Prints
 * "main=N handler=H mismatches=M errno_changed=E".
 */
#include "common.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct expect expected;
static volatile sig_atomic_t handler_sockets, handler_mismatches;

static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) {
        handler_sockets++;
        handler_mismatches += !matches(fd, &expected);
        close(fd);
    }
    errno = saved;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    double seconds = atof(argv[1]);
    expected = parse_expect(argv[2]);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    sigaction(SIGALRM, &action, NULL);
    struct itimerval timer = {.it_interval = {0, 50}, .it_value = {0, 50}};
    setitimer(ITIMER_REAL, &timer, NULL);

    long made = 0, wrong = 0, errno_changed = 0;
    struct timespec begin, now;
    clock_gettime(CLOCK_MONOTONIC, &begin);
    do {
        errno = 4242;
        int fd = socket(AF_INET6, SOCK_STREAM, 0);
        errno_changed += errno != 4242;
        if (fd >= 0) {
            made++;
            wrong += !matches(fd, &expected);
            close(fd);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - begin.tv_sec) + (now.tv_nsec - begin.tv_nsec) / 1e9 < seconds);

    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("main=%ld handler=%d mismatches=%ld errno_changed=%ld\n", made, (int)handler_sockets,
           wrong + handler_mismatches, errno_changed);
    return 0;
}
