/* Records the signals it receives, for the cgroup mode signal tests.
 *
 * signals [FILE [own-group]]: writes to FILE (appending; "-" for standard output),
 * in a process group of its own with own-group; writes
 *   start mask=HEX ignored=HEX pid=N pgid=N   the signal mask and ignored signals it
 *                                             started with, bit N-1 for signal N
 *   ready
 *   got SIG code=C pid=P                      one line per signal delivered, with
 *                                             the siginfo's si_code and si_pid
 * and exits with status 3 on SIGTERM. Signals it started with ignored stay ignored;
 * job-control signals (TSTP, TTIN, TTOU, CONT) keep their default action.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int out = 1;

/* Appends the decimal form of `n` to `p`; async-signal-safe. */
static char *put_int(char *p, long n)
{
    char digits[24];
    int count = 0;
    if (n < 0) {
        *p++ = '-';
        n = -n;
    }
    do {
        digits[count++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    while (count > 0)
        *p++ = digits[--count];
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static void on_signal(int sig, siginfo_t *info, void *context)
{
    (void)context;
    char line[96];
    char *p = put_str(line, "got ");
    p = put_int(p, sig);
    p = put_str(p, " code=");
    p = put_int(p, info->si_code);
    p = put_str(p, " pid=");
    p = put_int(p, info->si_pid);
    *p++ = '\n';
    if (write(out, line, (size_t)(p - line)) < 0) {
        /* nothing to do */
    }
    if (sig == SIGTERM)
        _exit(3);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "own-group") == 0 && setpgid(0, 0) != 0) {
        perror("setpgid");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "-") != 0) {
        out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out < 0) {
            perror(argv[1]);
            return 1;
        }
    }
    sigset_t mask;
    sigprocmask(SIG_SETMASK, NULL, &mask);
    uint64_t blocked = 0, ignored = 0;
    for (int sig = 1; sig <= 64; sig++) {
        struct sigaction old;
        if (sigismember(&mask, sig) == 1)
            blocked |= (uint64_t)1 << (sig - 1);
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            ignored |= (uint64_t)1 << (sig - 1);
    }
    int recorded[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM,
                      SIGTERM, SIGWINCH, SIGPIPE, SIGURG, SIGRTMIN + 2};
    for (size_t i = 0; i < sizeof recorded / sizeof recorded[0]; i++) {
        int sig = recorded[i];
        if (ignored & ((uint64_t)1 << (sig - 1)))
            continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = on_signal;
        action.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&action.sa_mask);
        sigaction(sig, &action, NULL);
    }
    dprintf(out, "start mask=%016llx ignored=%016llx pid=%d pgid=%d\nready\n",
            (unsigned long long)blocked, (unsigned long long)ignored, (int)getpid(),
            (int)getpgrp());

    for (;;)
        pause();
}
