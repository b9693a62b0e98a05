/*
 * The cgroup janitor. cgroup directories are the one thing a sandbox leaves on
 * the host that the kernel does not clean up when its processes die, so a
 * SIGKILLed sandboxd would leak them. The janitor is started before the
 * sandbox and holds one end of a socket pair whose other end only sandboxd
 * holds. What it reads there decides what it does:
 *  - 'd' (dismissed): sandboxd removed the groups itself; exit.
 *  - 'r' (hand-off): the sandbox's processes are gone and sandboxd is
 *    returning without waiting; remove the groups, then close the sandbox's
 *    mount namespace if it came with the message (the last reference: the
 *    mount tree is torn down here), then exit;
 *  - EOF: sandboxd died; once the sandbox's processes (killed by PDEATHSIG)
 *    are gone, remove the groups.
 *
 * It is a process that shares sandboxd's memory (CLONE_VM, its own small
 * stack), not a fork: copying the page tables of a 14 MB Swift binary cost
 * every launch ~0.2 ms on the critical path and more when the copy exited.
 * Sharing memory has two consequences the code below respects:
 *  - everything it reads (the paths, its stack) is allocated here before the
 *    clone and freed only after the janitor has been reaped;
 *  - it shares sandboxd's thread-local storage, so it must not write errno:
 *    it makes raw system calls only (sbx_sys, internal.h), never libc wrappers.
 */
#define _GNU_SOURCE
#include "csandbox.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JANITOR_STACK (64 * 1024)

struct janitor_args {
    int rfd;            /* its end of the socket pair */
    const char *const *dirs; /* in the block allocated by sbx_janitor_start */
};

static int remove_dir(const char *dir)
{
    long r = sbx_sys(SYS_unlinkat, AT_FDCWD, (long)dir, AT_REMOVEDIR, 0);
    return r == 0 || r == -ENOENT ? 0 : -1;
}

static void kill_members(const char *dir)
{
    char path[SBX_PATH_MAX], buf[4096];
    if (sbx_concat(path, sizeof path, dir, "/cgroup.procs") < 0) return;
    long fd = sbx_sys(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return;
    long n = sbx_sys(SYS_read, fd, (long)buf, sizeof buf - 1, 0);
    sbx_sys(SYS_close, fd, 0, 0, 0);
    if (n <= 0) return;
    buf[n] = '\0';
    long v = 0;
    int have = 0;
    for (char *p = buf; *p; p++) {
        if (*p >= '0' && *p <= '9') { v = v * 10 + (*p - '0'); have = 1; }
        else { if (have && v > 1) sbx_sys(SYS_kill, v, SIGKILL, 0, 0); v = 0; have = 0; }
    }
    if (have && v > 1) sbx_sys(SYS_kill, v, SIGKILL, 0, 0);
}

/* One byte from sandboxd, and the descriptor that may come with it (else -1
 * in *fd). Returns what recvmsg returned: 1, 0 on EOF, or -errno. */
static long receive(int sock, char *c, long *fd)
{
    int got = -1, n = 0;
    long r = sbx_recv_raw(sock, c, 1, &got, 1, &n);
    if (n == 1) *fd = got;
    return r;
}

static int janitor_main(void *p)
{
    const struct janitor_args *args = p;
    sbx_sys(SYS_setsid, 0, 0, 0, 0);
    /* Its own signal mask (a task's own, CLONE_VM or not): block everything
     * that could stop it early. A blocked signal stays pending and never
     * runs its default action; one call, where ignoring each signal took 63
     * while the sandbox starts on the same two cores. */
    unsigned long all = ~0UL;
    sbx_sys(SYS_rt_sigprocmask, SIG_BLOCK, (long)&all, 0, sizeof all);
    /* Its own descriptor table (no CLONE_FILES): keep only the socket, stdio on /dev/null. */
    long devnull = sbx_sys(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDWR | O_CLOEXEC, 0);
    for (int i = 0; i < 3; i++) if (devnull >= 0 && devnull != i) sbx_sys(SYS_dup3, devnull, i, 0, 0);
    if (args->rfd > 3) sbx_sys(SYS_close_range, 3, args->rfd - 1, 0, 0);
    sbx_sys(SYS_close_range, args->rfd + 1, ~0u, 0, 0);

    char c = 0;
    long mntns = -1;
    long r = receive(args->rfd, &c, &mntns);
    if (r == 1 && c == 'd') return 0;
    /* Handed the namespace: sandboxd closes its own copy, then the socket.
     * Wait for that EOF, so that this process's close is the last one, the
     * one that pays for the tree's teardown. */
    if (mntns >= 0) {
        char more;
        long e;
        do e = sbx_sys(SYS_read, args->rfd, (long)&more, 1, 0); while (e > 0 || e == -EINTR);
    }
    /* Handed off, the groups are empty and the first pass removes them. Else
     * sandboxd is gone without cleaning up and its sandbox dies with it
     * (PDEATHSIG): wait for the groups to empty, then remove them. Give up
     * after ~10 s. */
    for (int attempt = 0; attempt < 1000; attempt++) {
        int left = 0;
        for (const char *const *d = args->dirs; *d; d++) {
            if (remove_dir(*d) == 0) continue;
            left = 1;
            kill_members(*d);
        }
        /* After the first pass, whatever it left: the tree's teardown runs
         * as this close returns to user space. */
        if (mntns >= 0) sbx_sys(SYS_close, mntns, 0, 0, 0);
        mntns = -1;
        if (!left) break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        sbx_sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, (long)&ts, 0);
    }
    return 0;
}

int sbx_janitor_start(const char *const *dirs, struct sbx_janitor *out)
{
    out->fd = -1;
    out->pid = -1;
    out->memory = NULL;
    /* One block: the arguments, the pointer array, the strings, then the stack. */
    size_t n = 0, bytes = 0;
    for (const char *const *d = dirs; *d; d++, n++) bytes += strlen(*d) + 1;
    size_t head = sizeof(struct janitor_args) + (n + 1) * sizeof(char *) + bytes;
    head = (head + 4095) & ~(size_t)4095;
    size_t size = head + JANITOR_STACK;
    char *block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (block == MAP_FAILED) return -1;
    struct janitor_args *args = (struct janitor_args *)block;
    const char **copies = (const char **)(block + sizeof *args);
    char *strings = (char *)(copies + n + 1);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(dirs[i]) + 1;
        memcpy(strings, dirs[i], l);
        copies[i] = strings;
        strings += l;
    }
    copies[n] = NULL;
    args->dirs = copies;

    /* A socket pair rather than a pipe: a hand-off carries a descriptor. */
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) {
        munmap(block, size);
        return -1;
    }
    /* Above stdio: the janitor puts /dev/null on 0-2 (a sandboxd started with
     * one of them closed would otherwise hand it the socket there). */
    if (p[0] < 3) {
        int moved = fcntl(p[0], F_DUPFD_CLOEXEC, 3);
        close(p[0]);
        if (moved < 0) { close(p[1]); munmap(block, size); return -1; }
        p[0] = moved;
    }
    args->rfd = p[0];
    /* exit_signal 0: no SIGCHLD to sandboxd; dismiss reaps it with __WCLONE,
     * and if sandboxd is killed init reaps it. */
    pid_t pid = clone(janitor_main, block + size, CLONE_VM, args);
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        munmap(block, size);
        return -1;
    }
    out->fd = p[1];
    out->pid = pid;
    out->memory = block;
    out->memory_size = size;
    return 0;
}

void sbx_janitor_release(struct sbx_janitor *j)
{
    if (j->fd < 0) return;
    char d = 'd';
    sbx_send(j->fd, &d, 1, NULL, 0); /* no SIGPIPE: a janitor killed by someone must not take sandboxd with it */
    close(j->fd);
    j->fd = -1;
}

void sbx_janitor_reap(struct sbx_janitor *j)
{
    if (!j->memory) return;
    /* Its stack and paths are ours: free them only once it has exited. */
    while (waitpid(j->pid, NULL, __WCLONE) < 0 && errno == EINTR) {}
    munmap(j->memory, j->memory_size);
    j->memory = NULL;
}

void sbx_janitor_dismiss(struct sbx_janitor *j)
{
    sbx_janitor_release(j);
    sbx_janitor_reap(j);
}

int sbx_janitor_hand_off(struct sbx_janitor *j, int mntns_fd)
{
    if (j->fd < 0) return -1;
    struct sbx_cpu_mask others;
    if (sbx_other_cores(&others) == 0) sched_setaffinity(j->pid, sizeof others.bits, (cpu_set_t *)others.bits);
    /* Without the descriptor the groups are still the janitor's to remove
     * (EOF means the same to it); the namespace stays the caller's. */
    char r = 'r';
    int took = mntns_fd >= 0 ? sbx_send(j->fd, &r, 1, &mntns_fd, 1) : -1;
    if (took != 0) sbx_send(j->fd, &r, 1, NULL, 0);
    /* Ours first, then the socket: its EOF tells the janitor its copy is the last. */
    if (took == 0) close(mntns_fd);
    close(j->fd);
    /* Its block stays mapped for as long as this process lives: the janitor
     * runs on it, and nothing here waits for it to finish. */
    j->fd = -1;
    j->memory = NULL;
    return took;
}
