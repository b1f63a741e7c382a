/* sandbox-runc: sandbox's drop-in runc, the compiled dispatcher.
 *
 * Passthrough subcommands (state, start, kill, delete, list, ps, features, ...) exec the real
 * runc at once: no Python, no shell, one exec.  create and run are handed to the sandbox daemon
 * when one is listening on a root-only socket (the hardening work is done by a warm process);
 * otherwise, and for restore/exec/update, they go to the Python hardening path (sandbox.runtime.shim).
 * The real runc: $SANDBOX_RUNC, else `runc:` in the operator config, else the first `runc` on
 * PATH that is not this program.  bin/sandbox-runc is the POSIX sh twin used where no C
 * compiler was found at install time; both must decide alike (tests/unit/test_dispatcher.py).
 *
 * Whatever stdio the engine hands us (closed, read-only /dev/null, /dev/full, a pipe without a
 * reader), an error of ours is written to runc's --log file (as runc writes it: the engine
 * reads it) and then to stderr, and the exit code is one of docs/integrations.md's: 1, 126
 * (runc cannot be executed), 127 (runc or python not found), or runc's own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

/* sandbox.host.runc.is_shim() looks for this marker in a file's first 64 KiB so that PATH search
 * never picks us as runc: an ELF note, which the linker puts at the front even of a static
 * binary (a string in .rodata lands ~700 KiB in). */
__asm__(".pushsection .note.sandbox-runc, \"a\", @note\n"
        ".balign 4\n"
        ".long 8\n"  /* namesz: "sandbox\0" */
        ".long 20\n" /* descsz: the marker, NUL-padded to 4 bytes */
        ".long 1\n"
        ".asciz \"sandbox\"\n"
        ".asciz \"SANDBOX-RUNC-SHIM\"\n"
        ".balign 4\n"
        ".popsection\n");

#define EXIT_INVALID 1
#define EXIT_NOT_FOUND 127
#define DEFAULT_CONFIG "/etc/sandbox/config.yaml"
#define DEFAULT_SOCKET "/run/sandbox/daemon.sock"
#define DAEMON_TIMEOUT_S 30
#define REPLY_MAX (256 * 1024)

static const char py_fast[] =
    "import sys; sys.path.append(sys.argv.pop(1)); from sandbox.runtime.shim import main; main()";
static const char py_site[] = "from sandbox.runtime.shim import main; main()";

/* ---- saying why: runc's --log file, then stderr ---------------------------------------------- */

/* A closed fd 0, 1 or 2 gets /dev/null before anything is opened: otherwise the operator config
 * or the --log file would take its number and "stderr" would be written into it.  Open ones are
 * left as they are, even read-only: they are the engine's, and runc's. */
static void standard_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        int n = open("/dev/null", O_RDWR);
        if (n < 0) n = open("/", O_RDONLY | O_DIRECTORY); /* holds the number; nothing can be written to it */
        if (n >= 0 && n != fd) {
            dup2(n, fd);
            close(n);
        }
    }
}

static const char *runc_log, *runc_log_format;

/* runc's global --log and --log-format: before the subcommand, `-x` or `--x`, the value next or
 * after `=`, the last one wins, `--` or the first non-flag ends them (Go's flag rules). */
static void find_runc_log(int argc, char **argv) {
    static const char *const valued[] = {"log", "log-format", "root", "criu", "rootless", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1] || strcmp(a, "--") == 0) return;
        const char *name = a + (a[1] == '-' ? 2 : 1), *eq = strchr(name, '='), *value = eq ? eq + 1 : NULL;
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int takes = 0;
        for (const char *const *v = valued; *v; v++)
            if (strlen(*v) == len && strncmp(name, *v, len) == 0) takes = 1;
        if (takes && !value) value = i + 1 < argc ? argv[++i] : "";
        if (len == 3 && strncmp(name, "log", 3) == 0) runc_log = value;
        else if (len == 10 && strncmp(name, "log-format", 10) == 0) runc_log_format = value;
    }
}

/* all of it, or as much as the descriptor takes; a pipe without a reader must not kill us */
static void write_quiet(int fd, const char *p, size_t n) {
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        n -= (size_t)w;
    }
    sigaction(SIGPIPE, &old, NULL);
}

struct text { char *p; size_t n, cap; int lost; };

static void add(struct text *t, const char *s, size_t n) {
    if (t->lost) return;
    if (t->n + n + 1 > t->cap) {
        size_t cap = (t->n + n + 1) * 2;
        char *p = realloc(t->p, cap);
        if (!p) { t->lost = 1; return; }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = 0;
}

static void adds(struct text *t, const char *s) { add(t, s, strlen(s)); }

/* a JSON string (json), or Go's strconv.Quote as logrus's text format writes a value */
static void add_quoted(struct text *t, const char *s, int json) {
    adds(t, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            add(t, esc, 2);
        } else if (*c == '\n') adds(t, "\\n");
        else if (*c == '\r') adds(t, "\\r");
        else if (*c == '\t') adds(t, "\\t");
        else if (*c < 0x20 || *c == 0x7f) {
            snprintf(esc, sizeof esc, json ? "\\u%04x" : "\\x%02x", *c);
            adds(t, esc);
        } else add(t, (const char *)c, 1);
    }
    adds(t, "\"");
}

/* one line in runc's --log file as runc 1.1 writes it (logrus; RFC 3339 time) */
static void runc_log_line(const char *level, const char *msg) {
    if (!runc_log || !*runc_log) return;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    struct text t = {0};
    if (runc_log_format && strcmp(runc_log_format, "json") == 0) {
        adds(&t, "{\"level\":");
        add_quoted(&t, level, 1);
        adds(&t, ",\"msg\":");
        add_quoted(&t, msg, 1);
        adds(&t, ",\"time\":\"");
        adds(&t, stamp);
        adds(&t, "\"}\n");
    } else {
        adds(&t, "time=\"");
        adds(&t, stamp);
        adds(&t, "\" level=");
        adds(&t, level);
        adds(&t, " msg=");
        add_quoted(&t, msg, 0);
        adds(&t, "\n");
    }
    int fd = t.lost ? -1 : open(runc_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
    if (fd >= 0) {
        write_quiet(fd, t.p, t.n); /* one write with O_APPEND: never interleaved with runc's own lines */
        close(fd);
    } else {
        char note[PATH_MAX + 128];
        int n = snprintf(note, sizeof note, "sandbox-runc: cannot write runc log %s: %s\n", runc_log,
                         t.lost ? "out of memory" : strerror(errno));
        if (n > 0) write_quiet(2, note, (size_t)n < sizeof note ? (size_t)n : sizeof note - 1);
    }
    free(t.p);
}

/* the --log file first (the engine shows its last error), then stderr */
static void tell(const char *level, const char *msg) {
    runc_log_line(level, msg);
    struct text t = {0};
    adds(&t, "sandbox-runc: ");
    if (strcmp(level, "warning") == 0) adds(&t, "warning: ");
    adds(&t, msg);
    adds(&t, "\n");
    if (!t.lost) write_quiet(2, t.p, t.n);
    free(t.p);
}

static void say(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    tell("error", buf);
}

#define die(code, ...) do { say(__VA_ARGS__); exit(code); } while (0)

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

/* `runc:` from the operator config, with the trust rule of the Python side: a regular file
 * (a FIFO would block), owned by us (root), that no one else may write. */
static char *runc_from_config(void) {
    const char *conf = getenv("SANDBOX_CONFIG");
    if (!conf || !*conf) conf = DEFAULT_CONFIG;
    int fd = open(conf, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return NULL;
        die(EXIT_INVALID, "%s: cannot read the operator config: %s", conf, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) die(EXIT_INVALID, "%s: not a regular file; refusing it", conf);
    FILE *f = fdopen(fd, "r");
    if (!f) die(EXIT_INVALID, "%s: %s", conf, strerror(errno));
    char *line = NULL, *found = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        if (strncmp(line, "runc:", 5) != 0) continue;
        char *v = line + 5, *hash = strchr(v, '#');
        if (hash) *hash = 0;
        v = trim(v);
        if (*v == '"' || *v == '\'') v++;
        size_t n = strlen(v);
        if (n && (v[n - 1] == '"' || v[n - 1] == '\'')) v[n - 1] = 0;
        found = strdup(v);
        break;
    }
    free(line);
    fclose(f);
    if (found && *found) {
        if (st.st_uid != geteuid())
            die(EXIT_INVALID, "%s: operator config is not owned by root; refusing it", conf);
        if (st.st_mode & 022)
            die(EXIT_INVALID, "%s: operator config is writable by group or others; refusing it", conf);
        return found;
    }
    free(found);
    return NULL;
}

static char *runc_from_path(const struct stat *self) {
    const char *path = getenv("PATH");
    if (!path) return NULL;
    char *copy = strdup(path), *save = NULL, *found = NULL;
    /* strtok would skip empty entries, which mean the current directory */
    for (char *d = copy; d; d = save) {
        save = strchr(d, ':');
        if (save) *save++ = 0;
        char cand[PATH_MAX];
        if (snprintf(cand, sizeof cand, "%s/runc", *d ? d : ".") >= (int)sizeof cand) continue;
        struct stat st;
        if (access(cand, X_OK) != 0 || stat(cand, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (self && st.st_dev == self->st_dev && st.st_ino == self->st_ino) continue;
        found = strdup(cand);
        break;
    }
    free(copy);
    return found;
}

/* ---- runc's global flags, read as runc 1.1.5 reads them --------------------------------------
 * Go's flag package and urfave/cli v1, exactly as sandbox/core/runc_cli.py models them (the table
 * there is the one declaration; tests/unit/test_dispatcher.py checks that this function, the sh
 * twin and the Python parser agree): `-name` and `--name`, `--name=value`, a string flag without
 * `=` takes the next argument whatever it is, a bool takes a value only after `=`, `--` ends the
 * flags, the first non-flag argument is the subcommand.  An undefined flag, a missing value, a
 * bad bool, both forms of help/version, or help/version asked for: runc runs no subcommand. */
static const char *const global_string_flags[] = {"log", "log-format", "root", "criu", "rootless", NULL};
static const char *const global_bool_flags[] = {"debug", "systemd-cgroup", "help", "h", "version", "v", NULL};

static int name_is(const char *name, size_t len, const char *want) {
    return strlen(want) == len && strncmp(name, want, len) == 0;
}

static int name_in(const char *name, size_t len, const char *const *set) {
    for (; *set; set++)
        if (name_is(name, len, *set)) return 1;
    return 0;
}

/* strconv.ParseBool: 1 true, 0 false, -1 invalid */
static int go_bool(const char *v) {
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True", NULL};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False", NULL};
    if (name_in(v, strlen(v), t)) return 1;
    if (name_in(v, strlen(v), f)) return 0;
    return -1;
}

/* index of the subcommand runc would run, or -1 when it runs none */
static int runc_subcommand(int argc, char **argv) {
    int help = 0, version = 0, forms_help = 0, forms_version = 0;
    int i = 1;
    for (; i < argc; i++) {
        const char *s = argv[i];
        size_t len = strlen(s);
        if (len < 2 || s[0] != '-') break;
        int minus = 1;
        if (s[1] == '-') {
            minus = 2;
            if (len == 2) { i++; break; } /* "--" */
        }
        const char *name = s + minus;
        if (!*name || name[0] == '-' || name[0] == '=') return -1; /* bad flag syntax */
        const char *eq = strchr(name + 1, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        if (name_in(name, n, global_string_flags)) {
            if (!eq && ++i >= argc) return -1; /* flag needs an argument */
            continue;
        }
        if (!name_in(name, n, global_bool_flags)) return -1; /* flag provided but not defined */
        int b = eq ? go_bool(eq + 1) : 1;
        if (b < 0) return -1;
        if (name_is(name, n, "help")) { help = b; forms_help |= 1; }
        else if (name_is(name, n, "h")) { help = b; forms_help |= 2; }
        else if (name_is(name, n, "version")) { version = b; forms_version |= 1; }
        else if (name_is(name, n, "v")) { version = b; forms_version |= 2; }
    }
    if (forms_help == 3 || forms_version == 3 || help || version) return -1;
    return i < argc ? i : -1;
}

static int is_one_of(const char *s, const char *const *set) {
    for (; s && *set; set++)
        if (strcmp(s, *set) == 0) return 1;
    return 0;
}

/* ---- the daemon client ------------------------------------------------------------------- */

struct buf { char *p; size_t n, cap; };

static void put(struct buf *b, const char *key, const char *val) {
    size_t need = strlen(key) + strlen(val) + 2;
    if (b->n + need > b->cap) {
        b->cap = (b->n + need) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) die(EXIT_INVALID, "out of memory");
    }
    b->n += (size_t)sprintf(b->p + b->n, "%s=%s", key, val) + 1; /* keeps the NUL: it separates */
}

/* the socket is used only where nobody but root could have put it */
static int trusted_socket(const char *path) {
    char dir[PATH_MAX];
    struct stat st;
    if (strlen(path) >= sizeof dir) return 0;
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) return 0;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) return 0;
    return 1;
}

static int daemon_connect(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) return -1;
    strcpy(sa.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct timeval tv = {.tv_sec = DAEMON_TIMEOUT_S};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
        close(s);
        return -1;
    }
    return s;
}

/* file descriptors the daemon passed with its reply (SCM_RIGHTS): a detached rootfs view */
#define MAX_REPLY_FDS 4
static int reply_fds[MAX_REPLY_FDS];
static int n_reply_fds;

static void take_fds(struct msghdr *mh) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < k; i++) {
            if (n_reply_fds < MAX_REPLY_FDS) reply_fds[n_reply_fds++] = fds[i];
            else close(fds[i]);
        }
    }
}

/* one request, one reply; the reply is NUL-separated key=value records.  NULL: no answer. */
static char *daemon_call(const char *path, const struct buf *req, size_t *reply_len) {
    int s = daemon_connect(path);
    if (s < 0) return NULL;
    size_t off = 0;
    while (off < req->n) {
        ssize_t w = send(s, req->p + off, req->n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { close(s); return NULL; }
        off += (size_t)w;
    }
    shutdown(s, SHUT_WR);
    char *reply = malloc(REPLY_MAX + 1);
    size_t n = 0;
    for (;;) {
        char cbuf[CMSG_SPACE(sizeof(int) * MAX_REPLY_FDS)];
        struct iovec iov = {.iov_base = reply + n, .iov_len = REPLY_MAX - n};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        ssize_t r = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
        if (r > 0) take_fds(&mh);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { n = 0; break; }
        if (r == 0) break;
        n += (size_t)r;
        if (n == REPLY_MAX) { n = 0; break; }
    }
    close(s);
    if (n == 0) { free(reply); return NULL; }
    reply[n] = 0;
    *reply_len = n;
    return reply;
}

static const char *field(const char *reply, size_t len, const char *key) {
    size_t k = strlen(key);
    for (const char *p = reply; p < reply + len; p += strlen(p) + 1)
        if (strncmp(p, key, k) == 0 && p[k] == '=') return p + k + 1;
    return NULL;
}

/* what the daemon says is to be told: its error=/warning= records to --log, then its stderr= text */
static void relay(const char *reply, size_t len) {
    for (const char *p = reply; p < reply + len; p += strlen(p) + 1) {
        if (strncmp(p, "error=", 6) == 0) runc_log_line("error", p + 6);
        else if (strncmp(p, "warning=", 8) == 0) runc_log_line("warning", p + 8);
    }
    const char *err = field(reply, len, "stderr");
    if (err && *err) write_quiet(2, err, strlen(err));
}

/* the daemon's exit code for a refusal or error, held to the documented ones */
static int documented(const char *code) {
    int c = code ? atoi(code) : EXIT_INVALID;
    return c == 126 || c == EXIT_NOT_FOUND || c == 130 ? c : EXIT_INVALID;
}

/* What the daemon prepared for a user namespace sandbox adds (sandbox/host/mountns.py): runc must start
 * in a mount namespace of its own where the detached rootfs view is attached at `target`, inside
 * the namespaces the engine made in the host's user namespace (`enter=KIND:PATH` records). */
struct prep {
    int mount_fd;
    const char *target;
    const char *enter[3];
    int n_enter;
};

#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#define MOVE_MOUNT_F_EMPTY_PATH_ 0x4

static int prepare_runtime(const struct prep *p) {
    if (unshare(CLONE_NEWNS) != 0) {
        say("cannot make a mount namespace for the runtime: %s", strerror(errno));
        return -1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) {
        say("cannot make the runtime's mounts slaves of the host's: %s", strerror(errno));
        return -1;
    }
    if (p->target && p->mount_fd < 0) {
        say("the sandbox daemon named %s but passed no rootfs view to attach there", p->target);
        return -1;
    }
    if (p->target) {
        if (mkdir(p->target, 0755) != 0 && errno != EEXIST) {
            say("cannot make %s: %s", p->target, strerror(errno));
            return -1;
        }
        if (syscall(SYS_move_mount, p->mount_fd, "", AT_FDCWD, p->target, MOVE_MOUNT_F_EMPTY_PATH_) != 0) {
            say("cannot attach the container's rootfs at %s: %s", p->target, strerror(errno));
            return -1;
        }
    }
    for (int i = 0; i < p->n_enter; i++) {
        const char *colon = strchr(p->enter[i], ':');
        if (!colon) return -1;
        size_t k = (size_t)(colon - p->enter[i]);
        int flag = strncmp(p->enter[i], "network", k) == 0 ? CLONE_NEWNET
                 : strncmp(p->enter[i], "ipc", k) == 0 ? CLONE_NEWIPC
                 : strncmp(p->enter[i], "uts", k) == 0 ? CLONE_NEWUTS : 0;
        int fd = open(colon + 1, O_RDONLY | O_CLOEXEC);
        if (!flag || fd < 0 || setns(fd, flag) != 0) {
            say("cannot enter the namespace %s: %s", p->enter[i], strerror(errno));
            return -1;
        }
        close(fd);
    }
    return 0;
}

static volatile pid_t child_pid;

static void forward(int sig) {
    if (child_pid > 0) kill(child_pid, sig);
}

/* the real runc as our child, so that its outcome can be recorded; signals go through to it */
static int spawn_runc(const char *runc, char **argv, const struct prep *prep) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid < 0) die(EXIT_INVALID, "cannot fork: %s", strerror(errno));
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (prep && prepare_runtime(prep) != 0) _exit(EXIT_INVALID);
        execv(runc, argv);
        int e = errno;
        say("cannot execute runc at %s: %s", runc, strerror(e));
        _exit(e == ENOENT ? EXIT_NOT_FOUND : 126);
    }
    child_pid = pid;
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die(EXIT_INVALID, "waiting for runc: %s", strerror(errno));
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* create/run through the daemon.  Returns only when there is no usable daemon (the caller
 * then takes the Python path); once the daemon has answered, this process ends here. */
static void via_daemon(int argc, char **argv, const char *runc, int sub) {
    const char *sock = getenv("SANDBOX_DAEMON_SOCKET");
    if (!sock) sock = DEFAULT_SOCKET;
    if (!*sock || strcmp(sock, "off") == 0 || !trusted_socket(sock)) return;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return;
    struct buf req = {0};
    put(&req, "op", "harden");
    put(&req, "cwd", cwd);  /* the real runc travels as SANDBOX_RUNC, set by main() */
    extern char **environ;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "SANDBOX_", 8) == 0) put(&req, "env", *e);
    for (int i = 1; i < argc; i++) put(&req, "arg", argv[i]);
    size_t len = 0;
    char *reply = daemon_call(sock, &req, &len);
    if (!reply) return;
    const char *status = field(reply, len, "status");
    if (!status || strcmp(status, "fallback") == 0) { free(reply); free(req.p); return; }
    /* runc gets the command line the daemon rebuilt from the parsed one, never ours as it was */
    size_t nargs = 0;
    for (const char *p = reply; p < reply + len; p += strlen(p) + 1)
        if (strncmp(p, "arg=", 4) == 0) nargs++;
    if (strcmp(status, "ok") == 0 && nargs == 0) { free(reply); free(req.p); return; }
    relay(reply, len); /* the daemon has written the audit record before it answered */
    if (strcmp(status, "ok") != 0) exit(documented(field(reply, len, "code")));
    const char *ticket = field(reply, len, "ticket");
    char **rargv = calloc(nargs + 2, sizeof *rargv);
    if (!rargv) die(EXIT_INVALID, "out of memory");
    size_t k = 0;
    rargv[k++] = (char *)runc;
    for (const char *p = reply; p < reply + len; p += strlen(p) + 1)
        if (strncmp(p, "arg=", 4) == 0) rargv[k++] = (char *)p + 4;
    rargv[k] = NULL;
    struct prep prep = {.mount_fd = -1, .target = field(reply, len, "mount_target")};
    if (prep.target && n_reply_fds > 0) prep.mount_fd = reply_fds[0];
    for (const char *p = reply; p < reply + len && prep.n_enter < 3; p += strlen(p) + 1)
        if (strncmp(p, "enter=", 6) == 0) prep.enter[prep.n_enter++] = p + 6;
    int wants = prep.target || prep.n_enter;
    int code = spawn_runc(runc, rargv, wants ? &prep : NULL);
    for (int i = 0; i < n_reply_fds; i++) close(reply_fds[i]);
    struct buf out = {0};
    char num[16];
    snprintf(num, sizeof num, "%d", code);
    put(&out, "op", "outcome");
    put(&out, "ticket", ticket ? ticket : "");
    put(&out, "code", num);
    size_t olen = 0;
    char *oreply = daemon_call(sock, &out, &olen);
    const char *ostatus = oreply ? field(oreply, olen, "status") : NULL;
    const char *cleanup = oreply ? field(oreply, olen, "cleanup") : NULL;
    int recorded = ostatus && strcmp(ostatus, "ok") == 0;
    if (oreply) relay(oreply, olen);
    if (!ostatus) {
        say("the sandbox daemon did not record the outcome of runc %s", argv[sub]);
        cleanup = "1"; /* a create that cannot be recorded must not leave a container behind */
    }
    /* runc is run from here, never from the daemon: same environment, same parent as runc create */
    const char *cid = field(reply, len, "cid");
    if (cleanup && strcmp(cleanup, "1") == 0 && strcmp(argv[sub], "create") == 0 && cid && *cid) {
        char *del[nargs + 6];
        int n = 0;
        del[n++] = (char *)runc;
        for (size_t i = 1; rargv[i] && rargv[i][0] == '-'; i++) del[n++] = rargv[i]; /* its --globals */
        del[n++] = "delete";
        del[n++] = "--force";
        if (cid[0] == '-') del[n++] = "--";
        del[n++] = (char *)cid;
        del[n] = NULL;
        int saved = dup(1), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        dup2(null, 1); /* engines parse runc's stdout: the clean-up says nothing there */
        spawn_runc(runc, del, NULL);
        dup2(saved, 1);
    }
    exit(recorded ? code : EXIT_INVALID);
}

/* ---- the Python hardening path ------------------------------------------------------------ */

static void exec_python(int argc, char **argv, const char *self_path) {
    char here[PATH_MAX], py[PATH_MAX + 16], pattern[PATH_MAX + 64];
    snprintf(here, sizeof here, "%s", self_path);
    char *slash = strrchr(here, '/');
    if (slash) *slash = 0;
    const char *python = getenv("SANDBOX_PYTHON");
    if (!python || !*python) {
        snprintf(py, sizeof py, "%s/python3", here);
        python = access(py, X_OK) == 0 ? py : "python3";
    }
    char **args = calloc((size_t)argc + 6, sizeof *args);
    int n = 0;
    args[n++] = (char *)python;
    /* -S skips `site` and its .pth files, a third of Python's start-up; the package is then
     * found in the venv's site-packages directly (an editable install needs site) */
    snprintf(pattern, sizeof pattern, "%s/../lib/python3*/site-packages/sandbox/runtime/shim.py", here);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        char *sp = strdup(g.gl_pathv[0]);
        sp[strlen(sp) - strlen("/sandbox/runtime/shim.py")] = 0;
        args[n++] = "-I";
        args[n++] = "-S";
        args[n++] = "-c";
        args[n++] = (char *)py_fast;
        args[n++] = sp;
    } else {
        args[n++] = "-I";
        args[n++] = "-c";
        args[n++] = (char *)py_site;
    }
    for (int i = 1; i < argc; i++) args[n++] = argv[i];
    args[n] = NULL;
    if (strchr(python, '/')) execv(python, args); else execvp(python, args);
    int e = errno;
    die(e == ENOENT ? EXIT_NOT_FOUND : 126, "cannot execute %s: %s", python, strerror(e));
}

int main(int argc, char **argv) {
    standard_fds(); /* before anything is opened */
    find_runc_log(argc, argv);
    /* a runc that is this program again (a copy installed as `runc` on PATH) must not loop */
    const char *active = getenv("SANDBOX_RUNC_SHIM_ACTIVE");
    if (active && *active)
        die(EXIT_NOT_FOUND, "the runc found is sandbox-runc itself; set runc: in the operator config");
    setenv("SANDBOX_RUNC_SHIM_ACTIVE", "1", 1);

    char self_path[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    self_path[sl > 0 ? sl : 0] = 0;
    struct stat self_st, *self = stat("/proc/self/exe", &self_st) == 0 ? &self_st : NULL;

    char *real = getenv("SANDBOX_RUNC");
    if (!real || !*real) real = runc_from_config();
    if (!real || !*real) real = runc_from_path(self);

    static const char *const hardened[] = {"create", "run", "restore", "exec", "update", NULL};
    static const char *const served[] = {"create", "run", NULL};
    int sub = runc_subcommand(argc, argv);
    const char *name = sub > 0 ? argv[sub] : NULL;
    if (is_one_of(name, hardened)) {
        if (real && *real) {
            setenv("SANDBOX_RUNC", real, 1);
            if (is_one_of(name, served)) via_daemon(argc, argv, real, sub);
        }
        exec_python(argc, argv, self_path);
    }
    if (!real || !*real) {
        const char *conf = getenv("SANDBOX_CONFIG");
        die(EXIT_NOT_FOUND, "runc not found (set runc: in %s or put runc on PATH)",
            conf && *conf ? conf : DEFAULT_CONFIG);
    }
    argv[0] = real;
    execv(real, argv);
    int e = errno;
    die(e == ENOENT ? EXIT_NOT_FOUND : 126, "cannot execute runc at %s: %s", real, strerror(e));
}
