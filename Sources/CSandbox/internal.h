/* Helpers shared by the launcher's C files: all async-signal-safe, no allocation. */
#ifndef CSANDBOX_INTERNAL_H
#define CSANDBOX_INTERNAL_H
#include <stddef.h>
#include <sys/types.h>

#define SBX_PATH_MAX 4096
/* Exit code of a sandbox whose setup failed; the parent reports the stage instead. */
#define SBX_EXIT_SETUP 125

/* All of buf, retried on EINTR: 0 or -errno (errno untouched, for pid 1). */
long sbx_write_all(int fd, const void *buf, size_t len);
/* dst = a + b; -1 if it does not fit (ENAMETOOLONG to the caller; errno is
 * not touched, so processes that share sandboxd's memory may call it). */
int sbx_concat(char *dst, size_t cap, const char *a, const char *b);
/* Decimal of v into buf (no terminator needed by callers, but one is written); returns length. */
int sbx_format_int(char *buf, size_t cap, long v);
/* "/proc/<pid>/<name>" */
void sbx_format_proc_path(char *buf, size_t cap, pid_t pid, const char *name);

/* sendmsg of `len` bytes with up to SBX_MAX_SEND_FDS descriptors (SCM_RIGHTS),
 * retried on EINTR, without SIGPIPE. 0 if all bytes went, else -1 (errno set);
 * sbx_send_raw returns -errno instead and leaves errno alone (for pid 1). */
#define SBX_MAX_SEND_FDS 4
int sbx_send(int sock, const void *buf, size_t len, const int *fds, int n_fds);
long sbx_send_raw(int sock, const void *buf, size_t len, const int *fds, int n_fds);
/* recvmsg of up to `len` bytes and up to max_fds descriptors (close-on-exec;
 * any beyond are closed), retried on EINTR: bytes received, 0 at EOF, or
 * -errno; errno untouched. */
long sbx_recv_raw(int sock, void *buf, size_t len, int *fds, int max_fds, int *n_fds);

/* The cores this thread may run on, but the one it runs on now. For a
 * helper (janitor, finisher) that sandboxd wakes just before it exits: woken
 * by a socket or pipe, a task is placed on the waker's core (a synchronous
 * wake-up) and runs before it, so the helper's work, the mount tree's
 * teardown included, would delay sandboxd's exit by as much. Returns 0, or
 * -1 when there is no other core. */
struct sbx_cpu_mask { unsigned long bits[16]; };
int sbx_other_cores(struct sbx_cpu_mask *out);

/* A system call that returns -errno instead of setting errno: for processes
 * that share sandboxd's memory and thread-local storage (pid 1 and the
 * command until its execve, the janitor, the finisher), where a libc wrapper
 * would write sandboxd's errno. */
static inline long sbx_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    ret = x0;
#else
#error "sandboxd's launcher needs a raw system call stub for this architecture"
#endif
    return ret;
}

static inline long sbx_sys(long n, long a, long b, long c, long d) { return sbx_sys6(n, a, b, c, d, 0, 0); }

/* clone3 whose child starts on the stack that `args` names, runs fn(arg) and
 * exits with its result; for a child that shares the caller's memory
 * (CLONE_VM), which cannot return through the caller's frames. Returns the
 * child's pid in the parent, or -errno. */
struct clone_args;
long sbx_clone_with_stack(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
#endif
