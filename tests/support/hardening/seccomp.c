/*
 * seccomp: installs a seccomp filter under which every setsockopt fails with EPERM,
 * then calls socket() with errno set to a sentinel, and prints
 * "fd=F errno=E own_setsockopt=R/E2 keepalive=K": socket() must return a descriptor
 * and leave the sentinel; the program's own setsockopt shows the filter works.
 */
#include "common.h"
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int refuse_setsockopt(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setsockopt, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof code / sizeof code[0], .filter = code};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
}

int main(void)
{
    if (refuse_setsockopt())
        return 3;
    errno = 4242;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int saved = errno;
    int one = 1;
    errno = 0;
    int own = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int own_errno = errno;
    int keepalive = -1;
    socklen_t len = sizeof keepalive;
    getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive, &len);
    printf("fd=%d errno=%d own_setsockopt=%d/%d keepalive=%d\n", fd, saved, own, own_errno, keepalive);
    return 0;
}
