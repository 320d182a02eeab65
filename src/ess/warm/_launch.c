/* The warm launcher in C (ess.warm.fastbin): what ess/warm/launcher.py does, without starting
 * a Python interpreter (about 1 instead of 10 ms of CPU per command).
 *
 * It runs as <socket>.bin/aq_pp or aq_udb (the tool is the name it was started under). It
 * sends argv (argv[0] the regular entry point, as that one would see it), the environment,
 * the working directory and descriptors 0-2 (SCM_RIGHTS) to the warm service named by
 * ESS_WARM_SOCKET (protocol: ess/warm/protocol.py), relays the signals it gets, and exits with
 * the child's status or dies of the child's signal. Whenever the service does not take the
 * command (ESS_WARM=0, no or a long socket path, no answer, a refusal, a closed standard
 * descriptor), it execs the regular entry point (COLD_DIR/<tool>), which decides again, in
 * Python, exactly as before: the C launcher only ever adds a faster way in.
 *
 * Built by ess.warm.fastbin with -DCOLD_DIR="<the interpreter's bin directory>". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef COLD_DIR
#error "build with -DCOLD_DIR=..."
#endif

#define MAX_SOCKET_PATH 100 /* ess.warm.paths.MAX_SOCKET_PATH: longer ones are hashed there */
#define REPLY_WAIT 30       /* seconds: the service answers at once */

extern char **environ;

static char tool[32];
static char cold[PATH_MAX];
static int sock = -1;
static const int RELAYED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define N_RELAYED (int)(sizeof RELAYED / sizeof RELAYED[0])

static void run_cold(char **argv) {
    if (sock >= 0) close(sock);
    argv[0] = cold;
    execv(cold, argv);
    dprintf(2, "%s: cannot run %s: %s\n", tool, cold, strerror(errno));
    _exit(127);
}

/* The next 5-byte reply or signal message: 1 on success, 0 at end of stream, -1 on error. */
static int read_number(char *kind, int32_t *value) {
    unsigned char buf[5];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = read(sock, buf + got, sizeof buf - got);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)n;
    }
    uint32_t be;
    memcpy(&be, buf + 1, 4);
    *kind = (char)buf[0];
    *value = (int32_t)ntohl(be);
    return 1;
}

static int send_all(const char *data, size_t size) {
    while (size) {
        ssize_t n = send(sock, data, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static void relay(int signum) {
    int saved = errno;
    unsigned char msg[5] = {'S'};
    uint32_t be = htonl((uint32_t)signum);
    memcpy(msg + 1, &be, 4);
    (void)!send(sock, msg, sizeof msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    errno = saved;
}

/* The request's payload: tool, cwd, argc, argv, environment, NUL-separated. */
static char *payload(int argc, char **argv, const char *cwd, size_t *size) {
    char count[16];
    snprintf(count, sizeof count, "%d", argc);
    const char *head[] = {tool, cwd, count};
    size_t total = 0;
    for (int i = 0; i < 3; i++) total += strlen(head[i]) + 1;
    total += strlen(cold) + 1;
    for (int i = 1; i < argc; i++) total += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++) total += strlen(*e) + 1;
    char *out = malloc(total), *at = out;
    if (!out) return NULL;
#define PUT(s) do { size_t n_ = strlen(s); memcpy(at, s, n_); at += n_; *at++ = '\0'; } while (0)
    for (int i = 0; i < 3; i++) PUT(head[i]);
    PUT(cold);
    for (int i = 1; i < argc; i++) PUT(argv[i]);
    for (char **e = environ; *e; e++) PUT(*e);
#undef PUT
    *size = total - 1; /* separators only between fields */
    return out;
}

/* Send the command; 1 once the service has started it. */
static int hand_over(int argc, char **argv, const char *path) {
    struct stat st;
    for (int fd = 0; fd < 3; fd++)
        if (fstat(fd, &st) != 0) return 0; /* a closed standard descriptor: the cold path */
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return 0;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return 0;
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) return 0;
    size_t size;
    char *body = payload(argc, argv, cwd, &size);
    if (!body) return 0;
    unsigned char header[8] = {'E', 'S', 'W', '1'};
    uint32_t be = htonl((uint32_t)size);
    memcpy(header + 4, &be, 4);
    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = header, .iov_len = sizeof header};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t sent;
    do sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    int ok = sent >= 0 && send_all((const char *)header + sent, sizeof header - (size_t)sent) == 0 &&
             send_all(body, size) == 0;
    free(body);
    if (!ok) return 0;
    struct timeval wait = {.tv_sec = REPLY_WAIT};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    char kind;
    int32_t value;
    if (read_number(&kind, &value) != 1 || kind != 'R') return 0;
    struct timeval forever = {0};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
    return 1;
}

static void relay_until_exit(void) {
    struct sigaction sa = {.sa_handler = relay}; /* no SA_RESTART: read() sees EINTR */
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_RELAYED; i++) sigaction(RELAYED[i], &sa, NULL);
    char kind;
    int32_t status;
    if (read_number(&kind, &status) != 1 || kind != 'X') {
        /* the service went away mid-command: its children die with it, the input is used */
        dprintf(2, "%s: the warm service stopped while running this command\n", tool);
        _exit(1);
    }
    if (status < 0) { /* died of a signal: die of the same one */
        for (int i = 0; i < N_RELAYED; i++) signal(RELAYED[i], SIG_DFL);
        if (-status != SIGKILL && -status != SIGSTOP) signal(-status, SIG_DFL);
        kill(getpid(), -status);
        _exit(128 - status);
    }
    _exit(status);
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    if (strcmp(name, "aq_pp") != 0 && strcmp(name, "aq_udb") != 0) {
        dprintf(2, "ess warm launcher: started as %s, not as aq_pp or aq_udb\n", argv[0]);
        return 127;
    }
    snprintf(tool, sizeof tool, "%s", name);
    snprintf(cold, sizeof cold, "%s/%s", COLD_DIR, name);
    const char *warm = getenv("ESS_WARM");
    const char *path = getenv("ESS_WARM_SOCKET");
    if ((warm && strcmp(warm, "0") == 0) || !path || !*path || strlen(path) > MAX_SOCKET_PATH)
        run_cold(argv);
    if (!hand_over(argc, argv, path)) run_cold(argv);
    relay_until_exit();
    return 1;
}
