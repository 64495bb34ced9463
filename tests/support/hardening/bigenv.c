/*
 * bigenv.so: a preloaded library whose constructor, run before libkeepalive's, puts
 * megabyte values in the environment (execve refuses any single string over 128 KiB,
 * so they cannot come from the parent). KEEPIDLE gets a megabyte of spaces around
 * "60", which is valid; KEEPINTVL a megabyte of digits; KEEPCNT a megabyte of
 * non-UTF-8 bytes; KEEPALIVE_USER_TIMEOUT a megabyte of "1h".
 */
#include <stdlib.h>
#include <string.h>

#define MEGABYTE (1 << 20)

static char *filled(const char *pattern)
{
    size_t step = strlen(pattern);
    char *value = malloc(MEGABYTE + 1);
    for (size_t i = 0; i < MEGABYTE; i++)
        value[i] = pattern[i % step];
    value[MEGABYTE] = 0;
    return value;
}

__attribute__((constructor)) static void big(void)
{
    char *idle = filled(" ");
    memcpy(idle + MEGABYTE / 2, "60", 2);
    setenv("KEEPIDLE", idle, 1);
    setenv("KEEPINTVL", filled("9"), 1);
    setenv("KEEPCNT", filled("\xff\xfe"), 1);
    setenv("KEEPALIVE_USER_TIMEOUT", filled("1h"), 1);
    free(idle);
}
