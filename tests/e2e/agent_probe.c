/* agent-probe: syscalls for the sandbox agent's end-to-end tests and benchmark (static, no libc tricks).
 *
 *   agent-probe mount            mount a tmpfs on /mnt; prints "mount=0" or "mount=-1 errno=N"
 *   agent-probe keyctl           keyctl(KEYCTL_GET_KEYRING_ID, process keyring, create); "keyctl=ID|-1 errno=N"
 *   agent-probe unshare          unshare(CLONE_NEWUSER); "unshare=0|-1 errno=N"
 *   agent-probe hello            prints "hello" (a workload to learn)
 *   agent-probe listener         tries to load its own filter handing keyctl to a listener of its own
 *                                (SECCOMP_FILTER_FLAG_NEW_LISTENER); "listener=FD|-1 errno=N", then keyctl
 *   agent-probe every MS NAME    calls NAME (keyctl|getppid) every MS milliseconds, forever, one line each:
 *                                "NAME=R errno=N"
 *   agent-probe loop N NAME      calls NAME (keyctl|getppid|mkdirat) N times; prints per-call ns:
 *                                "calls=N min=... p50=... p99=... mean=..."  (clock_gettime around each call)
 *   agent-probe supervise N [sync]  the benchmark's anchor, run on the host: a compiled supervisor that only
 *                                answers (RECV, then SEND CONTINUE) a child's N notified getppid calls, the
 *                                pattern of `perf bench sched seccomp-notify`; "us_per_op=..." ("sync":
 *                                with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long call(const char *name) {
    if (strcmp(name, "keyctl") == 0) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -2 /* process */, 1);
    if (strcmp(name, "getppid") == 0) return syscall(SYS_getppid);
    if (strcmp(name, "mkdirat") == 0) return syscall(SYS_mkdirat, -100, "/", 0755); /* EEXIST */
    fprintf(stderr, "unknown call %s\n", name);
    exit(2);
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Load a filter handing syscall `nr` to a listener of this process's own; the listener's fd or -1. */
static long own_listener(long nr) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static int supervise(long n, int sync) {
    long fd = own_listener(SYS_getppid);
    if (fd < 0 || n < 1) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++) syscall(SYS_getppid);
        _exit(0);
    }
    if (sync && ioctl(fd, _IOW('!', 4, __u64), 1UL) != 0) return 3; /* SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP */
    long long a = now_ns();
    for (long i = 0; i < n; i++) {
        struct seccomp_notif req;
        struct seccomp_notif_resp resp;
        memset(&req, 0, sizeof req);
        memset(&resp, 0, sizeof resp);
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) return 4;
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) != 0) return 5;
    }
    long long b = now_ns();
    waitpid(pid, NULL, 0);
    printf("us_per_op=%.3f\n", (b - a) / 1e3 / n);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    const char *what = argv[1];
    if (strcmp(what, "mount") == 0) {
        int r = mount("none", "/mnt", "tmpfs", 0, "size=1m");
        printf("mount=%d errno=%d\n", r, r ? errno : 0);
        return r ? 1 : 0;
    }
    if (strcmp(what, "keyctl") == 0) {
        long r = call("keyctl");
        printf("keyctl=%ld errno=%d\n", r, r < 0 ? errno : 0);
        return r < 0;
    }
    if (strcmp(what, "unshare") == 0) {
        int r = unshare(CLONE_NEWUSER);
        printf("unshare=%d errno=%d\n", r, r ? errno : 0);
        return r ? 1 : 0;
    }
    if (strcmp(what, "listener") == 0) {
        long fd = own_listener(SYS_keyctl);
        printf("listener=%ld errno=%d\n", fd, fd < 0 ? errno : 0);
        long r = call("keyctl");
        printf("keyctl=%ld errno=%d\n", r, r < 0 ? errno : 0);
        return 0;
    }
    if (strcmp(what, "hello") == 0) {
        printf("hello\n");
        return 0;
    }
    if (strcmp(what, "every") == 0 && argc == 4) {
        struct timespec gap = {atoi(argv[2]) / 1000, (atoi(argv[2]) % 1000) * 1000000L};
        for (;;) {
            errno = 0;
            long r = call(argv[3]);
            printf("%s=%ld errno=%d\n", argv[3], r, r < 0 ? errno : 0);
            nanosleep(&gap, NULL);
        }
    }
    if (strcmp(what, "loop") == 0 && argc == 4) {
        long n = atol(argv[2]);
        long long *t = calloc(n, sizeof *t), sum = 0;
        if (!t || n < 1) return 2;
        for (long i = 0; i < n; i++) {
            long long a = now_ns();
            call(argv[3]);
            t[i] = now_ns() - a;
            sum += t[i];
        }
        qsort(t, n, sizeof *t, cmp);
        printf("calls=%ld min=%lld p50=%lld p99=%lld mean=%lld\n", n, t[0], t[n / 2], t[(n * 99) / 100], sum / n);
        return 0;
    }
    if (strcmp(what, "supervise") == 0 && (argc == 3 || argc == 4))
        return supervise(atol(argv[2]), argc == 4 && strcmp(argv[3], "sync") == 0);
    return 2;
}
