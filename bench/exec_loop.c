/* Times the start and end of a program, for the benchmark in scripts/bench.sh.
 *
 *   exec_loop COUNT PROGRAM [ARG...]
 *
 * Starts PROGRAM COUNT times, one after the other, with posix_spawn (vfork + exec,
 * so the driver's own size does not enter the measure) and waits for each; prints
 * the median ns per start-and-exit and the mean number of page faults of a child
 * (which does not depend on the load), and fails if any run did not exit 0. Children
 * get this driver's environment: the script puts LD_PRELOAD there with `env`, and
 * the driver itself does nothing the library could interpose.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "timing.h"

extern char **environ;

/* One start and exit of the program, in ns. */
static double run_once(char **argv) {
    pid_t pid;
    int status;
    double start = now_ns();
    int error = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (error != 0) {
        fprintf(stderr, "posix_spawn %s: error %d\n", argv[0], error);
        exit(1);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s did not exit 0 (status %#x)\n", argv[0], status);
        exit(1);
    }
    return now_ns() - start;
}

int main(int argc, char **argv) {
    if (argc < 3 || atoi(argv[1]) < 1) {
        fprintf(stderr, "usage: %s COUNT PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[1]);
    double *times = calloc(count, sizeof *times);
    if (!times)
        return 1;
    run_once(argv + 2); /* warm-up: page cache, loader cache */
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    for (int i = 0; i < count; i++)
        times[i] = run_once(argv + 2);
    getrusage(RUSAGE_CHILDREN, &after);
    double faults = (double)(after.ru_minflt + after.ru_majflt - before.ru_minflt - before.ru_majflt) / count;
    printf("ns=%.0f faults=%.1f\n", median(times, count), faults);
    return 0;
}
