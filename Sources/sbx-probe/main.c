/*
 * sbx-probe: tries one thing inside a sandbox and says how it went.
 *
 *   sbx-probe SUBCOMMAND [ARGS...]
 *
 * Every subcommand prints one result line and exits 0 when the action
 * succeeded, 1 when it was refused:
 *
 *   OK [details]
 *   DENIED errno=EPERM [details]
 *
 * Exit 2 means the probe itself was misused or its own setup failed (the line
 * then starts with ERROR). Some subcommands are expected to die instead
 * (int80, x32: SIGSYS; alloc: SIGKILL from the OOM killer; raise).
 *
 *   syscall NAME            one refused (or, for clock_*, allowed) syscall, harmless arguments
 *   tiocsti [--high-bits] [--fd N]   push a byte into a terminal we control (new pty or fd N)
 *   tioclinux               TIOCLINUX on a new pty
 *   int80 | x32             getpid through the i386 / x32 ABI: expected SIGSYS
 *   fds | caps | pids | getpid | ifaces | getenv NAME | environ-grep TEXT
 *   read PATH | write PATH [DATA] | append PATH [DATA] | mkdir PATH | unlink PATH | stat PATH | chown PATH U G
 *   fill PATH [MAX_MB]      write until an error
 *   connect IPV4 PORT | loopback
 *   kill PID [SIG] | setrlimit-raise | sleep S | spin S | fork-bomb [MAX] | alloc MB [HOLD_S] | raise SIG | exit N
 *
 * The integration tests bind this binary into sandboxes at /probe. Never run
 * the abusive subcommands on the host: they are meant to be refused by the
 * sandbox, and some of them would succeed for root outside one.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef TIOCSTI
#define TIOCSTI 0x5412
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

static const char *errname(int e)
{
    switch (e) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR)
    E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
    E(EMLINK) E(EPIPE) E(ERANGE) E(ENOSYS) E(ELOOP) E(ENOKEY) E(EOPNOTSUPP)
    E(EADDRINUSE) E(EADDRNOTAVAIL) E(ENETDOWN) E(ENETUNREACH) E(ECONNREFUSED) E(ETIMEDOUT)
    E(EHOSTUNREACH) E(EAFNOSUPPORT) E(EPROTONOSUPPORT) E(ENOTCONN) E(ECONNRESET) E(EDQUOT)
    E(ENAMETOOLONG) E(ENOTEMPTY) E(EOVERFLOW) E(EUSERS) E(ENOTSOCK)
#undef E
    default: return "E?";
    }
}

/* Result helpers: `ok` and `denied` print the result line and return the exit code. */
static int ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int ok(const char *fmt, ...)
{
    va_list ap;
    fputs("OK", stdout);
    if (fmt && *fmt) {
        fputc(' ', stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

static int denied(int e, const char *detail)
{
    printf("DENIED errno=%s%s%s\n", errname(e), detail ? " " : "", detail ? detail : "");
    fflush(stdout);
    return 1;
}

/* A syscall's return value as a result: >= 0 succeeded, < 0 refused (errno). */
static int result(long r)
{
    return r >= 0 ? ok("ret=%ld", r) : denied(errno, NULL);
}

static int usage(const char *why)
{
    printf("ERROR usage: %s\n", why);
    return 2;
}

static int setup_error(const char *what)
{
    printf("ERROR %s: errno=%s\n", what, errname(errno));
    fflush(stdout);
    return 2;
}

/* ------------------------------------------------------------------ syscalls */

/* Child of a successful clone: leave at once. */
static long reap_if_child(long pid)
{
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, __WALL);
    return pid;
}

static int try_syscall(const char *name)
{
    errno = 0;
    if (!strcmp(name, "mount")) return result(mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(name, "umount2")) return result(umount2("/tmp", MNT_DETACH));
    if (!strcmp(name, "unshare-user")) return result(unshare(CLONE_NEWUSER));
    if (!strcmp(name, "unshare-net")) return result(unshare(CLONE_NEWNET));
    if (!strcmp(name, "unshare-ns")) return result(unshare(CLONE_NEWNS));
    if (!strcmp(name, "setns")) {
        int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return setup_error("open /proc/self/ns/net");
        return result(setns(fd, CLONE_NEWNET));
    }
    if (!strcmp(name, "clone-newuser"))
        return result(reap_if_child(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0)));
    if (!strcmp(name, "clone-newns"))
        return result(reap_if_child(syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, NULL, NULL, 0)));
    if (!strcmp(name, "clone-plain"))
        return result(reap_if_child(syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0)));
    if (!strcmp(name, "clone3")) {
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.exit_signal = SIGCHLD;
        return result(reap_if_child(syscall(SYS_clone3, &ca, sizeof ca)));
    }
    if (!strcmp(name, "keyctl"))
        return result(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    if (!strcmp(name, "add_key"))
        return result(syscall(SYS_add_key, "user", "sbx-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    if (!strcmp(name, "request_key"))
        return result(syscall(SYS_request_key, "user", "sbx-probe-none", NULL, 0));
    if (!strcmp(name, "bpf")) {
        /* BPF_MAP_CREATE of a 1-entry array map. */
        union { struct { uint32_t type, key_size, value_size, max_entries; } m; char pad[128]; } attr;
        memset(&attr, 0, sizeof attr);
        attr.m.type = 2; /* BPF_MAP_TYPE_ARRAY */
        attr.m.key_size = 4;
        attr.m.value_size = 4;
        attr.m.max_entries = 1;
        return result(syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, &attr, sizeof attr));
    }
    if (!strcmp(name, "perf_event_open")) {
        struct perf_event_attr pa;
        memset(&pa, 0, sizeof pa);
        pa.type = PERF_TYPE_SOFTWARE;
        pa.size = sizeof pa;
        pa.config = PERF_COUNT_SW_TASK_CLOCK;
        pa.disabled = 1;
        pa.exclude_kernel = 1;
        pa.exclude_hv = 1;
        return result(syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0));
    }
    if (!strcmp(name, "userfaultfd")) return result(syscall(SYS_userfaultfd, O_CLOEXEC));
    if (!strcmp(name, "io_uring_setup")) {
        char params[120];
        memset(params, 0, sizeof params);
        return result(syscall(SYS_io_uring_setup, 1, params));
    }
    if (!strcmp(name, "kexec_load")) return result(syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(name, "init_module")) return result(syscall(SYS_init_module, NULL, 0, ""));
    if (!strcmp(name, "finit_module")) return result(syscall(SYS_finit_module, -1, "", 0));
    if (!strcmp(name, "delete_module")) return result(syscall(SYS_delete_module, "sbx_probe_none", O_NONBLOCK));
    if (!strcmp(name, "reboot"))
        return result(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, NULL));
    if (!strcmp(name, "swapon")) return result(syscall(SYS_swapon, "/sbx-probe-none", 0));
    if (!strcmp(name, "swapoff")) return result(syscall(SYS_swapoff, "/sbx-probe-none"));
    if (!strcmp(name, "name_to_handle_at") || !strcmp(name, "open_by_handle_at")) {
        struct { unsigned int bytes; int type; unsigned char h[128]; } fh;
        memset(&fh, 0, sizeof fh);
        fh.bytes = sizeof fh.h;
        int mount_id = 0;
        if (!strcmp(name, "name_to_handle_at"))
            return result(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh, &mount_id, 0));
        fh.bytes = 8;
        fh.type = 1; /* FILEID_INO32_GEN: inode 2 (a root directory), generation 0 */
        fh.h[0] = 2;
        int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (mfd < 0) return setup_error("open /");
        return result(syscall(SYS_open_by_handle_at, mfd, &fh, O_RDONLY));
    }
    if (!strcmp(name, "ptrace")) return result(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, NULL, NULL));
    if (!strcmp(name, "ptrace-attach"))
        return result(syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, getppid(), NULL, NULL));
    if (!strcmp(name, "process_vm_readv") || !strcmp(name, "process_vm_writev")) {
        char src[8] = "secret", dst[8];
        struct iovec l = { dst, sizeof dst }, r = { src, sizeof src };
        if (!strcmp(name, "process_vm_readv"))
            return result(syscall(SYS_process_vm_readv, getpid(), &l, 1, &r, 1, 0));
        return result(syscall(SYS_process_vm_writev, getpid(), &r, 1, &l, 1, 0));
    }
    if (!strcmp(name, "pivot_root")) return result(syscall(SYS_pivot_root, "/tmp", "/tmp"));
    if (!strcmp(name, "chroot")) return result(chroot("/tmp"));
    if (!strcmp(name, "fsopen")) return result(syscall(SYS_fsopen, "tmpfs", 0));
    if (!strcmp(name, "open_tree")) return result(syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */));
    if (!strcmp(name, "sethostname")) return result(sethostname("probe", 5));
    if (!strcmp(name, "syslog")) return result(syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0));
    if (!strcmp(name, "acct")) return result(syscall(SYS_acct, NULL));
    if (!strcmp(name, "kcmp")) return result(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0));
    /* Ordinary calls a build needs: must succeed. */
    if (!strcmp(name, "clock_gettime")) {
        struct timespec ts;
        return result(syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts));
    }
    if (!strcmp(name, "clock_getres")) {
        struct timespec ts;
        return result(syscall(SYS_clock_getres, CLOCK_MONOTONIC, &ts));
    }
    if (!strcmp(name, "clock_nanosleep")) {
        struct timespec ts = { 0, 1000000 };
        return result(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL));
    }
    if (!strcmp(name, "nanosleep")) {
        struct timespec ts = { 0, 1000000 };
        return result(syscall(SYS_nanosleep, &ts, NULL));
    }
    return usage("syscall: unknown name");
}

/* ---------------------------------------------------------------- terminals */

static int open_pty(int *master_out)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) return -1;
    char *name = ptsname(master);
    if (!name) return -1;
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) return -1;
    *master_out = master;
    return slave;
}

/* TIOCSTI on a terminal that is our controlling one, so that the kernel
 * itself would allow it (it refuses TIOCSTI on other terminals): a denial can
 * then only come from the sandbox's filter. `fd` < 0: a new pty. */
static int try_tiocsti(int high_bits, int fd)
{
    int master = -1;
    int tty = fd >= 0 ? fd : open_pty(&master);
    if (tty < 0) return setup_error("pty");
    /* Control: an ordinary tty ioctl on the same descriptor goes through. */
    struct winsize ws;
    if (ioctl(tty, TIOCGWINSZ, &ws) < 0) return setup_error("TIOCGWINSZ");
    /* Already our controlling terminal (--tty), or make it so. */
    pid_t tsid = 0;
    int ctty = ioctl(tty, TIOCGSID, &tsid) == 0 && tsid == getsid(0);
    if (!ctty) {
        setsid(); /* fails harmlessly when we already lead a session */
        ctty = ioctl(tty, TIOCSCTTY, 0) == 0;
    }
    char detail[32];
    snprintf(detail, sizeof detail, "ctty=%s", ctty ? "yes" : "no");
    char c = '#';
    unsigned long req = TIOCSTI;
    if (high_bits) req |= 0x100000000ul; /* the kernel reads the request as 32 bits */
    long r = syscall(SYS_ioctl, tty, req, &c);
    if (r < 0) return denied(errno, detail);
    return ok("injected %s", detail);
}

static int try_tioclinux(void)
{
    int master;
    int slave = open_pty(&master);
    if (slave < 0) return setup_error("pty");
    char sub = 6; /* TIOCL_GETSHIFTSTATE: a read; on a pty the tty layer says ENOTTY/EINVAL */
    long r = syscall(SYS_ioctl, slave, (unsigned long)TIOCLINUX, &sub);
    return r < 0 ? denied(errno, NULL) : ok("ret=%ld", r);
}

/* ------------------------------------------------------------- foreign ABIs */

static int try_int80(void)
{
    long ret;
    /* i386 getpid (20) through the 32-bit entry point. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    printf("NOT-KILLED ret=%ld\n", ret);
    return 0;
}

static int try_x32(void)
{
    long r = syscall(0x40000000L | SYS_getpid);
    printf("NOT-KILLED ret=%ld errno=%s\n", r, r < 0 ? errname(errno) : "0");
    return 0;
}

/* ------------------------------------------------------------- descriptors */

static int list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return setup_error("opendir /proc/self/fd");
    int self = dirfd(d);
    char line[4096] = "";
    size_t len = 0;
    int extra = 0;
    struct dirent *e;
    /* Sorted output: collect numbers into a bitmap first. */
    static unsigned char seen[65536];
    int max = -1;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == self || fd < 0 || fd >= 65536) continue;
        seen[fd] = 1;
        if (fd > max) max = fd;
    }
    closedir(d);
    for (int fd = 0; fd <= max; fd++) {
        if (!seen[fd]) continue;
        if (fd > 2) extra++;
        len += (size_t)snprintf(line + len, len < sizeof line ? sizeof line - len : 0, "%s%d", len ? " " : "", fd);
        if (len >= sizeof line) break;
    }
    printf("FDS %s\n", line);
    return extra ? 1 : 0;
}

/* ------------------------------------------------------------ capabilities */

static int show_caps(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return setup_error("open /proc/self/status");
    char line[512];
    static const char *const keys[] = { "Uid:", "Gid:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
                                        "NoNewPrivs:", "Seccomp:", "Seccomp_filters:" };
    while (fgets(line, sizeof line, f)) {
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            if (!strncmp(line, keys[i], strlen(keys[i]))) fputs(line, stdout);
        }
    }
    fclose(f);
    return 0;
}

/* ------------------------------------------------------------------- files */

static int do_write(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return denied(errno, "stage=open");
    size_t n = strlen(data);
    if (write(fd, data, n) != (ssize_t)n) return denied(errno, "stage=write");
    if (close(fd) < 0) return denied(errno, "stage=close");
    return ok("wrote=%zu", n);
}

/* Append without creating or truncating: for files that exist. */
static int do_append(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return denied(errno, "stage=open");
    size_t n = strlen(data);
    if (write(fd, data, n) != (ssize_t)n) return denied(errno, "stage=write");
    close(fd);
    return ok("wrote=%zu", n);
}

static int do_read(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return denied(errno, "stage=open");
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) return denied(errno, "stage=read");
    close(fd);
    printf("OK len=%zd data=", n);
    for (ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\n') fputs("\\n", stdout);
        else if (ch == '\\') fputs("\\\\", stdout);
        else if (ch < 32 || ch >= 127) printf("\\x%02x", ch);
        else fputc(ch, stdout);
    }
    fputc('\n', stdout);
    return 0;
}

/* Write 1 MiB chunks to PATH until an error, at most `max_mb`. */
static int do_fill(const char *path, long max_mb)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return denied(errno, "stage=open");
    static char chunk[1 << 20];
    memset(chunk, 'f', sizeof chunk);
    long long total = 0;
    for (long i = 0; i < max_mb; i++) {
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w < 0) {
            int e = errno;
            char detail[64];
            snprintf(detail, sizeof detail, "bytes=%lld", total);
            unlink(path);
            return denied(e, detail);
        }
        total += w;
        if (w < (ssize_t)sizeof chunk) {
            /* Short write: the next one reports why. */
            continue;
        }
    }
    unlink(path);
    return ok("bytes=%lld", total);
}

/* ----------------------------------------------------------------- network */

static int do_connect(const char *host, const char *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return denied(errno, "stage=socket");
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return usage("connect HOST PORT (IPv4 address)");
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) return ok("connected");
    if (errno != EINPROGRESS) return denied(errno, "stage=connect");
    struct pollfd p = { s, POLLOUT, 0 };
    int n = poll(&p, 1, 3000);
    if (n == 0) return denied(ETIMEDOUT, "stage=poll");
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return denied(err, "stage=connect");
    return ok("connected");
}

/* Listen on 127.0.0.1, connect to it and exchange a message: loopback works. */
static int do_loopback(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0) return denied(errno, "stage=socket");
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0) return denied(errno, "stage=bind");
    if (listen(l, 1) < 0) return denied(errno, "stage=listen");
    if (getsockname(l, (struct sockaddr *)&sa, &len) < 0) return denied(errno, "stage=getsockname");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) return denied(errno, "stage=socket");
    if (connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) return denied(errno, "stage=connect");
    int a = accept(l, NULL, NULL);
    if (a < 0) return denied(errno, "stage=accept");
    if (write(c, "ping", 4) != 4) return denied(errno, "stage=write");
    char buf[8] = "";
    if (read(a, buf, sizeof buf - 1) != 4 || strcmp(buf, "ping")) return denied(errno ? errno : EIO, "stage=read");
    return ok("port=%d", ntohs(sa.sin_port));
}

static int list_ifaces(void)
{
    FILE *f = fopen("/proc/net/dev", "re");
    if (!f) return setup_error("open /proc/net/dev");
    char line[512], names[1024] = "";
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = '\0';
        char *name = line;
        while (*name == ' ') name++;
        if (strlen(names) + strlen(name) + 2 < sizeof names) {
            if (n++) strcat(names, " ");
            strcat(names, name);
        }
    }
    fclose(f);
    printf("IFACES %s\n", names);
    return 0;
}

/* --------------------------------------------------------------- processes */

static int list_pids(void)
{
    DIR *d = opendir("/proc");
    if (!d) return setup_error("opendir /proc");
    struct dirent *e;
    int pids[4096], n = 0;
    while ((e = readdir(d)) && n < 4096) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        if (*end == '\0' && v > 0) pids[n++] = (int)v;
    }
    closedir(d);
    /* Insertion sort: tiny lists. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && pids[j - 1] > pids[j]; j--) { int t = pids[j]; pids[j] = pids[j - 1]; pids[j - 1] = t; }
    printf("PIDS");
    for (int i = 0; i < n; i++) printf(" %d", pids[i]);
    printf("\n");
    return 0;
}

/* Look for NEEDLE in every readable /proc/PID/environ. */
static int grep_environ(const char *needle)
{
    DIR *d = opendir("/proc");
    if (!d) return setup_error("opendir /proc");
    struct dirent *e;
    int readable = 0, unreadable = 0, found = 0;
    char found_in[256] = "";
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/environ", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) { unreadable++; continue; }
        static char buf[1 << 16];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n < 0) { unreadable++; continue; }
        readable++;
        buf[n] = '\0';
        if (memmem(buf, (size_t)n, needle, strlen(needle))) {
            found++;
            size_t at = strlen(found_in);
            snprintf(found_in + at, sizeof found_in - at, "%s%ld", at ? "," : "", pid);
        }
    }
    closedir(d);
    if (found) {
        printf("FOUND pids=%s readable=%d unreadable=%d\n", found_in, readable, unreadable);
        return 0;
    }
    printf("ABSENT readable=%d unreadable=%d\n", readable, unreadable);
    return 1;
}

static int sleep_seconds(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (syscall(SYS_nanosleep, &ts, &ts) < 0 && errno == EINTR) {}
    return ok("slept");
}

/* Burn CPU for `s` seconds of wall-clock time. */
static int spin(double s)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    volatile unsigned long n = 0;
    do {
        for (int i = 0; i < 100000; i++) n++;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < s);
    return ok("spun");
}

/* Fork until refused (at most `max`), then kill and reap the children. */
static int fork_bomb(int max)
{
    pid_t *kids = calloc((size_t)max, sizeof *kids);
    if (!kids) return setup_error("calloc");
    int n = 0, err = 0;
    for (; n < max; n++) {
        pid_t p = fork();
        if (p == 0) {
            for (;;) pause();
        }
        if (p < 0) { err = errno; break; }
        kids[n] = p;
    }
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
    char detail[64];
    snprintf(detail, sizeof detail, "forked=%d", n);
    if (err) return denied(err, detail);
    return ok("forked=%d", n);
}

/* Allocate and touch `mb` MiB, one MiB at a time; then hold it `hold_s` seconds. */
static int alloc_mb(long mb, long hold_s)
{
    for (long i = 0; i < mb; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            char detail[64];
            snprintf(detail, sizeof detail, "allocated_mb=%ld", i);
            return denied(ENOMEM, detail);
        }
        memset(p, (int)i, 1 << 20);
    }
    if (hold_s > 0) sleep((unsigned)hold_s);
    return ok("allocated_mb=%ld", mb);
}

static int parse_signal(const char *s)
{
    if (!strcmp(s, "INT")) return SIGINT;
    if (!strcmp(s, "TERM")) return SIGTERM;
    if (!strcmp(s, "KILL")) return SIGKILL;
    if (!strcmp(s, "HUP")) return SIGHUP;
    if (!strcmp(s, "USR1")) return SIGUSR1;
    if (!strcmp(s, "SEGV")) return SIGSEGV;
    return atoi(s);
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return usage("sbx-probe SUBCOMMAND [ARGS...]");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "syscall") && argc >= 3) return try_syscall(argv[2]);
    if (!strcmp(cmd, "tiocsti")) {
        int high = 0, fd = -1;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--high-bits")) high = 1;
            else if (!strcmp(argv[i], "--fd") && i + 1 < argc) fd = atoi(argv[++i]);
            else return usage("tiocsti [--high-bits] [--fd N]");
        }
        return try_tiocsti(high, fd);
    }
    if (!strcmp(cmd, "tioclinux")) return try_tioclinux();
    if (!strcmp(cmd, "int80")) return try_int80();
    if (!strcmp(cmd, "x32")) return try_x32();
    if (!strcmp(cmd, "fds")) return list_fds();
    if (!strcmp(cmd, "caps")) return show_caps();
    if (!strcmp(cmd, "write") && argc >= 3) return do_write(argv[2], argc >= 4 ? argv[3] : "probe\n");
    if (!strcmp(cmd, "append") && argc >= 3) return do_append(argv[2], argc >= 4 ? argv[3] : "probe\n");
    if (!strcmp(cmd, "read") && argc >= 3) return do_read(argv[2]);
    if (!strcmp(cmd, "mkdir") && argc >= 3) return mkdir(argv[2], 0755) == 0 ? ok(NULL) : denied(errno, NULL);
    if (!strcmp(cmd, "unlink") && argc >= 3) return unlink(argv[2]) == 0 ? ok(NULL) : denied(errno, NULL);
    if (!strcmp(cmd, "fill") && argc >= 3) return do_fill(argv[2], argc >= 4 ? atol(argv[3]) : 512);
    if (!strcmp(cmd, "connect") && argc >= 4) return do_connect(argv[2], argv[3]);
    if (!strcmp(cmd, "loopback")) return do_loopback();
    if (!strcmp(cmd, "ifaces")) return list_ifaces();
    if (!strcmp(cmd, "pids")) return list_pids();
    if (!strcmp(cmd, "getpid")) { printf("PID %d PPID %d\n", getpid(), getppid()); return 0; }
    if (!strcmp(cmd, "getenv") && argc >= 3) {
        const char *v = getenv(argv[2]);
        if (!v) { printf("UNSET\n"); return 1; }
        printf("SET %s\n", v);
        return 0;
    }
    if (!strcmp(cmd, "environ-grep") && argc >= 3) return grep_environ(argv[2]);
    if (!strcmp(cmd, "kill") && argc >= 3)
        return kill((pid_t)atoi(argv[2]), argc >= 4 ? parse_signal(argv[3]) : 0) == 0 ? ok(NULL) : denied(errno, NULL);
    if (!strcmp(cmd, "setrlimit-raise")) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return setup_error("getrlimit");
        rl.rlim_max = rl.rlim_max + 1024;
        rl.rlim_cur = rl.rlim_max;
        return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? ok("nofile=%llu", (unsigned long long)rl.rlim_max) : denied(errno, NULL);
    }
    if (!strcmp(cmd, "chown") && argc >= 5)
        return chown(argv[2], (uid_t)atoi(argv[3]), (gid_t)atoi(argv[4])) == 0 ? ok(NULL) : denied(errno, NULL);
    if (!strcmp(cmd, "stat") && argc >= 3) {
        struct stat st;
        if (stat(argv[2], &st) < 0) return denied(errno, NULL);
        return ok("uid=%u gid=%u mode=%o size=%lld", st.st_uid, st.st_gid, st.st_mode & 07777, (long long)st.st_size);
    }
    if (!strcmp(cmd, "sleep") && argc >= 3) return sleep_seconds(atof(argv[2]));
    if (!strcmp(cmd, "spin") && argc >= 3) return spin(atof(argv[2]));
    if (!strcmp(cmd, "fork-bomb")) return fork_bomb(argc >= 3 ? atoi(argv[2]) : 2000);
    if (!strcmp(cmd, "alloc") && argc >= 3) return alloc_mb(atol(argv[2]), argc >= 4 ? atol(argv[3]) : 0);
    if (!strcmp(cmd, "raise") && argc >= 3) {
        int sig = parse_signal(argv[2]);
        signal(sig, SIG_DFL);
        raise(sig);
        printf("NOT-KILLED\n");
        return 0;
    }
    if (!strcmp(cmd, "exit") && argc >= 3) return atoi(argv[2]);
    return usage("unknown subcommand or missing arguments");
}
