/*
 * fd2 MODE [PATH]: descriptor 2 stops being standard error, then TCP sockets are
 * created while the library would log (a warning or debug lines are due). Prints
 * "fd2=D leaked=B [same_inode=S]": B is how many bytes reached what now sits at
 * descriptor 2, which must be 0.
 *
 *   socket        descriptor 2 is closed (at start, or here if open), a TCP socket
 *                 takes it, is connected to a local listener; the bytes the
 *                 listener receives are counted
 *   file PATH     descriptor 2 is closed, PATH is created in its place
 *   inode PATH    standard error is PATH.stderr: it is unlinked and closed, and
 *                 PATH is created, which on ext4 usually gets the freed inode number
 *                 back (same_inode=1): the same st_dev/st_ino as the old stderr
 *   reexec PATH   first opens PATH.stderr as descriptor 2 and executes "inode PATH",
 *                 so that the library starts with that file as standard error
 */
#include "common.h"
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void churn_sockets(void)
{
    for (int i = 0; i < 3; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0)
            close(fd);
    }
}

static long socket_in_place(void)
{
    close(2);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client != 2)
        return -1;
    int listener;
    int peer = connect_over_loopback(client, &listener);
    if (peer < 0)
        return -1;
    churn_sockets();
    return drain(peer);
}

static long file_in_place(const char *path)
{
    close(2);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd != 2)
        return -1;
    churn_sockets();
    struct stat st;
    return fstat(2, &st) ? -1 : (long)st.st_size;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "socket") == 0) {
        printf("fd2=2 leaked=%ld\n", socket_in_place());
        return 0;
    }
    if (argc != 3)
        return 2;
    char old[4096];
    snprintf(old, sizeof old, "%s.stderr", argv[2]);
    if (strcmp(argv[1], "file") == 0) {
        printf("fd2=2 leaked=%ld\n", file_in_place(argv[2]));
    } else if (strcmp(argv[1], "reexec") == 0) {
        int fd = open(old, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        if (fd < 0 || dup2(fd, 2) != 2)
            return 3;
        close(fd);
        execl("/proc/self/exe", argv[0], "inode", argv[2], (char *)NULL);
        return 4;
    } else if (strcmp(argv[1], "inode") == 0) {
        struct stat before;
        if (fstat(2, &before) || unlink(old))
            return 3;
        long leaked = file_in_place(argv[2]);
        struct stat after;
        fstat(2, &after);
        printf("fd2=2 leaked=%ld same_inode=%d\n", leaked,
               before.st_dev == after.st_dev && before.st_ino == after.st_ino);
    } else {
        return 2;
    }
    return 0;
}
