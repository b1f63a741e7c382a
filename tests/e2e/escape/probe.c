/*
 * probe: try, one by one, the primitives real container escapes use, and report each.
 *
 * Built static (gcc -static -O2) by tests/e2e/escape/conftest.py and copied into a
 * copy of the demo rootfs as /probe and, setuid root, as /bin/suid-probe.
 *
 *   /probe all             every attempt, in order
 *   /probe NAME...         the named attempts
 *   /probe list            the attempt names
 *   /probe --euid          print "EUID <n>" (the setuid-root copy is run this way)
 *   /probe oracle NAME     the oracle suite's check (tests/e2e/oracle): print the credentials, then
 *                          look for a host directory called NAME anywhere in the container's
 *                          filesystem (and at the host paths a leaked descriptor or /proc would
 *                          reach) and for host block devices, and print what it finds
 *   /probe sleep           wait (for `exec` into the container)
 *
 * One line per attempt on stdout:
 *
 *   ATTEMPT name=<name> result=<blocked|succeeded|error> errno=<NAME> detail=<k=v ...>
 *
 * `errno` is the errno name (strerrorname_np) of the call that stopped the attempt,
 * NONE when nothing failed, or a signal name (SIGKILL) when a signal stopped it (the
 * memory balloon's OOM kill).  `detail` is the rest of the line: `call=<syscall>` names
 * the call that failed or succeeded; other keys carry measurements.  `error` means the
 * probe itself could not run the attempt (it never counts as blocked).  Also printed:
 *
 *   INFO name=<name> ...   facts that are not attempts (loopback state)
 *
 * Safety: every attempt is run in its own forked child (own process group) with a
 * time limit, so one that succeeds (a new namespace, a ptrace stop) does not change the
 * next.  Nothing here may harm the host even where the attempt succeeds:
 *   - reboot uses a wrong magic number: the capability check comes first in the kernel,
 *     so EPERM means "blocked" and EINVAL means "the check passed" without any effect;
 *   - kexec_load passes no segments and an undefined flag bit (EINVAL after the check);
 *   - init_module/finit_module pass a non-module image (ENOEXEC/EINVAL after the check);
 *   - swapon names a file that does not exist (ENOENT after the check);
 *   - /proc/sysrq-trigger, core_pattern and /sys files are only opened, never written;
 *   - the block device node is only opened read-only and removed;
 *   - the fork bomb stops at 5000 children and kills them all; the memory balloon stops
 *     at 2 GiB; filling /tmp stops at 256 MiB and removes its file;
 *   - network: connect() is only tried when the namespace has no IPv4 route at all, so
 *     it cannot send a packet; a non-blocking connect is closed at once.
 * The probe refuses to run unless it is pid 1 (the init of its own pid namespace),
 * so it is not run on a host by mistake; `oracle` (read-only) and `sleep` run anywhere.
 *
 * Oracle output, one line each:
 *   ORACLE exposed=<path> content=<hex of the first bytes of <path>/canary, or "unreadable"> (a directory
 *                         called NAME, or one holding a file called canary)
 *   ORACLE blockdev=<path> major=<n> minor=<n> readable=<0|1>
 *   ORACLE walked=<entries> truncated=<0|1>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/kexec.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/userfaultfd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define FORK_MAX 5000
#define BALLOON_MAX_MIB 2048
#define BALLOON_STEP_MIB 16
#define FILL_MAX (256L * MIB)
#define ATTEMPT_TIMEOUT 30

static const char *current; /* name of the attempt being run (in the child) */

/* -- output: one write(2) per line, so lines from children never interleave ---------- */

static void out(const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(1, buf, n);
    (void)w;
}

static const char *signame(int sig) {
    static char buf[32];
    const char *a = sigabbrev_np(sig);
    if (a)
        snprintf(buf, sizeof buf, "SIG%s", a);
    else
        snprintf(buf, sizeof buf, "SIG%d", sig);
    return buf;
}

static const char *ename(int e) {
    if (e == 0)
        return "NONE";
    const char *s = strerrorname_np(e);
    return s ? s : "UNKNOWN";
}

static void report(const char *result, int err, const char *fmt, ...) {
    char detail[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    out("ATTEMPT name=%s result=%s errno=%s detail=%s", current, result, ename(err), detail);
}

/* Report a single call: `rc < 0` (with errno) is blocked, anything else succeeded. */
static void report_call(const char *call, long rc, int err) {
    if (rc < 0)
        report("blocked", err, "call=%s", call);
    else
        report("succeeded", 0, "call=%s rc=%ld", call, rc);
}

/*
 * Report a call whose success would be harmful, made with arguments the kernel rejects
 * only AFTER its privilege check: an errno in `priv` means the privilege check (or the
 * syscall's absence) stopped it; any other errno means the check passed.
 */
static void report_checked(const char *call, long rc, int err, const int *priv) {
    if (rc >= 0) {
        report("succeeded", 0, "call=%s rc=%ld", call, rc);
        return;
    }
    for (; *priv; priv++)
        if (err == *priv) {
            report("blocked", err, "call=%s%s", call, err == ENOSYS ? " note=syscall_unavailable" : "");
            return;
        }
    report("succeeded", err, "call=%s note=privilege_check_passed_harmless_args_rejected", call);
}

static const int PRIV_ERRNOS[] = {EPERM, EACCES, ENOSYS, 0};

/* -- helpers ---------------------------------------------------------------------------- */

/* A private scratch directory: /tmp, else /dev/shm (when the root is read-only and /tmp with it). */
static char scratch[256];

static int make_scratch(void) {
    const char *bases[] = {"/tmp", "/dev/shm", NULL};
    for (int i = 0; bases[i]; i++) {
        snprintf(scratch, sizeof scratch, "%s/probe-XXXXXX", bases[i]);
        if (mkdtemp(scratch))
            return 0;
    }
    scratch[0] = 0;
    return -1;
}

static int path_readonly(const char *path) {
    struct statvfs sv;
    if (statvfs(path, &sv) != 0)
        return -1;
    return (sv.f_flag & ST_RDONLY) ? 1 : 0;
}

static long read_long_file(const char *path) {
    char buf[64] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    if (!strncmp(buf, "max", 3))
        return -2; /* unlimited */
    return strtol(buf, NULL, 10);
}

/* The value after `key` in a "key value" lines file (memory.oom_control, pids.events...). */
static long read_keyed(const char *path, const char *key) {
    char buf[4096] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    size_t kl = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, key, kl) && line[kl] == ' ')
            return strtol(line + kl + 1, NULL, 10);
    return -1;
}

static long first_of(const char *a, const char *b) {
    long v = read_long_file(a);
    return v == -1 ? read_long_file(b) : v;
}

static long keyed_first_of(const char *a, const char *b, const char *key) {
    long v = read_keyed(a, key);
    return v == -1 ? read_keyed(b, key) : v;
}

static int no_new_privs(void) {
    char buf[8192] = {0};
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    char *p = n > 0 ? strstr(buf, "NoNewPrivs:") : NULL;
    return p ? atoi(p + 11) : -1;
}

/* Open `path` with `flags` and report; a /dev/null bind (a masked path) counts as blocked. */
static void open_special(const char *path, int flags, const char *absent_note) {
    int ro = path_readonly(path);
    int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT && absent_note)
            report("blocked", e, "call=open path=%s absent=1 note=%s", path, absent_note);
        else
            report("blocked", e, "call=open path=%s mount_ro=%d", path, ro);
        return;
    }
    struct stat st;
    fstat(fd, &st);
    if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) {
        report("blocked", 0, "call=open path=%s masked=dev_null", path);
    } else if (!(flags & (O_WRONLY | O_RDWR))) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n == 1)
            report("succeeded", 0, "call=read path=%s bytes=1", path);
        else
            report("blocked", n < 0 ? errno : 0, "call=read path=%s bytes=0 note=empty", path);
    } else {
        report("succeeded", 0, "call=open path=%s mount_ro=%d note=opened_for_writing_nothing_written", path, ro);
    }
    close(fd);
}

/* -- the attempts ----------------------------------------------------------------------- */

static void do_mount(const char *src, const char *type, const char *data) {
    if (make_scratch() < 0) {
        report("error", errno, "call=mkdtemp note=no_scratch_dir");
        return;
    }
    long rc = mount(src, scratch, type, MS_NOSUID | MS_NODEV | MS_NOEXEC, data);
    int e = errno;
    if (rc == 0)
        umount2(scratch, MNT_DETACH);
    rmdir(scratch);
    report_call("mount", rc, e);
}

static void a_mount_tmpfs(void) { do_mount("none", "tmpfs", "size=1m"); }
static void a_mount_proc(void) { do_mount("proc", "proc", NULL); }
static void a_unshare_user(void) { long rc = unshare(CLONE_NEWUSER); report_call("unshare", rc, errno); }
static void a_unshare_mount(void) { long rc = unshare(CLONE_NEWNS); report_call("unshare", rc, errno); }

static void do_setns(const char *ns) {
    char path[64];
    snprintf(path, sizeof path, "/proc/1/ns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        report("blocked", errno, "call=open path=%s", path);
        return;
    }
    long rc = setns(fd, 0);
    report_call("setns", rc, errno);
}

static void a_clone_newuser(void) {
    /* the raw clone(2) route to a new user namespace: seccomp can filter its flags */
    long flags = CLONE_NEWUSER | SIGCHLD;
    long rc = syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
    if (rc == 0)
        _exit(0);
    int e = errno;
    if (rc > 0)
        waitpid(rc, NULL, 0);
    report(rc < 0 ? "blocked" : "succeeded", rc < 0 ? e : 0, "call=clone arg0=%ld", flags);
}

static void a_clone3_newuser(void) {
    /* clone3 keeps its flags in memory seccomp cannot read */
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    long rc = syscall(SYS_clone3, &args, sizeof args);
    if (rc == 0)
        _exit(0);
    int e = errno;
    if (rc > 0)
        waitpid(rc, NULL, 0);
    report(rc < 0 ? "blocked" : "succeeded", rc < 0 ? e : 0, "call=clone3 flags=%ld", (long)CLONE_NEWUSER);
}

static void a_fsopen(void) {
    /* the new mount API: a tmpfs superblock without mount(2) */
    long rc = syscall(SYS_fsopen, "tmpfs", 0);
    int e = errno;
    if (rc >= 0)
        close(rc);
    report_call("fsopen", rc, e);
}

static void do_personality(unsigned long persona) {
    long rc = syscall(SYS_personality, persona);
    int e = errno;
    if (rc < 0)
        report("blocked", e, "call=personality arg0=%lu", persona);
    else
        report("succeeded", 0, "call=personality arg0=%lu previous=%ld", persona, rc);
}

/* ADDR_NO_RANDOMIZE (0x0040000) turns off ASLR for what this process executes next */
static void a_personality(void) { do_personality(0x0040000); }
/* UNAME26 (0x0020000): the old uname() information leak; strict allows only PER_LINUX/PER_LINUX32 */
static void a_personality_uname26(void) { do_personality(0x0020000); }

static void a_setns_net(void) { do_setns("net"); }
static void a_setns_mnt(void) { do_setns("mnt"); }
static void a_setns_pid(void) { do_setns("pid"); }

static void do_ptrace(pid_t target, const char *what) {
    long rc = ptrace(PTRACE_ATTACH, target, NULL, NULL);
    int e = errno;
    if (rc == 0) {
        int st, stopped = 0;
        for (int i = 0; i < 200 && !stopped; i++) { /* the SIGSTOP the attach sent, up to 2 s */
            stopped = waitpid(target, &st, __WALL | WNOHANG) == target;
            if (!stopped)
                usleep(10000);
        }
        ptrace(PTRACE_DETACH, target, NULL, NULL); /* (exiting detaches too) */
        report("succeeded", 0, "call=ptrace target=%s pid=%d", what, (int)target);
    } else {
        report("blocked", e, "call=ptrace target=%s pid=%d", what, (int)target);
    }
}

static void a_ptrace_child(void) {
    pid_t c = fork();
    if (c < 0) {
        report("error", errno, "call=fork");
        return;
    }
    if (c == 0) {
        for (;;)
            pause();
    }
    do_ptrace(c, "child");
    kill(c, SIGKILL);
    waitpid(c, NULL, __WALL);
}

static void a_ptrace_init(void) { do_ptrace(1, "pid1"); }

static void a_add_key(void) {
    long rc = syscall(SYS_add_key, "user", "sandbox-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    report_call("add_key", rc, errno);
}

static void a_keyctl(void) {
    /* the per-uid user keyring is not namespaced: it is shared with the host's same uid */
    long rc = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
    report_call("keyctl", rc, errno);
}

static void a_bpf_prog_load(void) {
    struct bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uintptr_t)insns;
    attr.insn_cnt = 2;
    attr.license = (uintptr_t) "GPL";
    long rc = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    int e = errno;
    if (rc >= 0)
        close(rc);
    report_call("bpf", rc, e);
}

static void a_perf_event_open(void) {
    /* a system-wide (pid -1) event on CPU 0: needs CAP_PERFMON under perf_event_paranoid >= 1 */
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    long rc = syscall(SYS_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
    int e = errno;
    if (rc >= 0)
        close(rc);
    report_call("perf_event_open", rc, e);
}

static void a_userfaultfd(void) {
    /* kernel-mode faults too (no UFFD_USER_MODE_ONLY): the exploit primitive */
    long rc = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    int e = errno;
    if (rc >= 0)
        close(rc);
    report_call("userfaultfd", rc, e);
}

static void a_io_uring_setup(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long rc = syscall(SYS_io_uring_setup, 4, &p);
    int e = errno;
    if (rc >= 0)
        close(rc);
    report_call("io_uring_setup", rc, e);
}

static void a_open_by_handle_at(void) {
    /* "shocker": a file handle opens an inode without a path, past the mount namespace */
    struct {
        struct file_handle fh;
        unsigned char buf[MAX_HANDLE_SZ];
    } h;
    memset(&h, 0, sizeof h);
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (name_to_handle_at(AT_FDCWD, "/", &h.fh, &mount_id, 0) != 0) {
        report("blocked", errno, "call=name_to_handle_at");
        return;
    }
    int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long rc = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC);
    int e = errno;
    if (rc >= 0)
        close(rc);
    report_call("open_by_handle_at", rc, e);
}

static void a_init_module(void) {
    static const char image[64] = "\177ELF not a kernel module";
    long rc = syscall(SYS_init_module, image, sizeof image, "");
    report_checked("init_module", rc, errno, PRIV_ERRNOS);
}

static void a_finit_module(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    long rc = syscall(SYS_finit_module, fd, "", 0);
    report_checked("finit_module", rc, errno, PRIV_ERRNOS);
}

static void a_kexec_load(void) {
    /* no segments and an undefined flag bit: EINVAL right after the CAP_SYS_BOOT check */
    long rc = syscall(SYS_kexec_load, 0UL, 0UL, NULL, (unsigned long)KEXEC_ARCH_DEFAULT | 0x8000UL);
    report_checked("kexec_load", rc, errno, PRIV_ERRNOS);
}

static void a_reboot(void) {
    /* CAD_OFF with a wrong second magic: EPERM from the CAP_SYS_BOOT check, else EINVAL */
    long rc = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, 0x0badc0de, LINUX_REBOOT_CMD_CAD_OFF, NULL);
    report_checked("reboot", rc, errno, PRIV_ERRNOS);
}

static void a_swapon(void) {
    long rc = swapon("/nonexistent-sandbox-probe-swap", 0);
    report_checked("swapon", rc, errno, PRIV_ERRNOS);
}

static void a_mknod_blockdev(void) {
    if (make_scratch() < 0) {
        report("error", errno, "call=mkdtemp note=no_scratch_dir");
        return;
    }
    char path[300];
    snprintf(path, sizeof path, "%s/sda", scratch);
    if (mknod(path, S_IFBLK | 0600, makedev(8, 0)) != 0) {
        report("blocked", errno, "call=mknod path=%s", path);
    } else {
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            report("blocked", errno, "call=open path=%s note=node_created_but_not_openable", path);
        else {
            report("succeeded", 0, "call=open path=%s note=block_device_opened_read_only", path);
            close(fd);
        }
        unlink(path);
    }
    rmdir(scratch);
}

static void a_chown_other(void) {
    if (make_scratch() < 0) {
        report("error", errno, "call=mkdtemp note=no_scratch_dir");
        return;
    }
    char path[300];
    snprintf(path, sizeof path, "%s/f", scratch);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        report("error", errno, "call=open path=%s note=cannot_create_test_file", path);
    } else {
        close(fd);
        long rc = chown(path, 1234, 1234);
        int e = errno;
        if (rc == 0)
            report("succeeded", 0, "call=chown path=%s from_uid=%d to_uid=1234", path, (int)geteuid());
        else
            report("blocked", e, "call=chown path=%s from_uid=%d to_uid=1234", path, (int)geteuid());
        unlink(path);
    }
    rmdir(scratch);
}

static void do_socket(int family, int type, int proto) {
    long rc = socket(family, type | SOCK_CLOEXEC, proto);
    int e = errno;
    if (rc >= 0)
        close(rc);
    if (rc < 0)
        report("blocked", e, "call=socket arg0=%d", family);
    else
        report("succeeded", 0, "call=socket arg0=%d", family);
}

static void a_raw_socket(void) { do_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }
static void a_packet_socket(void) { do_socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)); }

static void a_setuid_binary(void) {
    const char *bin = "/bin/suid-probe";
    struct stat st;
    if (stat(bin, &st) != 0) {
        report("error", errno, "call=stat path=%s note=missing", bin);
        return;
    }
    int p[2];
    if (pipe(p) != 0) {
        report("error", errno, "call=pipe");
        return;
    }
    pid_t c = fork();
    if (c == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execl(bin, bin, "--euid", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char buf[64] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    int status = 0;
    waitpid(c, &status, 0);
    int euid = -1;
    if (n <= 0 || sscanf(buf, "EUID %d", &euid) != 1) {
        report("error", 0, "call=execve path=%s note=no_output status=%d", bin, status);
        return;
    }
    int caller = (int)geteuid();
    const char *res = euid != caller ? "succeeded" : "blocked";
    report(res, 0, "call=execve path=%s caller_euid=%d exec_euid=%d owner_uid=%d mode=%04o no_new_privs=%d", bin,
           caller, euid, (int)st.st_uid, (unsigned)(st.st_mode & 07777), no_new_privs());
}

static void a_write_sysrq_trigger(void) {
    open_special("/proc/sysrq-trigger", O_WRONLY, "kernel_has_no_sysrq_trigger");
}
static void a_write_core_pattern(void) { open_special("/proc/sys/kernel/core_pattern", O_WRONLY, NULL); }
static void a_write_sys(void) { open_special("/sys/kernel/mm/transparent_hugepage/enabled", O_WRONLY, NULL); }
static void a_read_kcore(void) { open_special("/proc/kcore", O_RDONLY, "kernel_has_no_proc_kcore"); }

/* /proc/keys lists every key the kernel holds that the caller may view: masked by the profiles */
static void a_read_proc_keys(void) { open_special("/proc/keys", O_RDONLY, "kernel_has_no_proc_keys"); }

/* The release_agent escape (CVE-2022-0492) needs a writable cgroup v1 hierarchy: a new child
   cgroup and its notify_on_release.  mkdir is harmless (removed at once); the file is only opened. */
static void a_cgroup_mkdir(void) {
    const char *bases[] = {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup", NULL};
    const char *base = NULL;
    struct stat st;
    for (int i = 0; bases[i] && !base; i++)
        if (stat(bases[i], &st) == 0 && S_ISDIR(st.st_mode))
            base = bases[i];
    if (!base) {
        report("error", ENOENT, "call=stat note=no_cgroup_mount");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/sandbox-probe-escape", base);
    int ro = path_readonly(base);
    if (mkdir(path, 0755) != 0) {
        report("blocked", errno, "call=mkdir path=%s mount_ro=%d", path, ro);
        return;
    }
    rmdir(path);
    report("succeeded", 0, "call=mkdir path=%s mount_ro=%d note=cgroup_created_and_removed", path, ro);
}

static void a_cgroup_notify_on_release(void) {
    open_special("/sys/fs/cgroup/memory/notify_on_release", O_WRONLY, NULL);
}

static void a_write_rootfs(void) {
    const char *path = "/.sandbox-probe-write";
    int ro = path_readonly("/");
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        report("blocked", errno, "call=open path=%s mount_ro=%d uid=%d", path, ro, (int)geteuid());
        return;
    }
    close(fd);
    unlink(path);
    report("succeeded", 0, "call=open path=%s mount_ro=%d uid=%d", path, ro, (int)geteuid());
}

static void a_fork_bomb(void) {
    static pid_t kids[FORK_MAX];
    long pids_max = first_of("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max");
    long events0 = keyed_first_of("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events", "max");
    int n = 0, e = 0;
    for (; n < FORK_MAX; n++) {
        pid_t c = fork();
        if (c < 0) {
            e = errno;
            break;
        }
        if (c == 0) {
            for (;;)
                pause();
        }
        kids[n] = c;
    }
    long current_at_peak = first_of("/sys/fs/cgroup/pids/pids.current", "/sys/fs/cgroup/pids.current");
    long events1 = keyed_first_of("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events", "max");
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    report(n < FORK_MAX ? "blocked" : "succeeded", e,
           "call=fork forks=%d cap=%d pids_max=%ld pids_current_at_peak=%ld pids_events_max_delta=%ld", n, FORK_MAX,
           pids_max, current_at_peak, (events0 >= 0 && events1 >= 0) ? events1 - events0 : -1);
}

static void a_memory_balloon(void) {
    long limit = first_of("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max");
    /* what bounds swap: v1 memory+swap (memsw), v2 swap alone; -1 unknown, -2 unlimited ("max") */
    long memsw = read_long_file("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes");
    long swap_max = read_long_file("/sys/fs/cgroup/memory.swap.max");
    long oom0 = keyed_first_of("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events", "oom_kill");
    int p[2];
    if (pipe(p) != 0) {
        report("error", errno, "call=pipe");
        return;
    }
    pid_t c = fork();
    if (c < 0) {
        report("error", errno, "call=fork");
        return;
    }
    if (c == 0) {
        close(p[0]);
        for (int mib = BALLOON_STEP_MIB; mib <= BALLOON_MAX_MIB; mib += BALLOON_STEP_MIB) {
            char *m = mmap(NULL, BALLOON_STEP_MIB * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED)
                _exit(2);
            memset(m, 0x5a, BALLOON_STEP_MIB * MIB);
            int32_t v = mib;
            if (write(p[1], &v, sizeof v) != sizeof v)
                _exit(3);
        }
        _exit(0);
    }
    close(p[1]);
    int32_t v, reached = 0;
    while (read(p[0], &v, sizeof v) == sizeof v)
        reached = v;
    close(p[0]);
    int status = 0;
    waitpid(c, &status, 0);
    long oom1 = keyed_first_of("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events", "oom_kill");
    long delta = (oom0 >= 0 && oom1 >= 0) ? oom1 - oom0 : -1;
    if (WIFSIGNALED(status)) {
        out("ATTEMPT name=%s result=blocked errno=%s detail=call=touch oom_killed=%d reached_mib=%d cap_mib=%d "
            "memory_limit=%ld oom_kill_delta=%ld memsw_limit=%ld swap_max=%ld",
            current, signame(WTERMSIG(status)), WTERMSIG(status) == SIGKILL, reached,
            BALLOON_MAX_MIB, limit, delta, memsw, swap_max);
    } else if (WEXITSTATUS(status) == 2) {
        report("blocked", ENOMEM, "call=mmap reached_mib=%d cap_mib=%d memory_limit=%ld memsw_limit=%ld swap_max=%ld",
               reached, BALLOON_MAX_MIB, limit, memsw, swap_max);
    } else {
        report(reached >= BALLOON_MAX_MIB ? "succeeded" : "error", 0,
               "call=touch reached_mib=%d cap_mib=%d memory_limit=%ld memsw_limit=%ld swap_max=%ld exit=%d", reached,
               BALLOON_MAX_MIB, limit, memsw, swap_max, WEXITSTATUS(status));
    }
}

static void a_fill_tmp(void) {
    const char *path = "/tmp/.sandbox-probe-fill";
    struct statfs sf;
    long fs_size = -1;
    int tmpfs = 0;
    if (statfs("/tmp", &sf) == 0) {
        fs_size = (long)sf.f_blocks * (long)sf.f_bsize;
        tmpfs = sf.f_type == 0x01021994; /* TMPFS_MAGIC */
    }
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        report("blocked", errno, "call=open path=%s bytes=0 tmpfs=%d tmpfs_size=%ld", path, tmpfs, fs_size);
        return;
    }
    static char buf[1 << 20];
    memset(buf, 0xa5, sizeof buf);
    long total = 0;
    int e = 0;
    while (total < FILL_MAX) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n < 0) {
            e = errno;
            break;
        }
        total += n;
    }
    close(fd);
    unlink(path);
    report(total < FILL_MAX ? "blocked" : "succeeded", e, "call=write path=%s bytes=%ld cap=%ld tmpfs=%d tmpfs_size=%ld",
           path, total, FILL_MAX, tmpfs, fs_size);
}

/* Number of IPv4 routes in this network namespace (0: nothing can leave it). */
static int ipv4_routes(void) {
    FILE *f = fopen("/proc/net/route", "re");
    if (!f)
        return -1;
    char line[512];
    int n = -1; /* header */
    while (fgets(line, sizeof line, f))
        n++;
    fclose(f);
    return n < 0 ? 0 : n;
}

static void a_net_connect(void) {
    int routes = ipv4_routes();
    if (routes != 0) {
        /* a route exists: connecting could send a real packet, so do not; that a route
           exists at all is the failure being tested for */
        report(routes > 0 ? "succeeded" : "error", 0, "call=none ipv4_routes=%d note=not_attempted_for_safety",
               routes);
        return;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
        report("error", errno, "call=socket");
        return;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
    long rc = connect(s, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(s);
    if (rc == 0 || e == EINPROGRESS)
        report("succeeded", e, "call=connect addr=10.0.0.1:80 ipv4_routes=%d", routes);
    else
        report("blocked", e, "call=connect addr=10.0.0.1:80 ipv4_routes=%d", routes);
}

static void info_loopback(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int up = (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) ? !!(ifr.ifr_flags & IFF_UP) : -1;
    if (s >= 0)
        close(s);
    const char *res = "not_tried";
    int err = 0;
    if (up == 1) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        int c = -1;
        if (l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
            getsockname(l, (struct sockaddr *)&a, &len) == 0 && (c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 &&
            connect(c, (struct sockaddr *)&a, sizeof a) == 0)
            res = "ok";
        else {
            res = "failed";
            err = errno;
        }
        if (c >= 0)
            close(c);
        if (l >= 0)
            close(l);
    }
    out("INFO name=loopback lo_up=%d connect=%s errno=%s ipv4_routes=%d", up, res, ename(err), ipv4_routes());
}

static void info_creds(void) {
    char buf[8192] = {0}, line[256], out_buf[1024] = "";
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    const char *keys[] = {"Uid", "Gid", "CapInh", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                          NULL};
    for (int k = 0; n > 0 && keys[k]; k++) {
        char pat[32];
        snprintf(pat, sizeof pat, "\n%s:", keys[k]);
        char *p = strstr(buf, pat);
        if (!p)
            continue;
        p += strlen(pat);
        while (*p == '\t' || *p == ' ')
            p++;
        size_t l = strcspn(p, "\t\n"); /* the first field (real uid/gid) */
        snprintf(line, sizeof line, " %s=%.*s", keys[k], (int)l, p);
        strncat(out_buf, line, sizeof out_buf - strlen(out_buf) - 1);
    }
    char map[128] = "";
    fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t m = read(fd, map, sizeof map - 1);
        close(fd);
        map[m > 0 ? m : 0] = 0;
        for (char *q = map; *q; q++)
            if (*q == '\n') {
                *q = 0;
                break;
            }
    }
    /* squeeze the uid_map's runs of spaces to one ':' per field: 0:100000:65536 */
    char squeezed[128] = "";
    int j = 0, gap = 0;
    for (char *q = map; *q && j < (int)sizeof squeezed - 1; q++) {
        if (*q == ' ' || *q == '\t') {
            gap = j > 0;
            continue;
        }
        if (gap)
            squeezed[j++] = ':';
        gap = 0;
        squeezed[j++] = *q;
    }
    squeezed[j] = 0;
    out("INFO name=creds%s uid_map=%s", out_buf, squeezed);
}

/* -- oracle: is anything of the host reachable? ------------------------------------------- */

#define ORACLE_MAX_ENTRIES 60000
#define ORACLE_MAX_DEPTH 7
static long oracle_entries;
static int oracle_truncated;

static void oracle_canary(const char *dir) {
    char path[4096], hex[2 * 96 + 1] = "unreadable";
    snprintf(path, sizeof path, "%s/canary", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        unsigned char b[96];
        ssize_t n = read(fd, b, sizeof b);
        close(fd);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                sprintf(hex + 2 * i, "%02x", b[i]);
        }
    }
    out("ORACLE exposed=%s content=%s", dir, hex);
}

static void oracle_blockdev(const char *path, const struct stat *st) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    int readable = 0;
    if (fd >= 0) {
        char b[512];
        readable = read(fd, b, sizeof b) > 0;
        close(fd);
    }
    out("ORACLE blockdev=%s major=%u minor=%u readable=%d", path, major(st->st_rdev), minor(st->st_rdev), readable);
}

static void oracle_walk(const char *dir, const char *name, int depth) {
    if (depth > ORACLE_MAX_DEPTH || oracle_entries > ORACLE_MAX_ENTRIES) {
        oracle_truncated = 1;
        return;
    }
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (++oracle_entries > ORACLE_MAX_ENTRIES) {
            oracle_truncated = 1;
            break;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", e->d_name);
        if (depth == 0 && (!strcmp(e->d_name, "proc") || !strcmp(e->d_name, "sys")))
            continue; /* the container's own; what /proc reaches is looked at below */
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (!strcmp(e->d_name, name))
            oracle_canary(path);
        else if (!strcmp(e->d_name, "canary") && S_ISREG(st.st_mode))
            oracle_canary(dir); /* the canary directory itself mounted somewhere */
        if (S_ISBLK(st.st_mode))
            oracle_blockdev(path, &st);
        else if (S_ISDIR(st.st_mode))
            oracle_walk(path, name, depth + 1);
    }
    closedir(d);
}

static int oracle(const char *name) {
    info_creds();
    oracle_walk("/", name, 0);
    /* what /proc would reach if pid 1 or a leaked descriptor were the host's */
    const char *via[] = {"/proc/1/root/etc", "/proc/self/root/etc", "/proc/1/cwd/etc", "/proc/self/cwd/etc", NULL};
    for (int i = 0; via[i]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", via[i], name);
        struct stat st;
        if (stat(path, &st) == 0)
            oracle_canary(path);
    }
    for (int fd = 3; fd < 64; fd++) {
        char path[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%d/etc/%s", fd, name);
        struct stat st;
        if (stat(path, &st) == 0)
            oracle_canary(path);
        snprintf(path, sizeof path, "/proc/self/fd/%d/%s", fd, name);
        if (stat(path, &st) == 0)
            oracle_canary(path);
    }
    out("ORACLE walked=%ld truncated=%d", oracle_entries, oracle_truncated);
    out("DONE");
    return 0;
}

/* -- driver ------------------------------------------------------------------------------ */

struct attempt {
    const char *name;
    void (*fn)(void);
};

static const struct attempt ATTEMPTS[] = {
    {"mount_tmpfs", a_mount_tmpfs},
    {"mount_proc", a_mount_proc},
    {"unshare_user", a_unshare_user},
    {"unshare_mount", a_unshare_mount},
    {"clone_newuser", a_clone_newuser},
    {"clone3_newuser", a_clone3_newuser},
    {"fsopen", a_fsopen},
    {"setns_net", a_setns_net},
    {"setns_mnt", a_setns_mnt},
    {"setns_pid", a_setns_pid},
    {"ptrace_child", a_ptrace_child},
    {"ptrace_init", a_ptrace_init},
    {"add_key", a_add_key},
    {"keyctl", a_keyctl},
    {"bpf_prog_load", a_bpf_prog_load},
    {"perf_event_open", a_perf_event_open},
    {"userfaultfd", a_userfaultfd},
    {"io_uring_setup", a_io_uring_setup},
    {"open_by_handle_at", a_open_by_handle_at},
    {"init_module", a_init_module},
    {"finit_module", a_finit_module},
    {"kexec_load", a_kexec_load},
    {"reboot", a_reboot},
    {"swapon", a_swapon},
    {"mknod_blockdev", a_mknod_blockdev},
    {"chown_other", a_chown_other},
    {"raw_socket", a_raw_socket},
    {"packet_socket", a_packet_socket},
    {"personality", a_personality},
    {"personality_uname26", a_personality_uname26},
    {"setuid_binary", a_setuid_binary},
    {"write_sysrq_trigger", a_write_sysrq_trigger},
    {"write_core_pattern", a_write_core_pattern},
    {"write_sys", a_write_sys},
    {"read_kcore", a_read_kcore},
    {"read_proc_keys", a_read_proc_keys},
    {"cgroup_mkdir", a_cgroup_mkdir},
    {"cgroup_notify_on_release", a_cgroup_notify_on_release},
    {"write_rootfs", a_write_rootfs},
    {"net_connect", a_net_connect},
    {"fork_bomb", a_fork_bomb},
    {"memory_balloon", a_memory_balloon},
    {"fill_tmp", a_fill_tmp},
    {NULL, NULL},
};

static void on_alarm(int sig) { (void)sig; }

/* Run one attempt in its own child and process group; reap everything (we are pid 1). */
static void run_attempt(const struct attempt *a) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        out("ATTEMPT name=%s result=error errno=%s detail=call=pipe", a->name, ename(errno));
        return;
    }
    pid_t c = fork();
    if (c < 0) {
        out("ATTEMPT name=%s result=error errno=%s detail=call=fork note=probe_could_not_fork", a->name, ename(errno));
        close(p[0]);
        close(p[1]);
        return;
    }
    if (c == 0) {
        setpgid(0, 0);
        close(p[0]);
        current = a->name;
        a->fn();
        _exit(0);
    }
    setpgid(c, c);
    close(p[1]);
    alarm(ATTEMPT_TIMEOUT);
    int status = 0, timed_out = 0;
    for (;;) {
        pid_t got = waitpid(-1, &status, __WALL);
        if (got == c)
            break;
        if (got < 0 && errno == EINTR) {
            timed_out = 1;
            kill(-c, SIGKILL);
            kill(c, SIGKILL);
            alarm(5);
        } else if (got < 0 && errno == ECHILD) {
            break;
        }
    }
    alarm(0);
    close(p[0]);
    kill(-c, SIGKILL); /* anything the attempt left behind */
    while (waitpid(-1, NULL, __WALL | WNOHANG) > 0)
        ;
    if (timed_out)
        out("ATTEMPT name=%s result=error errno=ETIMEDOUT detail=note=timed_out_after_%ds", a->name, ATTEMPT_TIMEOUT);
    else if (WIFSIGNALED(status))
        out("ATTEMPT name=%s result=%s errno=%s detail=note=attempt_killed_by_signal", a->name,
            WTERMSIG(status) == SIGSYS ? "blocked" : "error", signame(WTERMSIG(status)));
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--euid")) {
        printf("EUID %d\n", (int)geteuid());
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (const struct attempt *a = ATTEMPTS; a->name; a++)
            printf("%s\n", a->name);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: probe all | probe NAME... | probe list | probe --euid | probe oracle NAME | probe sleep\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && !strcmp(argv[1], "oracle"))
        return oracle(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "sleep")) {
        for (;;)
            pause();
    }
    if (getpid() != 1) {
        fprintf(stderr, "probe: refusing to run outside a container (not pid 1 of a pid namespace)\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: waitpid returns EINTR on timeout */
    sigaction(SIGALRM, &sa, NULL);
    setvbuf(stdout, NULL, _IONBF, 0);
    int all = !strcmp(argv[1], "all");
    int rc = 0;
    info_creds();
    info_loopback();
    if (all) {
        for (const struct attempt *a = ATTEMPTS; a->name; a++)
            run_attempt(a);
    } else {
        for (int i = 1; i < argc; i++) {
            const struct attempt *a = ATTEMPTS;
            while (a->name && strcmp(a->name, argv[i]))
                a++;
            if (!a->name) {
                out("ATTEMPT name=%s result=error errno=NONE detail=note=unknown_attempt", argv[i]);
                rc = 2;
                continue;
            }
            run_attempt(a);
        }
    }
    out("DONE");
    return rc;
}
