/*
 * execenv [NAME=VALUE...] -- PROGRAM [ARG...]: executes PROGRAM with exactly the
 * given environment, in that order, duplicates included (a Rust Command or a
 * Python dict would merge them). VALUE may hold \xHH escapes for arbitrary bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *unescape(const char *text)
{
    char *out = malloc(strlen(text) + 1), *o = out;
    while (*text) {
        unsigned byte;
        if (text[0] == '\\' && text[1] == 'x' && sscanf(text + 2, "%2x", &byte) == 1) {
            *o++ = (char)byte;
            text += 4;
        } else {
            *o++ = *text++;
        }
    }
    *o = 0;
    return out;
}

int main(int argc, char **argv)
{
    char **env = calloc(argc, sizeof *env);
    int n = 0, i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++)
        env[n++] = unescape(argv[i]);
    if (i + 1 >= argc)
        return 2;
    execve(argv[i + 1], argv + i + 1, env);
    perror("execve");
    return 127;
}
