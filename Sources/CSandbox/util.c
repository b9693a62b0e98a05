#define _GNU_SOURCE
#include "csandbox.h"
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/landlock.h>

long sbx_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        long w = sbx_sys(SYS_write, fd, (long)p, (long)len, 0);
        if (w == -EINTR) continue;
        if (w < 0) return w;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The child of sbx_clone_with_stack: the kernel leaves the caller's registers
 * but the stack pointer, so fn and arg travel in registers the system call
 * preserves. The child's first frame has no return address (its end is exit). */
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl sbx_clone_with_stack\n"
        ".type sbx_clone_with_stack,@function\n"
        "sbx_clone_with_stack:\n"      /* rdi args, rsi size, rdx fn, rcx arg */
        "    mov %rcx, %r8\n"          /* rcx is clobbered by syscall; r8 and rdx are not */
        "    mov $435, %eax\n"         /* SYS_clone3 */
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jz 1f\n"
        "    ret\n"
        "1:  xor %ebp, %ebp\n"
        "    mov %r8, %rdi\n"
        "    call *%rdx\n"
        "    mov %eax, %edi\n"
        "    mov $60, %eax\n"          /* SYS_exit */
        "    syscall\n"
        "    hlt\n"
        ".size sbx_clone_with_stack, .-sbx_clone_with_stack\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl sbx_clone_with_stack\n"
        ".type sbx_clone_with_stack,%function\n"
        "sbx_clone_with_stack:\n"      /* x0 args, x1 size, x2 fn, x3 arg: svc preserves all but x0 */
        "    mov x8, #435\n"
        "    svc #0\n"
        "    cbz x0, 1f\n"
        "    ret\n"
        "1:  mov x29, #0\n"
        "    mov x30, #0\n"
        "    mov x0, x3\n"
        "    blr x2\n"
        "    mov x8, #93\n"             /* SYS_exit */
        "    svc #0\n"
        "    brk #0\n"
        ".size sbx_clone_with_stack, .-sbx_clone_with_stack\n");
#else
#error "sbx_clone_with_stack has no stub for this architecture"
#endif

int sbx_concat(char *dst, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + lb + 1 > cap) return -1;
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb + 1);
    return 0;
}

int sbx_format_int(char *buf, size_t cap, long v)
{
    char tmp[24];
    int n = 0, neg = v < 0;
    unsigned long u = neg ? (unsigned long)(-v) : (unsigned long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u && n < (int)sizeof tmp);
    int len = 0;
    if (neg && (size_t)len + 1 < cap) buf[len++] = '-';
    while (n > 0 && (size_t)len + 1 < cap) buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

void sbx_format_proc_path(char *buf, size_t cap, pid_t pid, const char *name)
{
    char num[24];
    sbx_format_int(num, sizeof num, pid);
    char tmp[64];
    if (sbx_concat(tmp, sizeof tmp, "/proc/", num) < 0 || sbx_concat(buf, cap, tmp, "/") < 0) {
        buf[0] = '\0';
        return;
    }
    size_t l = strlen(buf);
    sbx_concat(buf + l, cap - l, "", name);
}

const char *sbx_stage_name(int32_t stage)
{
    switch (stage) {
    case SBX_STAGE_NONE: return "none";
    case SBX_STAGE_SOCKETPAIR: return "socketpair()";
    case SBX_STAGE_NETNS: return "entering the prepared network namespace (setns)";
    case SBX_STAGE_CLONE: return "clone3() of the namespaces";
    case SBX_STAGE_UID_MAP: return "writing uid_map";
    case SBX_STAGE_GID_MAP: return "writing gid_map";
    case SBX_STAGE_SETGROUPS_FILE: return "writing setgroups";
    case SBX_STAGE_IDMAP: return "idmapped mount (open_tree/mount_setattr)";
    case SBX_STAGE_CGROUP_JOIN: return "joining the cgroups (v1 tasks)";
    case SBX_STAGE_SYNC: return "parent/child sync";
    case SBX_STAGE_SETID_SETUP: return "setresuid() to the namespace root";
    case SBX_STAGE_DUMPABLE: return "prctl(PR_SET_DUMPABLE, 0)";
    case SBX_STAGE_PROPAGATION: return "making mounts private";
    case SBX_STAGE_STAGING_TMPFS: return "staging tmpfs";
    case SBX_STAGE_PIVOT_STAGING: return "pivot_root() into staging";
    case SBX_STAGE_MOUNT_OP: return "mount";
    case SBX_STAGE_PIVOT_ROOT: return "pivot_root() into the new root";
    case SBX_STAGE_HOSTNAME: return "sethostname()";
    case SBX_STAGE_LOOPBACK: return "bringing up lo";
    case SBX_STAGE_CGROUPNS: return "unshare(CLONE_NEWCGROUP)";
    case SBX_STAGE_PTY: return "pty allocation";
    case SBX_STAGE_FORK: return "fork of the command";
    case SBX_STAGE_SETSID: return "setsid()";
    case SBX_STAGE_CTTY: return "controlling terminal";
    case SBX_STAGE_RLIMIT: return "setrlimit()";
    case SBX_STAGE_SETGROUPS: return "setgroups()";
    case SBX_STAGE_SETGID: return "setresgid()";
    case SBX_STAGE_SETUID: return "setresuid()";
    case SBX_STAGE_CAPBSET: return "dropping the capability bounding set";
    case SBX_STAGE_CAPSET: return "capset()";
    case SBX_STAGE_NO_NEW_PRIVS: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case SBX_STAGE_CLOSE_FDS: return "close_range()";
    case SBX_STAGE_CHDIR: return "chdir() to the workdir";
    case SBX_STAGE_SECCOMP: return "loading the seccomp filter";
    case SBX_STAGE_EXECVE: return "execve()";
    default: return "unknown stage";
    }
}

int sbx_landlock_abi(void)
{
    return (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
}

int sbx_memfd(const char *name)
{
    return memfd_create(name, MFD_CLOEXEC);
}

int sbx_signalfd(const sigset_t *mask)
{
    return signalfd(-1, mask, SFD_CLOEXEC);
}

int sbx_read_signal(int fd)
{
    struct signalfd_siginfo si;
    ssize_t r = read(fd, &si, sizeof si);
    return r == (ssize_t)sizeof si ? (int)si.ssi_signo : -1;
}

uint32_t sbx_clone_namespaces(void)
{
    return CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
}

int64_t sbx_mount_id(const char *path)
{
    struct statx stx;
    if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) < 0) return -1;
    if (!(stx.stx_mask & STATX_MNT_ID)) { errno = ENOSYS; return -1; }
    return (int64_t)stx.stx_mnt_id;
}

int64_t sbx_fs_magic(const char *path)
{
    struct statfs st;
    if (statfs(path, &st) < 0) return -1;
    return (int64_t)st.f_type;
}

int sbx_probe_open_tree(void)
{
    /* open_tree without OPEN_TREE_CLONE needs no privilege: it tells whether the syscall exists. */
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLOEXEC);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

#include <link.h>
#include <elf.h>

struct build_id_search { char *out; size_t cap; int len; };

static int find_build_id(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct build_id_search *s = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *n;
            const unsigned char *desc = (const unsigned char *)name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0
                && n->n_descsz * 2 + 1 <= s->cap) {
                static const char hex[] = "0123456789abcdef";
                for (size_t k = 0; k < n->n_descsz; k++) {
                    s->out[2 * k] = hex[desc[k] >> 4];
                    s->out[2 * k + 1] = hex[desc[k] & 15];
                }
                s->out[2 * n->n_descsz] = 0;
                s->len = (int)(2 * n->n_descsz);
                return 1;
            }
            p = (const char *)desc + ((n->n_descsz + 3) & ~3u);
        }
    }
    return 1; /* only the first object: the executable */
}

int sbx_build_id(char *out, size_t cap)
{
    struct build_id_search s = { out, cap, -1 };
    dl_iterate_phdr(find_build_id, &s);
    return s.len;
}

int sbx_other_cores(struct sbx_cpu_mask *out)
{
    cpu_set_t set;
    int here = sched_getcpu();
    if (here < 0 || sched_getaffinity(0, sizeof set, &set) != 0 || !CPU_ISSET(here, &set) || CPU_COUNT(&set) < 2) return -1;
    CPU_CLR(here, &set);
    _Static_assert(sizeof set <= sizeof out->bits, "cpu_set_t fits");
    memset(out, 0, sizeof *out);
    memcpy(out->bits, &set, sizeof set);
    return 0;
}

long sbx_send_raw(int sock, const void *buf, size_t len, const int *fds, int n_fds)
{
    if (n_fds < 0 || n_fds > SBX_MAX_SEND_FDS) return -EINVAL;
    char cbuf[CMSG_SPACE(sizeof(int) * SBX_MAX_SEND_FDS)] __attribute__((aligned(8)));
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = { (void *)buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (n_fds > 0) {
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n_fds);
    }
    long r;
    do r = sbx_sys(SYS_sendmsg, sock, (long)&mh, MSG_NOSIGNAL, 0); while (r == -EINTR);
    return r < 0 ? r : r == (long)len ? 0 : -EPIPE;
}

long sbx_recv_raw(int sock, void *buf, size_t len, int *fds, int max_fds, int *n_fds)
{
    char cbuf[CMSG_SPACE(sizeof(int) * SBX_MAX_SEND_FDS)] __attribute__((aligned(8)));
    struct iovec iov = { buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    long r;
    do r = sbx_sys(SYS_recvmsg, sock, (long)&mh, MSG_CMSG_CLOEXEC, 0); while (r == -EINTR);
    *n_fds = 0;
    if (r <= 0) return r;
    /* One SCM_RIGHTS header at most is ever sent (sbx_send_raw); no
     * CMSG_NXTHDR, a libc call. */
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int k = max_fds; k < n; k++) sbx_sys(SYS_close, ((int *)CMSG_DATA(cm))[k], 0, 0, 0);
        if (n > max_fds) n = max_fds;
        if (n > 0) memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)n);
        *n_fds = n;
    }
    return r;
}

int sbx_send(int sock, const void *buf, size_t len, const int *fds, int n_fds)
{
    long r = sbx_send_raw(sock, buf, len, fds, n_fds);
    if (r < 0) errno = (int)-r;
    return r < 0 ? -1 : 0;
}
