/* sandbox-nethook: sandbox's own createRuntime hook, the compiled fast path.
 *
 * runc runs it on the host, as root, with the container's state on stdin, after it has made
 * the container's namespaces and before the workload's first instruction.  It loads the
 * ruleset that sandbox put in the annotation org.sandbox-runtime.network into the container's
 * network namespace, as one nftables transaction (libnftables, JSON).
 *
 * This program only ever succeeds on the plain case: the annotation's SHA-256 is the one in
 * its arguments, the namespace is not the host's (init's; runc's own when init's is out of reach), and the ruleset loads
 * (its table did not exist).  Anything else -- a table already there (a namespace this
 * container joins), libnftables missing, a state it cannot read -- is handed, unchanged, to
 * the Python hook (sandbox/runtime/nethook.py), which decides and says why.  bin/sandbox-nethook is the
 * sh launcher of that Python hook, installed instead of this program where no C compiler was
 * found at install time.  Python costs ~15 ms per container start; this, ~3 ms.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ANNOTATION "org.sandbox-runtime.network"
#define MAX_STATE (4 << 20)
#define NFT_CTX_OUTPUT_JSON (1 << 4)

static const char py_hook[] =
    "import sys; sys.path.append(sys.argv.pop(1)); from sandbox.runtime.nethook import main; sys.exit(main())";

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------ */

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) + ((a[4] & a[5]) ^ (~a[4] & a[6])) + K[i] + w[i];
        uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) + ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
        memmove(a + 1, a, 7 * sizeof *a);
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++) h[i] += a[i];
}

static void sha256_hex(const unsigned char *data, size_t len, char out[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    unsigned char block[64];
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha256_block(h, data + i);
    size_t rest = len - i;
    memset(block, 0, sizeof block);
    memcpy(block, data + i, rest);
    block[rest] = 0x80;
    if (rest >= 56) {
        sha256_block(h, block);
        memset(block, 0, sizeof block);
    }
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++) block[63 - j] = (unsigned char)(bits >> (8 * j));
    sha256_block(h, block);
    for (int j = 0; j < 8; j++) sprintf(out + 8 * j, "%08x", h[j]);
}

/* ---- just enough JSON for runc's state ----------------------------------------------------- */

struct cur {
    const char *p, *end;
    int depth;
};

static void ws(struct cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* A JSON string at c->p, decoded (UTF-8) into a fresh buffer when `out` is given; 0 on success. */
static int string(struct cur *c, char **out, size_t *outlen) {
    if (c->p >= c->end || *c->p != '"') return -1;
    c->p++;
    char *buf = out ? malloc((size_t)(c->end - c->p) + 1) : NULL;
    size_t n = 0;
    if (out && !buf) return -1;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch < 0x20) goto bad;
        if (ch != '\\') {
            if (buf) buf[n++] = (char)ch;
            continue;
        }
        if (c->p >= c->end) goto bad;
        char e = *c->p++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            if (buf) buf[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u' || c->end - c->p < 4) goto bad;
        unsigned cp = 0;
        for (int i = 0; i < 4; i++) {
            int v = hexval(*c->p++);
            if (v < 0) goto bad;
            cp = cp << 4 | (unsigned)v;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) goto bad; /* never in a ruleset: leave it to the Python hook */
        if (buf) {
            if (cp < 0x80) buf[n++] = (char)cp;
            else if (cp < 0x800) { buf[n++] = (char)(0xC0 | cp >> 6); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
            else {
                buf[n++] = (char)(0xE0 | cp >> 12);
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            }
        }
    }
    if (c->p >= c->end) goto bad;
    c->p++;
    if (out) {
        buf[n] = 0;
        *out = buf;
        *outlen = n;
    }
    return 0;
bad:
    free(buf);
    return -1;
}

static int skip(struct cur *c) {
    ws(c);
    if (c->p >= c->end || ++c->depth > 64) return -1;
    int rc = 0;
    if (*c->p == '"') {
        rc = string(c, NULL, NULL);
    } else if (*c->p == '{' || *c->p == '[') {
        char close = *c->p == '{' ? '}' : ']';
        c->p++;
        ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
        } else {
            for (;;) {
                if (close == '}') {
                    ws(c);
                    if (string(c, NULL, NULL)) return -1;
                    ws(c);
                    if (c->p >= c->end || *c->p++ != ':') return -1;
                }
                if (skip(c)) return -1;
                ws(c);
                if (c->p >= c->end) return -1;
                if (*c->p == ',') { c->p++; continue; }
                if (*c->p++ != close) return -1;
                break;
            }
        }
    } else {
        while (c->p < c->end && strchr("-+.0123456789eEtruefalsn", *c->p)) c->p++;
    }
    c->depth--;
    return rc;
}

/* The top-level "pid" and annotations[ANNOTATION] of runc's state. */
static int parse_state(const char *text, size_t len, long *pid, char **rules, size_t *rules_len) {
    struct cur c = {text, text + len, 0};
    ws(&c);
    if (c.p >= c.end || *c.p++ != '{') return -1;
    for (;;) {
        ws(&c);
        if (c.p < c.end && *c.p == '}') return 0;
        char *key = NULL;
        size_t klen;
        if (string(&c, &key, &klen)) return -1;
        ws(&c);
        if (c.p >= c.end || *c.p++ != ':') { free(key); return -1; }
        ws(&c);
        if (strcmp(key, "pid") == 0) {
            char *endp;
            errno = 0;
            *pid = strtol(c.p, &endp, 10);
            if (errno || endp == c.p) { free(key); return -1; }
            c.p = endp;
        } else if (strcmp(key, "annotations") == 0 && c.p < c.end && *c.p == '{') {
            c.p++;
            for (;;) {
                ws(&c);
                if (c.p < c.end && *c.p == '}') { c.p++; break; }
                char *akey = NULL;
                size_t alen;
                if (string(&c, &akey, &alen)) { free(key); return -1; }
                ws(&c);
                if (c.p >= c.end || *c.p++ != ':') { free(akey); free(key); return -1; }
                ws(&c);
                int mine = strcmp(akey, ANNOTATION) == 0;
                free(akey);
                if (mine && !*rules) {
                    if (string(&c, rules, rules_len)) { free(key); return -1; }
                } else if (skip(&c)) {
                    free(key);
                    return -1;
                }
                ws(&c);
                if (c.p < c.end && *c.p == ',') c.p++;
            }
        } else if (skip(&c)) {
            free(key);
            return -1;
        }
        free(key);
        ws(&c);
        if (c.p < c.end && *c.p == ',') { c.p++; continue; }
        if (c.p < c.end && *c.p == '}') return 0;
        return -1;
    }
}

/* ---- the slow path: the Python hook, with the same arguments and state ------------------------ */

static void python_hook(char **argv, const char *state, size_t len) {
    char self[PATH_MAX], py[PATH_MAX + 16], pattern[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) _exit(1);
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    snprintf(py, sizeof py, "%s/python3", self);
    const char *python = access(py, X_OK) == 0 ? py : "/usr/bin/python3";
    snprintf(pattern, sizeof pattern, "%s/../lib/python3*/*-packages/sandbox/runtime/nethook.py", self);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        dprintf(2, "sandbox-nethook: the sandbox package is not installed beside %s\n", self);
        _exit(1);
    }
    char *sp = strdup(g.gl_pathv[0]);
    sp[strlen(sp) - strlen("/sandbox/runtime/nethook.py")] = 0;
    int fds[2];
    if (pipe(fds) != 0) _exit(1);
    pid_t child = fork();
    if (child == 0) { /* feed the state to the Python hook's stdin */
        close(fds[0]);
        for (size_t off = 0; off < len;) {
            ssize_t w = write(fds[1], state + off, len - off);
            if (w <= 0) _exit(1);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(fds[1]);
    dup2(fds[0], 0);
    char *args[] = {(char *)python, "-I", "-S", "-c", (char *)py_hook, sp, argv[1], argv[2], argv[3], argv[3] ? argv[4] : NULL, NULL};
    execv(python, args);
    dprintf(2, "sandbox-nethook: cannot execute %s: %s\n", python, strerror(errno));
    _exit(1);
}

/* ---- the fast path ---------------------------------------------------------------------------- */

static int same_ns(struct stat *a, const char *path) {
    struct stat b;
    return stat(path, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* 0 when the rules were loaded; anything else: let the Python hook decide */
static int fast_load(const char *want, const char *runtime_netns, const char *state, size_t len) {
    unsigned long long rdev = 0, rino = 0;
    if (runtime_netns && sscanf(runtime_netns, "%llu:%llu", &rdev, &rino) != 2) return -1;
    long pid = 0;
    char *rules = NULL;
    size_t rules_len = 0;
    if (parse_state(state, len, &pid, &rules, &rules_len) || pid <= 0 || !rules) return -1;
    char got[65];
    sha256_hex((const unsigned char *)rules, rules_len, got);
    if (strcmp(got, want) != 0 || strlen(rules) != rules_len) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/ns/net", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat target, now;
    if (fd < 0 || fstat(fd, &target) != 0) return -1;
    /* never the host's (init's) nor the one sandbox-runc started in (--runtime-netns; else the hook's
     * own): see nethook.enter_network_namespace */
    if (same_ns(&target, "/proc/1/ns/net")) return -1;
    if (runtime_netns ? (target.st_dev == rdev && target.st_ino == rino) : same_ns(&target, "/proc/self/ns/net"))
        return -1;
    void *lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return -1;
    void *(*ctx_new)(uint32_t) = (void *(*)(uint32_t))dlsym(lib, "nft_ctx_new");
    void (*set_flags)(void *, unsigned) = (void (*)(void *, unsigned))dlsym(lib, "nft_ctx_output_set_flags");
    int (*buffer_error)(void *) = (int (*)(void *))dlsym(lib, "nft_ctx_buffer_error");
    int (*run)(void *, const char *) = (int (*)(void *, const char *))dlsym(lib, "nft_run_cmd_from_buffer");
    if (!ctx_new || !set_flags || !buffer_error || !run) return -1;
    /* into the container's namespace before libnftables opens its netlink socket */
    if (setns(fd, CLONE_NEWNET) != 0 || stat("/proc/self/ns/net", &now) != 0 || now.st_ino != target.st_ino ||
        now.st_dev != target.st_dev)
        return -1;
    close(fd);
    void *ctx = ctx_new(0);
    if (!ctx) return -1;
    set_flags(ctx, NFT_CTX_OUTPUT_JSON);
    buffer_error(ctx); /* quiet: the Python hook reports */
    return run(ctx, rules) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if ((argc != 3 && argc != 5) || strcmp(argv[1], "--sha256") != 0 || strlen(argv[2]) != 64 ||
        (argc == 5 && strcmp(argv[3], "--runtime-netns") != 0)) {
        dprintf(2, "sandbox-nethook: usage: sandbox-nethook --sha256 HEX [--runtime-netns DEV:INO] (state on stdin)\n");
        return 1;
    }
    const char *runtime_netns = argc == 5 ? argv[4] : NULL;
    char *state = malloc(MAX_STATE + 1);
    size_t len = 0;
    if (!state) return 1;
    for (;;) {
        ssize_t n = read(0, state + len, MAX_STATE + 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len > MAX_STATE) {
            dprintf(2, "sandbox-nethook: the container state on stdin is too large\n");
            return 1;
        }
    }
    state[len] = 0;
    /* try in a child, so that a failure leaves this process in the runtime's namespace for the
     * slow path (which enters the container's itself) */
    pid_t child = fork();
    if (child < 0) python_hook(argv, state, len);
    if (child == 0) _exit(fast_load(argv[2], runtime_netns, state, len) == 0 ? 0 : 1);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    python_hook(argv, state, len);
    return 1;
}
