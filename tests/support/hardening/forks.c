/*
 * forks MODE COUNT EXPECT: while a second thread keeps creating sockets (so that a
 * fork can land in the middle of the library's work), the main thread starts COUNT
 * children one after another. MODE fork: the child creates and checks a socket and
 * exits. MODE exec: the child executes this program again as "forks child EXPECT",
 * which loads the library afresh, creates and checks a socket, and exits.
 * Prints "children=N failed=F" (a child fails on a wrong socket, a signal or a
 * non-zero exit).
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct expect expected;
static atomic_int stop;

static int check_one_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 3;
    int ok = matches(fd, &expected);
    close(fd);
    return ok ? 0 : 4;
}

static void *churn(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "child") == 0) {
        expected = parse_expect(argv[2]);
        return check_one_socket();
    }
    if (argc != 4)
        return 2;
    int exec_mode = strcmp(argv[1], "exec") == 0;
    int count = atoi(argv[2]);
    expected = parse_expect(argv[3]);
    pthread_t thread;
    pthread_create(&thread, NULL, churn, NULL);
    int failed = 0;
    for (int i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            if (exec_mode) {
                execl("/proc/self/exe", argv[0], "child", argv[3], (char *)NULL);
                _exit(5);
            }
            _exit(check_one_socket());
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    atomic_store(&stop, 1);
    pthread_join(thread, NULL);
    printf("children=%d failed=%d\n", count, failed);
    return 0;
}
