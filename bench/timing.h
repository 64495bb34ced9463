/* Shared by the benchmark programs: a monotonic clock in nanoseconds and the median
 * of a set of samples. */
#ifndef BENCH_TIMING_H
#define BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of samples[0..count); sorts them in place. */
static double median(double *samples, int count) {
    qsort(samples, count, sizeof *samples, by_value);
    return samples[count / 2];
}

#endif
