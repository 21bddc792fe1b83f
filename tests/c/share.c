/* MsaShare as a C caller uses it (include/mlflow_secrets_auth.h): hand the
 * library an environment, make a socket pair, serve one end with the core,
 * fork; the child never calls the library: it speaks the helper protocol on
 * its end and prints each reply line. argv[1]: the environment (JSON object),
 * argv[2]: the target URL. Printed: "share-bad <rc>", "share-pipe <rc>",
 * "share <rc>", then the child's reply lines, then "child-exit <status>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mlflow_secrets_auth.h"

static int send_line(int fd, const char *a, const char *b, const char *c) {
    char buf[65536];
    int n = snprintf(buf, sizeof buf, "%s%s%s\n", a, b, c);
    if (n < 0 || n >= (int)sizeof buf) return -1;
    return write(fd, buf, (size_t)n) == n ? 0 : -1;
}

/* Read one line (the reply) and print it; 0 on success. */
static int show_reply(int fd) {
    char line[65536];
    size_t len = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r <= 0) return -1;
        if (ch == '\n') break;
        if (len + 1 < sizeof line) line[len++] = ch;
    }
    line[len] = '\0';
    printf("reply %s\n", line);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *env = argv[1], *target = argv[2];
    char *set = MsaSetEnv(env);
    MsaFree(set);
    printf("share-bad %d\n", MsaShare(-1));
    int p[2];
    if (pipe(p) != 0) return 2;
    printf("share-pipe %d\n", MsaShare(p[0]));
    close(p[0]);
    close(p[1]);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 2;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        /* The child: never call the library (its Go runtime did not survive the fork). */
        close(sv[0]);
        int fd = sv[1];
        int bad = send_line(fd, "{\"id\":1,\"op\":\"headers\",\"arg\":\"", target, "\"}") ||
                  show_reply(fd) ||
                  send_line(fd, "{\"id\":2,\"op\":\"set_env\",\"env\":{\"MLFLOW_SECRETS_AUTH_ENABLE\":\"vault\"}", "", "}") ||
                  show_reply(fd) ||
                  send_line(fd, "{\"id\":3,\"op\":\"set_env\",\"env\":", env, "}") ||
                  show_reply(fd) ||
                  send_line(fd, "{\"id\":4,\"op\":\"headers\",\"arg\":\"", target, "\"}") ||
                  show_reply(fd);
        _exit(bad ? 3 : 0);
    }
    /* The parent: serve its end after the fork (the child holds no copy of it), close both. */
    printf("share %d\n", MsaShare(sv[0]));
    fflush(stdout);
    close(sv[0]);
    close(sv[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child-exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
