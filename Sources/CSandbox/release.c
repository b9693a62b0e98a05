/*
 * Releasing a sandbox off the critical path.
 *
 * When the last process of a sandbox exits, the kernel unmounts its whole
 * tree in that process's exit: 0.3-0.6 ms for a plain root, more with
 * persistent overlays, whose unmount syncs the upper layers' filesystem.
 * The supervisor waits for that exit, so all of it used to sit between the
 * command's end and sandboxd's answer. sbx_spawn therefore keeps a
 * descriptor of the namespace; pid 1's exit then only drops a reference, and
 * the final close runs the teardown in the closing thread's return to user
 * space. Three ways to pay for it:
 *
 *  - in the janitor, handed the namespace with the emptied cgroups just
 *    before sandboxd returns (`sandboxd exec`: sbx_janitor_hand_off), or,
 *    with no cgroups and so no janitor, in a finisher (below) that has
 *    nothing else to do;
 *  - in sandboxd, after the cgroups are removed, while the dismissed janitor
 *    exits on the other core (Supervisor.run with Teardown.beforeReturn,
 *    or no cgroups and so no janitor);
 *  - sbx_finisher_start: in a process that outlives sandboxd (a named
 *    sandbox's `exec`). It closes the namespace (the overlay's sync), fsyncs
 *    the run's end records, renames the manifest into place and only then
 *    drops the sandbox's lock by exiting. sandboxd answers without waiting
 *    for the disk; the next command on the sandbox waits for the lock.
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
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * The finisher shares sandboxd's memory (CLONE_VM), like the janitor, and for
 * the same reason: a fork would copy the page tables of a 14 MB Swift binary
 * on the critical path. So it makes raw system calls only (sbx_sys), and
 * reads nothing but its own block: arguments, strings and stack in one
 * mapping, which it unmaps itself as its last act (finisher_exit). It is
 * started through a short-lived middle process (CLONE_VFORK, so sandboxd
 * waits for it, then reaps it) so that its parent is init or the nearest
 * subreaper, never a long-lived sandboxd caller that would not reap it;
 * a caller about to exit (`direct`) starts it as its own child instead,
 * sparing its last moments a clone, an exit and a wait.
 */
#define FINISHER_STACK (64 * 1024)

struct finisher_args {
    int gate_fd;           /* read end of a pipe: EOF once sandboxd has closed its copies */
    int mntns_fd;
    int lock_fd;
    int n_sync;
    const int *sync_fds;   /* in the block */
    const char *rename_from, *rename_to;
    void *block;
    size_t block_size;
    int steer;             /* run on `cores` (sbx_other_cores) */
    struct sbx_cpu_mask cores;
};

/* munmap(block) then exit(0), touching no memory in between: the stack is in block. */
__attribute__((noreturn)) static void finisher_exit(void *block, size_t size)
{
#if defined(__x86_64__)
    __asm__ volatile("syscall\n\t"
                     "xor %%edi, %%edi\n\t"
                     "mov %[exit], %%eax\n\t"
                     "syscall"
                     :
                     : "a"(SYS_munmap), "D"(block), "S"(size), [exit] "i"(SYS_exit)
                     : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_munmap;
    register long x0 __asm__("x0") = (long)block;
    register long x1 __asm__("x1") = (long)size;
    __asm__ volatile("svc 0\n\t"
                     "mov x0, #0\n\t"
                     "mov x8, %[exit]\n\t"
                     "svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), [exit] "i"(SYS_exit)
                     : "memory");
#else
#error "sandboxd's finisher needs an unmap-and-exit stub for this architecture"
#endif
    __builtin_unreachable();
}

static int keeps(const struct finisher_args *a, long fd)
{
    if (fd == a->gate_fd || fd == a->mntns_fd || fd == a->lock_fd) return 1;
    for (int i = 0; i < a->n_sync; i++) if (fd == a->sync_fds[i]) return 1;
    return 0;
}

static int finisher_main(void *p)
{
    const struct finisher_args *a = p;
    sbx_sys(SYS_setsid, 0, 0, 0, 0);
    sbx_sys(SYS_prctl, PR_SET_NAME, (long)"sbx-finish", 0, 0);
    if (a->steer) sbx_sys(SYS_sched_setaffinity, 0, sizeof a->cores.bits, (long)a->cores.bits, 0);
    /* Nothing but SIGKILL ends it early: a ^C after the command has ended is not for it. */
    unsigned long all = ~0UL;
    sbx_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, sizeof all);
    /* Its own descriptor table: keep only what it works on. Holding the
     * caller's stdout or a pipe would make `out=$(sandboxd exec ...)` wait. */
    long highest = a->gate_fd;
    if (a->mntns_fd > highest) highest = a->mntns_fd;
    if (a->lock_fd > highest) highest = a->lock_fd;
    for (int i = 0; i < a->n_sync; i++) if (a->sync_fds[i] > highest) highest = a->sync_fds[i];
    long from = 0;
    for (long fd = 0; fd <= highest; fd++) {
        if (!keeps(a, fd)) continue;
        if (fd > from) sbx_sys(SYS_close_range, from, fd - 1, 0, 0);
        from = fd + 1;
    }
    sbx_sys(SYS_close_range, from, ~0U, 0, 0);
    /* Only once sandboxd has closed its copy of the namespace is this
     * process's close the last one, the one that pays for the teardown. */
    char c;
    while (sbx_sys(SYS_read, a->gate_fd, (long)&c, 1, 0) == -EINTR) {}
    sbx_sys(SYS_close, a->gate_fd, 0, 0, 0);

    /* The sandbox's mount tree goes first: overlayfs syncs its upper layers'
     * filesystem at unmount, so the records below never claim a run whose
     * root changes are not on disk. */
    if (a->mntns_fd >= 0) sbx_sys(SYS_close, a->mntns_fd, 0, 0, 0);
    int failed = 0;
    for (int i = 0; i < a->n_sync; i++) {
        long r;
        do r = sbx_sys(SYS_fsync, a->sync_fds[i], 0, 0, 0); while (r == -EINTR);
        if (r != 0) failed = 1;
    }
    if (a->rename_from) {
        /* A failed fsync leaves the previous manifest, which the durable log
         * brings up to date at the next session. */
        if (failed || sbx_sys(SYS_renameat, AT_FDCWD, (long)a->rename_from, AT_FDCWD, (long)a->rename_to) != 0)
            sbx_sys(SYS_unlinkat, AT_FDCWD, (long)a->rename_from, 0, 0);
    }
    /* The lock is dropped when this process's descriptors close, at exit. */
    finisher_exit(a->block, a->block_size);
}

static int middle_main(void *p)
{
    const struct finisher_args *a = p;
    /* exit_signal SIGCHLD: its parent will be init or a subreaper, which reap. */
    long pid = clone(finisher_main, (char *)a->block + a->block_size, CLONE_VM | SIGCHLD, p);
    sbx_sys(SYS_exit, pid > 0 ? 0 : 1, 0, 0, 0);
    return 0;
}

static char *copy_string(char **cursor, const char *s)
{
    if (!s) return NULL;
    size_t l = strlen(s) + 1;
    char *out = memcpy(*cursor, s, l);
    *cursor += l;
    return out;
}

int sbx_finisher_start(const struct sbx_finish *f)
{
    size_t head = sizeof(struct finisher_args) + (size_t)f->n_sync * sizeof(int) +
                  (f->rename_from ? strlen(f->rename_from) + strlen(f->rename_to) + 2 : 0);
    head = (head + 4095) & ~(size_t)4095;
    size_t size = head + FINISHER_STACK;
    char *block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (block == MAP_FAILED) return -1;
    struct finisher_args *a = (struct finisher_args *)block;
    int *fds = (int *)(block + sizeof *a);
    for (int i = 0; i < f->n_sync; i++) fds[i] = f->sync_fds[i];
    char *cursor = (char *)(fds + f->n_sync);
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0) {
        munmap(block, size);
        return -1;
    }
    *a = (struct finisher_args){
        .gate_fd = gate[0], .mntns_fd = f->mntns_fd, .lock_fd = f->lock_fd, .n_sync = f->n_sync, .sync_fds = fds,
        .rename_from = copy_string(&cursor, f->rename_from), .rename_to = copy_string(&cursor, f->rename_to),
        .block = block, .block_size = size,
    };
    a->steer = sbx_other_cores(&a->cores) == 0;

    int started, e = EAGAIN;
    if (f->direct) {
        /* No exit signal: the caller, gone by then, is not told. */
        started = clone(finisher_main, block + size, CLONE_VM, a) > 0;
        if (!started) e = errno;
    } else {
        /* The middle process runs on this stack frame's buffer: CLONE_VFORK
         * keeps this thread stopped until it has exited. */
        char middle_stack[16 * 1024] __attribute__((aligned(16)));
        pid_t middle = clone(middle_main, middle_stack + sizeof middle_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
        int status = 0;
        if (middle < 0) e = errno;
        else while (waitpid(middle, &status, 0) < 0 && errno == EINTR) {}
        started = middle > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    if (!started) {
        /* No finisher: the block is still ours, the work the caller's. */
        close(gate[0]);
        close(gate[1]);
        munmap(block, size);
        errno = e;
        return -1;
    }
    /* The descriptors are the finisher's now: close ours (not unlocking the
     * lock, which would unlock the finisher's too), then open the gate. */
    close(gate[0]);
    if (f->mntns_fd >= 0) close(f->mntns_fd);
    for (int i = 0; i < f->n_sync; i++) close(f->sync_fds[i]);
    if (f->lock_fd >= 0) close(f->lock_fd);
    close(gate[1]);
    return 0;
}
