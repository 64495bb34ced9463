/*
 * detach: what any user who can open a cgroup directory may try, BPF_PROG_DETACH
 * without naming a program, at one hook of the cgroup.
 *
 *   detach CGROUP_DIR ATTACH_TYPE      (3: sock_ops, 22: setsockopt)
 *
 * Prints `errno=N`, 0 when the kernel removed something.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: detach CGROUP_DIR ATTACH_TYPE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        printf("open errno=%d\n", errno);
        return 1;
    }
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = fd;
    attr.attach_type = atoi(argv[2]);
    long result = syscall(SYS_bpf, BPF_PROG_DETACH, &attr, sizeof attr);
    printf("errno=%d\n", result == 0 ? 0 : errno);
    return 0;
}
