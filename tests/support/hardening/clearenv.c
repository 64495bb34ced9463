/*
 * clearenv MODE: changes the environment before the program's first socket, then
 * prints the socket's options like the probe: "keepalive=K idle=I intvl=N cnt=C
 * user_timeout=U". MODE clear: clearenv(). MODE change: every variable of the
 * library set to another valid value. MODE off: KEEPALIVE=off.
 */
#include "common.h"
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    if (strcmp(argv[1], "clear") == 0) {
        clearenv();
    } else if (strcmp(argv[1], "change") == 0) {
        setenv("KEEPIDLE", "1111", 1);
        setenv("KEEPINTVL", "222", 1);
        setenv("KEEPCNT", "33", 1);
        setenv("KEEPALIVE_USER_TIMEOUT", "4444", 1);
    } else if (strcmp(argv[1], "off") == 0) {
        setenv("KEEPALIVE", "off", 1);
    } else {
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 3;
    const char *labels[5] = {"keepalive", "idle", "intvl", "cnt", "user_timeout"};
    for (int i = 0; i < 5; i++) {
        int value = -1;
        socklen_t len = sizeof value;
        getsockopt(fd, option_levels[i], option_names[i], &value, &len);
        printf("%s%s=%d", i ? " " : "", labels[i], value);
    }
    printf("\n");
    return 0;
}
