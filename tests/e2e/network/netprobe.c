/* netprobe: one bounded network attempt from inside a container, for the network-policy tests.
 *
 *   netprobe tcp ADDR PORT [TIMEOUT_MS]   connect
 *   netprobe udp ADDR PORT [TIMEOUT_MS]   send "ping", wait for the echo
 *   netprobe dns ADDR PORT [TIMEOUT_MS]   send one DNS query (AAAA probe.sandbox.test), wait for its answer
 *
 * ADDR is an IPv6 or IPv4 literal (no names).  One attempt, no retries; prints one line
 * "KIND ADDR PORT RESULT" where RESULT is ok, refused, timeout, eperm or error:<errno>, and
 * exits 0 only for ok.  Built static by the tests (gcc -static) and copied into the rootfs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int result(const char *kind, const char *addr, const char *port, const char *what) {
    printf("%s %s %s %s\n", kind, addr, port, what);
    fflush(stdout);
    return strcmp(what, "ok") == 0 ? 0 : 1;
}

static const char *errname(int e) {
    static char buf[32];
    if (e == ECONNREFUSED) return "refused";
    if (e == EPERM || e == EACCES) return "eperm";
    if (e == ETIMEDOUT) return "timeout";
    snprintf(buf, sizeof buf, "error:%d", e);
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: netprobe tcp|udp|dns ADDR PORT [TIMEOUT_MS]\n");
        return 2;
    }
    const char *kind = argv[1], *addr = argv[2], *port = argv[3];
    int timeout = argc > 4 ? atoi(argv[4]) : 1000;
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)atoi(port));
        len = sizeof *s6;
    } else if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)atoi(port));
        len = sizeof *s4;
    } else {
        return result(kind, addr, port, "error:address");
    }
    int tcp = strcmp(kind, "tcp") == 0;
    int fd = socket(ss.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return result(kind, addr, port, errname(errno));
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS)
        return result(kind, addr, port, errname(errno));
    struct pollfd p = {.fd = fd, .events = tcp ? POLLOUT : POLLIN};
    unsigned char q[64];
    size_t qlen = 0;
    if (!tcp) {
        if (strcmp(kind, "dns") == 0) {
            static const unsigned char query[] = {
                0x5a, 0x5a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,          /* id, RD, one question */
                5, 'p', 'r', 'o', 'b', 'e', 7, 's', 'a', 'n', 'd', 'b', 'o', 'x', 4, 't', 'e', 's', 't', 0,
                0, 28, 0, 1};                                              /* AAAA, IN */
            memcpy(q, query, sizeof query);
            qlen = sizeof query;
        } else {
            memcpy(q, "ping", 4);
            qlen = 4;
        }
        if (send(fd, q, qlen, 0) < 0) return result(kind, addr, port, errname(errno));
    }
    int n = poll(&p, 1, timeout);
    if (n == 0) return result(kind, addr, port, "timeout");
    if (n < 0) return result(kind, addr, port, errname(errno));
    if (tcp) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        return result(kind, addr, port, err ? errname(err) : "ok");
    }
    unsigned char buf[512];
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got < 0) return result(kind, addr, port, errname(errno));
    if (strcmp(kind, "dns") == 0 && (got < 12 || buf[0] != 0x5a || buf[1] != 0x5a || !(buf[2] & 0x80)))
        return result(kind, addr, port, "error:answer");
    return result(kind, addr, port, "ok");
}
