/*
 * sbx_spawn: clone -> (parent: uid/gid maps, idmapped mounts, go)
 *            -> pid 1: assemble the root, pivot, hostname, lo, pty, start
 *                      the command (CLONE_VM|CLONE_VFORK), reap
 *            -> command: join the cgroups, session, ids, capabilities,
 *                        no_new_privs, seccomp, execve
 * sbx_spawn_finish: the parent hands pid 1 the cgroup v1 groups it made while
 *            the root was built, for the command, then waits for the execve
 *
 * Rules for everything that runs in the child: raw system calls (sbx_sys)
 * and stack buffers only, no errno, no libc but string functions (see "child
 * side" below). Identity changes are bare system calls too: glibc's setuid
 * family would try to broadcast to threads that do not exist after clone().
 */
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>

#include "internal.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#include <time.h>
#ifdef SBX_TRACE_TIMING
static void T(const char *what){ struct timespec ts; sbx_sys(SYS_clock_gettime,CLOCK_MONOTONIC,(long)&ts,0,0); char b[128]; int n=0; long us=(ts.tv_sec%100)*1000000+ts.tv_nsec/1000; n=sbx_format_int(b,64,us); b[n++]=' '; size_t l=strlen(what); memcpy(b+n,what,l); n+=l; b[n++]='\n'; sbx_sys(SYS_write,2,(long)b,n,0);}
#else
#define T(what) ((void)0)
#endif
enum { MSG_GO = 1, MSG_PTY = 2, MSG_STATUS = 3, MSG_JOIN = 4 };
struct sbx_msg { int32_t type; int32_t value; };

#define MAX_MSG_FDS SBX_MAX_SEND_FDS
#define STAGING_NEWROOT "/newroot"
#define STAGING_OLDROOT "/oldroot"
#define EMPTY_DIR "/.sbx-empty-dir"
#define EMPTY_FILE "/.sbx-empty-file"

/* ---------------------------------------------------------------- child side */

/*
 * Pid 1 runs in sandboxd's own memory when it can (SBX_PLAN_SHARED_MEMORY,
 * can_share_memory): a copy of a 14 MB Swift process cost every launch
 * its page tables at clone, copy-on-write faults on both sides afterwards and
 * the copy's teardown at exit (~0.25 ms in all). The command is started with
 * CLONE_VFORK from there and shares it too until its execve. Both also share
 * sandboxd's thread-local storage, so nothing on this side may write errno:
 * system calls go through sbx_sys (internal.h), which returns -errno, and
 * the error a stage fails with is kept in the context (`err`). The only libc
 * functions used are the string ones.
 */
struct child_ctx {
    const struct sbx_plan *plan;
    int sync_fd;
    int err_fd;
    int newroot_fd;
    const int *bind_fds; /* per op: detached tree opened by the parent, or -1 */
    int oldroot_fd;      /* /oldroot, opened when a bind is cloned here (SBX_PLAN_BINDS_IN_CHILD) */
    const cpu_set_t *cpus; /* sandboxd's CPU mask, to take back once set up (SBX_PLAN_OVERLAP), or NULL */
    int pty_slave;       /* the command's terminal, or -1 */
    int shared;          /* pid 1 runs in sandboxd's memory (SBX_PLAN_SHARED_MEMORY, taken) */
    _Atomic int32_t *cmd_tid;  /* with shared memory: cleared by the kernel at the command's execve or exit */
    int cg_fds[MAX_MSG_FDS];   /* cgroup v1 `tasks` files the command joins (SBX_PLAN_OVERLAP) */
    int n_cg;
    int err;             /* errno of the last failed call: this side's own errno */
};

/* Keeps the error of a failed call (r < 0 is -errno) for die(). */
static long ck(struct child_ctx *c, long r)
{
    if (r < 0) c->err = (int)-r;
    return r;
}

#define K(call) ck(c, (call))

static long k_openat(int dirfd, const char *path, int flags, int mode) { return sbx_sys(SYS_openat, dirfd, (long)path, flags, mode); }
static long k_close(int fd) { return sbx_sys(SYS_close, fd, 0, 0, 0); }
static long k_mkdirat(int dirfd, const char *path, int mode) { return sbx_sys(SYS_mkdirat, dirfd, (long)path, mode, 0); }
static long k_mount(const char *src, const char *target, const char *type, unsigned long flags, const void *data)
{
    return sbx_sys6(SYS_mount, (long)src, (long)target, (long)type, (long)flags, (long)data, 0);
}
static long k_chdir(const char *path) { return sbx_sys(SYS_chdir, (long)path, 0, 0, 0); }
static long k_prctl(int option, unsigned long a) { return sbx_sys6(SYS_prctl, option, (long)a, 0, 0, 0, 0); }
__attribute__((noreturn)) static void k_exit(int code) { for (;;) sbx_sys(SYS_exit_group, code, 0, 0, 0); }

static void report(int fd, int32_t stage, int32_t err, int32_t index)
{
    struct sbx_error e = { stage, err, index };
    sbx_write_all(fd, &e, sizeof e);
}

__attribute__((noreturn)) static void die(struct child_ctx *c, int32_t stage, int32_t index)
{
    report(c->err_fd, stage, c->err, index);
    k_exit(SBX_EXIT_SETUP);
}

/* die() with an error of our own making. */
__attribute__((noreturn)) static void die_with(struct child_ctx *c, int err, int32_t stage, int32_t index)
{
    c->err = err;
    die(c, stage, index);
}

/* mkdir -p of `path` (absolute, inside the new root) relative to rootfd; 0 or -errno. */
static long mkdir_p(int rootfd, const char *path, int mode)
{
    char buf[SBX_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf) return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (buf[1] != '\0') {
                long r = k_mkdirat(rootfd, buf + 1, mode);
                if (r < 0 && r != -EEXIST) return r;
            }
            if (saved == '\0') break;
            *p = saved;
        }
    }
    return 0;
}

/* Create an empty file at `path` (parents too), for binding a file onto; 0 or -errno. */
static long touch_p(int rootfd, const char *path)
{
    char parent[SBX_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof parent) return -ENAMETOOLONG;
    memcpy(parent, path, n + 1);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        long r = mkdir_p(rootfd, parent, 0755);
        if (r < 0) return r;
    }
    long fd = k_openat(rootfd, path + 1, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0) return fd == -EEXIST ? 0 : fd;
    k_close((int)fd);
    return 0;
}

/* Open `path` inside the new root without following any symlink: a mount
 * target planted as a symlink by the sandboxed content cannot redirect a
 * mount. The descriptor, or -errno. */
static long open_target(int rootfd, const char *path)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC | O_NOFOLLOW,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    const char *rel = path[0] == '/' ? path + 1 : path;
    if (rel[0] == '\0') rel = ".";
    return sbx_sys(SYS_openat2, rootfd, (long)rel, (long)&how, sizeof how);
}

static long k_open_tree(int dirfd, const char *path, unsigned flags)
{
    return sbx_sys(SYS_open_tree, dirfd, (long)path, flags, 0);
}

static long set_attrs(int tree, uint64_t set)
{
    struct mount_attr attr = { .attr_set = set };
    return sbx_sys6(SYS_mount_setattr, tree, (long)"", AT_EMPTY_PATH | AT_RECURSIVE, (long)&attr, sizeof attr, 0);
}

/* Attach the detached mount `tree` on top of the object behind `target_fd`. */
static long attach(int tree, int target_fd)
{
    return sbx_sys6(SYS_move_mount, tree, (long)"", target_fd, (long)"", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH, 0);
}

/* The type of the object behind `fd` (S_IFMT bits), or -errno. */
static long file_type(int fd)
{
    struct statx st;
    long r = sbx_sys6(SYS_statx, fd, (long)"", AT_EMPTY_PATH, STATX_TYPE, (long)&st, 0);
    return r < 0 ? r : (long)(st.stx_mode & S_IFMT);
}

static uint64_t bind_attrs(uint32_t flags)
{
    uint64_t a = MOUNT_ATTR_NOSUID;
    if (!(flags & SBX_F_DEVICES)) a |= MOUNT_ATTR_NODEV;
    if (flags & SBX_F_RDONLY) a |= MOUNT_ATTR_RDONLY;
    return a;
}

/* Attach `tree` at `target` in the new root (made as a directory or an
 * empty file, as `tree` is), reached without following symlinks. */
static void attach_at(struct child_ctx *c, int idx, int tree, const char *target, int is_dir)
{
    if (K(is_dir ? mkdir_p(c->newroot_fd, target, 0755) : touch_p(c->newroot_fd, target)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    long fd = K(open_target(c->newroot_fd, target));
    if (fd < 0 || K(attach(tree, (int)fd)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    k_close(tree);
    k_close((int)fd);
}

/* A bind source opened inside the sandbox's mount namespace, for an
 * unprivileged caller (whose ids the sandbox has): the host path resolved
 * under /oldroot as on the host, absolute symlinks included. The tree, or -errno. */
static long open_host_tree(struct child_ctx *c, const char *path)
{
    if (c->oldroot_fd < 0) {
        long r = k_openat(AT_FDCWD, STAGING_OLDROOT, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (r < 0) return r;
        c->oldroot_fd = (int)r;
    }
    struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
    const char *rel = path[0] == '/' ? path + 1 : path;
    long fd = sbx_sys(SYS_openat2, c->oldroot_fd, (long)(rel[0] ? rel : "."), (long)&how, sizeof how);
    if (fd < 0) return fd;
    long tree = k_open_tree((int)fd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    k_close((int)fd);
    return tree;
}

static void op_bind(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    /* The parent opened the source (with the caller's view and rights) before
     * clone; an unprivileged caller's sandbox, whose ids are the caller's, opens
     * it here, in its own mount namespace. */
    long tree = c->bind_fds[idx];
    if (tree < 0 && (c->plan->flags & SBX_PLAN_BINDS_IN_CHILD)) {
        tree = K(open_host_tree(c, op->source));
        if (tree < 0 && tree != -ENOENT) die(c, SBX_STAGE_MOUNT_OP, idx);
    }
    if (tree < 0) {
        if (op->flags & SBX_F_OPTIONAL) return;
        die_with(c, ENOENT, SBX_STAGE_MOUNT_OP, idx);
    }
    long type = K(file_type((int)tree));
    if (type < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(set_attrs((int)tree, bind_attrs(op->flags))) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    attach_at(c, idx, (int)tree, op->target, type == S_IFDIR);
}

/* Mount a filesystem on a target reached without symlinks: fchdir into it and mount on ".". */
static void mount_fs_at(struct child_ctx *c, int idx, const char *target, const char *fstype,
                        unsigned long flags, const char *data)
{
    if (K(mkdir_p(c->newroot_fd, target, 0755)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    long fd = K(open_target(c->newroot_fd, target));
    if (fd < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(sbx_sys(SYS_fchdir, fd, 0, 0, 0)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(k_mount(fstype, ".", fstype, flags, data)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    k_close((int)fd);
}

/* dst = a + b, or die with ENAMETOOLONG. */
static void concat_or_die(struct child_ctx *c, int idx, char *dst, size_t cap, const char *a, const char *b)
{
    if (sbx_concat(dst, cap, a, b) < 0) die_with(c, ENAMETOOLONG, SBX_STAGE_MOUNT_OP, idx);
}

static void op_dev(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
    char tgt[SBX_PATH_MAX], src[SBX_PATH_MAX], sub[SBX_PATH_MAX];
    mount_fs_at(c, idx, op->target, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536,nr_inodes=64");
    concat_or_die(c, idx, sub, sizeof sub, op->target, "/");
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        concat_or_die(c, idx, tgt, sizeof tgt, sub, nodes[i]);
        if (K(touch_p(c->newroot_fd, tgt)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
        concat_or_die(c, idx, src, sizeof src, STAGING_OLDROOT "/dev/", nodes[i]);
        long target = K(open_target(c->newroot_fd, tgt));
        long tree = K(k_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
        if (target < 0 || tree < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
        if (K(set_attrs((int)tree, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)) < 0 || K(attach((int)tree, (int)target)) < 0)
            die(c, SBX_STAGE_MOUNT_OP, idx);
        k_close((int)tree);
        k_close((int)target);
    }
    concat_or_die(c, idx, tgt, sizeof tgt, op->target, "/pts");
    mount_fs_at(c, idx, tgt, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    concat_or_die(c, idx, tgt, sizeof tgt, op->target, "/shm");
    mount_fs_at(c, idx, tgt, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=67108864");
    static const char *const links[][2] = {
        { "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
        { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        concat_or_die(c, idx, tgt, sizeof tgt, sub, links[i][1]);
        if (K(sbx_sys(SYS_symlinkat, (long)links[i][0], c->newroot_fd, (long)(tgt + 1), 0)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    }
}

/* The target of a readonly or mask op, or -1 if it is absent and optional. */
static long open_op_target(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    long target = K(open_target(c->newroot_fd, op->target));
    /* ENOTDIR: a component is a file (a worktree's `.git` is one): absent too. */
    if (target < 0 && !((target == -ENOENT || target == -ENOTDIR) && (op->flags & SBX_F_OPTIONAL)))
        die(c, SBX_STAGE_MOUNT_OP, idx);
    return target < 0 ? -1 : target;
}

/* Clone the mount at `target` and put the clone, with `attrs`, back on top of it. */
static void op_readonly(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    long target = open_op_target(c, op, idx);
    if (target < 0) return;
    long tree = K(k_open_tree((int)target, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    if (tree < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(set_attrs((int)tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(attach((int)tree, (int)target)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    k_close((int)tree);
    k_close((int)target);
}

/* Cover `target` with an empty read-only directory or file, whichever it is. */
static void op_mask(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    long target = open_op_target(c, op, idx);
    if (target < 0) return;
    long type = K(file_type((int)target));
    if (type < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (type == S_IFLNK) die_with(c, ELOOP, SBX_STAGE_MOUNT_OP, idx);
    const char *empty = type == S_IFDIR ? EMPTY_DIR : EMPTY_FILE;
    long tree = K(k_open_tree(AT_FDCWD, empty, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (tree < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(set_attrs((int)tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)) < 0)
        die(c, SBX_STAGE_MOUNT_OP, idx);
    if (K(attach((int)tree, (int)target)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    k_close((int)tree);
    k_close((int)target);
}

/* The lower layer as the parent opened (and, as root, idmapped) it, attached
 * in the staging root so overlayfs can name it: host root's files then read
 * as the sandbox's root's, and copy-up can give them an owner the namespace
 * maps. Writes the path into `buf`. */
static void stage_lower(struct child_ctx *c, int idx, char *buf, size_t cap)
{
    char num[16];
    sbx_format_int(num, sizeof num, idx);
    concat_or_die(c, idx, buf, cap, "/.sbx-lower-", num);
    if (K(k_mkdirat(AT_FDCWD, buf, 0755)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    long target = K(k_openat(AT_FDCWD, buf, O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
    if (target < 0 || K(attach(c->bind_fds[idx], (int)target)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    k_close(c->bind_fds[idx]);
    k_close((int)target);
}

/* An overlay op's data is "UPPER\nWORK\nSUBDIR": the layers (host paths) and
 * the directory of the merged tree that goes at the target ("" for its root).
 * Length of the "UPPER\nWORK" part, or -1 if malformed. */
static int overlay_layers_len(const char *data)
{
    const char *nl = data ? strchr(data, '\n') : NULL;
    const char *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
    return nl2 ? (int)(nl2 - data) : -1;
}

/* The first op that names the same overlay (lower and layers) as op `i`:
 * ops sharing one are served by one overlayfs, mounted once. */
static uint32_t first_overlay_op(const struct sbx_plan *p, uint32_t i)
{
    const struct sbx_op *op = &p->ops[i];
    int len = overlay_layers_len(op->data);
    for (uint32_t j = 0; j < i; j++) {
        const struct sbx_op *o = &p->ops[j];
        if (o->kind == SBX_OP_OVERLAY && len >= 0 && overlay_layers_len(o->data) == len &&
            strcmp(o->source, op->source) == 0 && strncmp(o->data, op->data, (size_t)len) == 0)
            return j;
    }
    return i;
}

/* overlayfs mount options for the overlay of op `idx`: its lower layer as
 * the parent opened it (staged), or the host path under /oldroot. */
static void overlay_options(struct child_ctx *c, const struct sbx_op *op, int idx, char *opts, size_t cap)
{
    char lower[SBX_PATH_MAX], upper[SBX_PATH_MAX], work[SBX_PATH_MAX];
    char upper_host[SBX_PATH_MAX], work_host[SBX_PATH_MAX];
    const char *nl = strchr(op->data, '\n');
    size_t ul = (size_t)(nl - op->data), wl = (size_t)overlay_layers_len(op->data) - ul - 1;
    if (ul >= sizeof upper_host || wl >= sizeof work_host) die_with(c, ENAMETOOLONG, SBX_STAGE_MOUNT_OP, idx);
    memcpy(upper_host, op->data, ul);
    upper_host[ul] = '\0';
    memcpy(work_host, nl + 1, wl);
    work_host[wl] = '\0';
    if (c->bind_fds[idx] >= 0) stage_lower(c, idx, lower, sizeof lower);
    else concat_or_die(c, idx, lower, sizeof lower, STAGING_OLDROOT, op->source);
    concat_or_die(c, idx, upper, sizeof upper, STAGING_OLDROOT, upper_host);
    concat_or_die(c, idx, work, sizeof work, STAGING_OLDROOT, work_host);
    const char *parts[] = { "lowerdir=", lower, ",upperdir=", upper, ",workdir=", work, ",userxattr" };
    opts[0] = '\0';
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t l = strlen(opts);
        concat_or_die(c, idx, opts + l, cap - l, "", parts[i]);
    }
}

/* An overlay whose lower layer is a host directory and whose upper layer
 * persists in the sandbox's state: changes to the root outside the workdir
 * (installed tools) survive from one exec to the next. With SUBDIR "" the
 * overlay is mounted at the target itself; otherwise it is mounted once, by
 * the first op naming it, at /.sbx-overlay-FIRST in the staging root (where
 * the sandbox never sees it), and SUBDIR of it is bound at the target. */
static void op_overlay(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    int layers = overlay_layers_len(op->data);
    if (layers < 0) die_with(c, EINVAL, SBX_STAGE_MOUNT_OP, idx);
    const char *sub = op->data + layers + 1;
    char opts[3 * SBX_PATH_MAX + 64];
    if (*sub == '\0') {
        overlay_options(c, op, idx, opts, sizeof opts);
        mount_fs_at(c, idx, op->target, "overlay", MS_NOSUID | MS_NODEV, opts);
        return;
    }
    char at[64], num[16];
    uint32_t first = first_overlay_op(c->plan, (uint32_t)idx);
    sbx_format_int(num, sizeof num, (long)first);
    concat_or_die(c, idx, at, sizeof at, "/.sbx-overlay-", num);
    if (first == (uint32_t)idx) {
        overlay_options(c, op, idx, opts, sizeof opts);
        if (K(k_mkdirat(AT_FDCWD, at, 0755)) < 0 || K(k_mount("overlay", at, "overlay", MS_NOSUID | MS_NODEV, opts)) < 0)
            die(c, SBX_STAGE_MOUNT_OP, idx);
    }
    /* The directory is reached without symlinks: the upper layer's content
     * (an imported archive, say) cannot redirect the bind. */
    long merged = K(k_openat(AT_FDCWD, at, O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
    long dir = merged < 0 ? merged : K(open_target((int)merged, sub));
    if (merged >= 0) k_close((int)merged);
    if (dir < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    long tree = K(k_open_tree((int)dir, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    k_close((int)dir);
    if (tree < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    attach_at(c, idx, (int)tree, op->target, 1);
}

static void op_symlink(struct child_ctx *c, const struct sbx_op *op, int idx)
{
    char parent[SBX_PATH_MAX];
    size_t n = strlen(op->target);
    if (n >= sizeof parent) die_with(c, ENAMETOOLONG, SBX_STAGE_MOUNT_OP, idx);
    memcpy(parent, op->target, n + 1);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (K(mkdir_p(c->newroot_fd, parent, 0755)) < 0) die(c, SBX_STAGE_MOUNT_OP, idx);
    }
    long r = K(sbx_sys(SYS_symlinkat, (long)op->source, c->newroot_fd, (long)(op->target + 1), 0));
    if (r < 0 && r != -EEXIST) die(c, SBX_STAGE_MOUNT_OP, idx);
}

static void run_ops(struct child_ctx *c)
{
    const struct sbx_plan *p = c->plan;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        const struct sbx_op *op = &p->ops[i];
        switch (op->kind) {
        case SBX_OP_BIND: op_bind(c, op, (int)i); break;
        case SBX_OP_TMPFS:
            mount_fs_at(c, (int)i, op->target, "tmpfs", MS_NOSUID | MS_NODEV, op->data);
            break;
        case SBX_OP_PROC:
            mount_fs_at(c, (int)i, op->target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
            break;
        case SBX_OP_DEV: op_dev(c, op, (int)i); break;
        case SBX_OP_OVERLAY: op_overlay(c, op, (int)i); break;
        case SBX_OP_MASK: op_mask(c, op, (int)i); break;
        case SBX_OP_READONLY: op_readonly(c, op, (int)i); break;
        case SBX_OP_SYMLINK: op_symlink(c, op, (int)i); break;
        default: die_with(c, EINVAL, SBX_STAGE_MOUNT_OP, (int)i);
        }
    }
}

/* Build the root: a staging tmpfs becomes "/", the host root is reachable at
 * /oldroot while the new root is assembled at /newroot, then /newroot becomes
 * "/" and everything else is detached. */
static void assemble_root(struct child_ctx *c)
{
    const struct sbx_plan *p = c->plan;
    T("child: before private");
    if (K(k_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) < 0) die(c, SBX_STAGE_PROPAGATION, -1);
    T("child: private done");
    if (K(k_mount("tmpfs", p->staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1048576")) < 0)
        die(c, SBX_STAGE_STAGING_TMPFS, -1);
    if (K(k_chdir(p->staging)) < 0) die(c, SBX_STAGE_STAGING_TMPFS, -1);
    if (K(k_mkdirat(AT_FDCWD, "newroot", 0755)) < 0 || K(k_mkdirat(AT_FDCWD, "oldroot", 0755)) < 0 ||
        K(k_mkdirat(AT_FDCWD, ".sbx-empty-dir", 0555)) < 0)
        die(c, SBX_STAGE_STAGING_TMPFS, -1);
    long fd = K(k_openat(AT_FDCWD, ".sbx-empty-file", O_WRONLY | O_CREAT | O_CLOEXEC, 0444));
    if (fd < 0) die(c, SBX_STAGE_STAGING_TMPFS, -1);
    k_close((int)fd);
    if (K(sbx_sys(SYS_pivot_root, (long)".", (long)"oldroot", 0, 0)) < 0) die(c, SBX_STAGE_PIVOT_STAGING, -1);
    if (K(k_chdir("/")) < 0) die(c, SBX_STAGE_PIVOT_STAGING, -1);
    if (K(k_mount("tmpfs", STAGING_NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1048576")) < 0)
        die(c, SBX_STAGE_STAGING_TMPFS, -1);
    fd = K(k_openat(AT_FDCWD, STAGING_NEWROOT, O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
    if (fd < 0) die(c, SBX_STAGE_STAGING_TMPFS, -1);
    c->newroot_fd = (int)fd;

    T("child: staging ready");
    run_ops(c);
    T("child: ops done");
    /* Nothing of the host stays reachable once /oldroot is detached. */
    if (c->oldroot_fd >= 0) k_close(c->oldroot_fd);
    c->oldroot_fd = -1;

    /* The root tmpfs itself is read-only: only explicit mounts are writable. */
    struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
    if (K(sbx_sys6(SYS_mount_setattr, c->newroot_fd, (long)"", AT_EMPTY_PATH, (long)&ro, sizeof ro, 0)) < 0)
        die(c, SBX_STAGE_PIVOT_ROOT, -1);
    if (K(sbx_sys(SYS_umount2, (long)STAGING_OLDROOT, MNT_DETACH, 0, 0)) < 0) die(c, SBX_STAGE_PIVOT_ROOT, -1);
    if (K(k_chdir(STAGING_NEWROOT)) < 0) die(c, SBX_STAGE_PIVOT_ROOT, -1);
    if (K(sbx_sys(SYS_pivot_root, (long)".", (long)".", 0, 0)) < 0) die(c, SBX_STAGE_PIVOT_ROOT, -1);
    if (K(sbx_sys(SYS_umount2, (long)".", MNT_DETACH, 0, 0)) < 0) die(c, SBX_STAGE_PIVOT_ROOT, -1);
    if (K(k_chdir("/")) < 0) die(c, SBX_STAGE_PIVOT_ROOT, -1);
    k_close(c->newroot_fd);
    T("child: pivot done");
}

long sbx_loopback_up(void)
{
    long s = sbx_sys(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0, 0);
    if (s < 0) return s;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    long r = sbx_sys(SYS_ioctl, s, SIOCGIFFLAGS, (long)&ifr, 0);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = sbx_sys(SYS_ioctl, s, SIOCSIFFLAGS, (long)&ifr, 0);
    }
    k_close((int)s);
    return r;
}

static long set_caps(uint64_t keep)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = {
        { (uint32_t)keep, (uint32_t)keep, 0 },
        { (uint32_t)(keep >> 32), (uint32_t)(keep >> 32), 0 },
    };
    return sbx_sys(SYS_capset, (long)&h, (long)d, 0, 0);
}

/* Signal masks as the kernel's 64-bit word (bit N-1 for signal N). */
static long set_sigmask(int how, uint64_t mask)
{
    return sbx_sys(SYS_rt_sigprocmask, how, (long)&mask, 0, sizeof mask);
}

static uint64_t sigbit(int sig) { return 1ull << (sig - 1); }

/* The kernel's struct sigaction for rt_sigaction (glibc's differs in layout). */
struct k_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static long set_handler(int sig, void (*handler)(int))
{
    struct k_sigaction sa = { .handler = handler };
    return sbx_sys(SYS_rt_sigaction, sig, (long)&sa, 0, sizeof sa.mask);
}

/* The command: everything from here on applies to it and its descendants.
 * Started by pid 1 with CLONE_VFORK (start_command): sbx_clone_with_stack's
 * child function. */
static int exec_command(void *arg)
{
    struct child_ctx *c = arg;
    const struct sbx_plan *p = c->plan;
    /* Into the sandbox's cgroups (v1), before anything of the command's
     * runs, so all of it is inside; the command joins, not pid 1: pid 1
     * shares sandboxd's memory, and the OOM killer, which scores a process
     * by its memory and kills every process that shares a victim's, must
     * never choose it. Until its execve the command shares that memory too,
     * but the OOM killer passes over a vfork child that shares its parent's
     * (oom_badness, in_vfork). Then the cgroup namespace, rooted at those
     * groups. */
    for (int i = 0; i < c->n_cg; i++) {
        long w = K(sbx_sys(SYS_pwrite64, c->cg_fds[i], (long)"0", 1, 0));
        if (w != 1) { if (w >= 0) c->err = EIO; die(c, SBX_STAGE_CGROUP_JOIN, i); }
        k_close(c->cg_fds[i]);
    }
    if ((p->flags & SBX_PLAN_CGROUPNS) && K(sbx_sys(SYS_unshare, CLONE_NEWCGROUP, 0, 0, 0)) < 0) die(c, SBX_STAGE_CGROUPNS, -1);
    for (int s = 1; s < _NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        set_handler(s, SIG_DFL);
    }
    set_sigmask(SIG_SETMASK, 0);

    if (K(sbx_sys(SYS_setsid, 0, 0, 0, 0)) < 0) die(c, SBX_STAGE_SETSID, -1);
    int slave = c->pty_slave;
    if (slave >= 0) {
        for (int i = 0; i < 3; i++) {
            /* dup3 refuses equal descriptors; one already in place only loses close-on-exec. */
            long r = slave == i ? sbx_sys(SYS_fcntl, i, F_SETFD, 0, 0) : sbx_sys(SYS_dup3, slave, i, 0, 0);
            if (K(r) < 0) die(c, SBX_STAGE_CTTY, -1);
        }
        if (K(sbx_sys(SYS_ioctl, 0, TIOCSCTTY, 0, 0)) < 0) die(c, SBX_STAGE_CTTY, -1);
        if (slave > 2) k_close(slave);
    }
    for (uint32_t i = 0; i < p->n_rlimits; i++) {
        struct rlimit lim = { p->rlimits[i].soft, p->rlimits[i].hard };
        if (K(sbx_sys(SYS_prlimit64, 0, p->rlimits[i].resource, (long)&lim, 0)) < 0) die(c, SBX_STAGE_RLIMIT, (int)i);
    }
    if (!(p->flags & SBX_PLAN_SETGROUPS_DENY) && K(sbx_sys(SYS_setgroups, 0, 0, 0, 0)) < 0) die(c, SBX_STAGE_SETGROUPS, -1);
    /* Shrink the bounding set while we still hold CAP_SETPCAP; a later execve as
     * uid 0 can then gain nothing beyond `cap_keep`. */
    for (int cap = 0; cap < 64; cap++) {
        if (p->cap_keep & (1ull << cap)) continue;
        long r = K(k_prctl(PR_CAPBSET_DROP, (unsigned long)cap));
        if (r < 0 && r != -EINVAL) die(c, SBX_STAGE_CAPBSET, cap);
    }
    if (K(sbx_sys(SYS_setresgid, p->gid, p->gid, p->gid, 0)) < 0) die(c, SBX_STAGE_SETGID, -1);
    if (K(sbx_sys(SYS_setresuid, p->uid, p->uid, p->uid, 0)) < 0) die(c, SBX_STAGE_SETUID, -1);
    long r = K(sbx_sys6(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0));
    if (r < 0 && r != -EINVAL) die(c, SBX_STAGE_CAPSET, -1);
    if (K(set_caps(p->uid == 0 ? p->cap_keep : 0)) < 0) die(c, SBX_STAGE_CAPSET, -1);
    /* After the last change of ids, which resets it to fs.suid_dumpable: the
     * memory this runs in is pid 1's (sandboxd's when shared), and from the
     * execve on, the command must not read it through /proc/1. */
    if (K(k_prctl(PR_SET_DUMPABLE, 0)) < 0) die(c, SBX_STAGE_DUMPABLE, -1);
    if (K(k_prctl(PR_SET_NO_NEW_PRIVS, 1)) < 0) die(c, SBX_STAGE_NO_NEW_PRIVS, -1);
    /* Only 0-2 reach the command: everything else closes at execve (the error pipe too). */
    if (K(sbx_sys(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC, 0)) < 0) die(c, SBX_STAGE_CLOSE_FDS, -1);
    if (K(k_chdir(p->cwd)) < 0) die(c, SBX_STAGE_CHDIR, -1);
    if (p->n_bpf == 0) die_with(c, EINVAL, SBX_STAGE_SECCOMP, -1);
    const struct sock_filter *insns = p->bpf;
    for (uint32_t i = 0; i < p->n_bpf; i++) {
        struct sock_fprog prog = { (unsigned short)p->bpf_lens[i], (struct sock_filter *)insns };
        T("cmd: before seccomp");
        if (K(sbx_sys(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, (long)&prog, 0)) < 0) die(c, SBX_STAGE_SECCOMP, (int)i);
        insns += p->bpf_lens[i];
    }

    /* Last: execve, searching PATH by hand (execvpe may allocate). */
    const char *file = p->argv[0];
    if (strchr(file, '/')) {
        K(sbx_sys(SYS_execve, (long)file, (long)p->argv, (long)p->envp, 0));
        die(c, SBX_STAGE_EXECVE, -1);
    }
    int saw_eacces = 0;
    const char *dirs = p->path_search;
    char buf[SBX_PATH_MAX];
    while (dirs && *dirs) {
        const char *end = strchr(dirs, ':');
        size_t dlen = end ? (size_t)(end - dirs) : strlen(dirs);
        size_t flen = strlen(file);
        if (dlen + flen + 2 <= sizeof buf) {
            memcpy(buf, dirs, dlen);
            size_t at = dlen;
            if (dlen == 0) buf[at++] = '.';
            buf[at++] = '/';
            memcpy(buf + at, file, flen + 1);
            long e = sbx_sys(SYS_execve, (long)buf, (long)p->argv, (long)p->envp, 0);
            if (e == -EACCES) saw_eacces = 1;
            else if (e != -ENOENT && e != -ENOTDIR) die_with(c, (int)-e, SBX_STAGE_EXECVE, -1);
        }
        if (!end) break;
        dirs = end + 1;
    }
    die_with(c, saw_eacces ? EACCES : ENOENT, SBX_STAGE_EXECVE, -1);
}

/* Pid 1 forked from sandboxd (without SBX_PLAN_SHARED_MEMORY) has its own
 * copy of sandboxd's argument and environment areas: sandboxd's command line
 * (with --env values) and host environment, and /proc/1/cmdline is readable
 * by the command. Overwrite both, in place. The bounds are fields 48-51 of
 * /proc/self/stat (arg_start arg_end env_start env_end). With shared memory
 * these areas are sandboxd's own and stay as they are (see child_main). */
static void scrub_own_cmdline(void)
{
    char buf[1024];
    long fd = k_openat(AT_FDCWD, "/proc/self/stat", O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return;
    long n = sbx_sys(SYS_read, fd, (long)buf, sizeof buf - 1, 0);
    k_close((int)fd);
    if (n <= 0) return;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces: count fields after it */
    if (!p) return;
    unsigned long v[4] = { 0 };
    int field = 2; /* p points just before field 3 */
    for (p++; *p && field < 51; p++) {
        if (*p == ' ') { field++; continue; }
        if (field >= 48) {
            unsigned long x = 0;
            while (*p >= '0' && *p <= '9') x = x * 10 + (unsigned long)(*p++ - '0');
            v[field - 48] = x;
            p--;
        }
    }
    static const char name[] = "sandboxd-init";
    if (v[0] && v[1] > v[0]) {
        memset((void *)v[0], 0, v[1] - v[0]);
        if (v[1] - v[0] > sizeof name) memcpy((void *)v[0], name, sizeof name);
    }
    if (v[2] && v[3] > v[2]) memset((void *)v[2], 0, v[3] - v[2]);
}

/* Never runs: pid 1 keeps these signals blocked and takes them with
 * sigtimedwait. It exists because pid 1 drops signals whose handler is
 * SIG_DFL, even when blocked. (So it needs no SA_RESTORER.) */
static void noop_handler(int sig) { (void)sig; }

/* Pid 1: forward signals to the command, reap everything, and leave with it.
 * When pid 1 exits the kernel kills every other process in the namespace. */
__attribute__((noreturn)) static void reap_until_command_exits(int sync_fd, pid_t cmd)
{
    static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT };
    uint64_t set = sigbit(SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) {
        set |= sigbit(forwarded[i]);
        set_handler(forwarded[i], noop_handler);
    }
    for (;;) {
        siginfo_t si;
        long sig = sbx_sys(SYS_rt_sigtimedwait, (long)&set, (long)&si, 0, sizeof set);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            sbx_sys(SYS_kill, cmd, sig, 0, 0);
            continue;
        }
        for (;;) {
            int status;
            long r = sbx_sys(SYS_wait4, -1, (long)&status, WNOHANG, 0);
            if (r <= 0) break;
            if (r == cmd) {
                struct sbx_msg m = { MSG_STATUS, status };
                sbx_sys6(SYS_sendto, sync_fd, (long)&m, sizeof m, MSG_NOSIGNAL, 0, 0);
                k_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            }
        }
    }
}

/* One message and up to max_fds descriptors; 0, or -errno (-EPIPE on EOF or
 * a short message). No errno: pid 1 calls it too. */
static long recv_with_fds(int sock, struct sbx_msg *m, int *fds, int max_fds, int *n_fds)
{
    long r = sbx_recv_raw(sock, m, sizeof *m, fds, max_fds, n_fds);
    if (r < 0) return r;
    return r == (long)sizeof *m ? 0 : -EPIPE;
}

static int send_with_fds(int sock, const struct sbx_msg *m, const int *fds, int n_fds)
{
    return sbx_send(sock, m, sizeof *m, fds, n_fds);
}

/* The command, started with CLONE_VFORK on a stack in this frame: pid 1
 * sleeps until it has exec'd (or failed), and neither copies sandboxd's
 * address space. The pid, or -errno. */
static long start_command(struct child_ctx *c)
{
    char stack[64 * 1024] __attribute__((aligned(16)));
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_VM | CLONE_VFORK;
    ca.exit_signal = SIGCHLD;
    /* Its stack is in this frame, in pid 1's mapping: the mapping is free
     * again only once this word is clear too (pid 1 can be killed while the
     * command has not yet exec'd; see pid1_block_claim). */
    if (c->cmd_tid) {
        ca.flags |= CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
        ca.parent_tid = ca.child_tid = (uint64_t)(uintptr_t)c->cmd_tid;
    }
    ca.stack = (uint64_t)(uintptr_t)stack;
    ca.stack_size = sizeof stack;
    return sbx_clone_with_stack(&ca, sizeof ca, exec_command, c);
}

__attribute__((noreturn)) static void child_main(struct child_ctx *c)
{
    const struct sbx_plan *p = c->plan;
    int sync_fd = c->sync_fd;
    /* Nothing of sandboxd's may run here: its signal handlers (the Swift
     * runtime's crash handler among them) would run on its memory. Every
     * signal is blocked (pid1_main), and faults kill. */
    static const int faults[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) set_handler(faults[i], SIG_DFL);
    struct sbx_msg m;
    int no_fds = 0;
    if (recv_with_fds(sync_fd, &m, NULL, 0, &no_fds) < 0 || m.type != MSG_GO) k_exit(SBX_EXIT_SETUP);

    /* Sharing sandboxd's memory, pid 1 shows sandboxd's command line (as
     * bubblewrap's pid 1 shows bwrap's) and cannot scrub it without
     * scrubbing sandboxd's; sandboxd's environment stays unreadable to the
     * command, since pid 1 is not dumpable before the command exists. */
    if (!c->shared) scrub_own_cmdline();
    sbx_sys6(SYS_prctl, PR_SET_NAME, (long)"sandboxd-init", 0, 0, 0, 0);

    /* Leave host uid 0 first: a host-root uid can write global /proc/sys knobs
     * even without capabilities. */
    if (K(sbx_sys(SYS_setresgid, p->setup_gid, p->setup_gid, p->setup_gid, 0)) < 0) die(c, SBX_STAGE_SETID_SETUP, -1);
    if (K(sbx_sys(SYS_setresuid, p->setup_uid, p->setup_uid, p->setup_uid, 0)) < 0) die(c, SBX_STAGE_SETID_SETUP, -1);
    /* Not dumpable (the change of ids set it to fs.suid_dumpable): the
     * memory is sandboxd's when shared, and a fault must not dump it. */
    if (K(k_prctl(PR_SET_DUMPABLE, 0)) < 0) die(c, SBX_STAGE_DUMPABLE, -1);
    /* If sandboxd dies, so does the sandbox. Set after the change of ids,
     * which clears it; a sandboxd that died before is seen on the sync
     * socket (its end is closed). */
    if (K(k_prctl(PR_SET_PDEATHSIG, SIGKILL)) < 0) die(c, SBX_STAGE_DUMPABLE, -1);
    struct pollfd alive = { .fd = sync_fd, .events = POLLRDHUP };
    struct timespec now = { 0, 0 };
    if (sbx_sys6(SYS_ppoll, (long)&alive, 1, (long)&now, 0, 0, 0) != 0) k_exit(SBX_EXIT_SETUP);
    assemble_root(c);

    if (p->hostname && K(sbx_sys(SYS_sethostname, (long)p->hostname, (long)strlen(p->hostname), 0, 0)) < 0)
        die(c, SBX_STAGE_HOSTNAME, -1);
    if ((p->flags & SBX_PLAN_LOOPBACK) && K(sbx_loopback_up()) < 0) die(c, SBX_STAGE_LOOPBACK, -1);

    if (p->flags & SBX_PLAN_TTY) {
        long master = K(k_openat(AT_FDCWD, "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC, 0));
        int unlock = 0;
        if (master < 0 || K(sbx_sys(SYS_ioctl, master, TIOCSPTLCK, (long)&unlock, 0)) < 0) die(c, SBX_STAGE_PTY, -1);
        long slave = K(sbx_sys(SYS_ioctl, master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC, 0));
        if (slave < 0 || K(sbx_sys(SYS_fchown, slave, p->uid, p->gid, 0)) < 0) die(c, SBX_STAGE_PTY, -1);
        c->pty_slave = (int)slave;
        struct sbx_msg pm = { MSG_PTY, 0 };
        int mfd = (int)master;
        if (K(sbx_send_raw(sync_fd, &pm, sizeof pm, &mfd, 1)) < 0) die(c, SBX_STAGE_PTY, -1);
        k_close(mfd);
    }

    /* The sandbox's cgroups (v1), which the parent made while we built the
     * root: the command joins them (exec_command). */
    if (p->flags & SBX_PLAN_OVERLAP) {
        if (K(recv_with_fds(sync_fd, &m, c->cg_fds, MAX_MSG_FDS, &c->n_cg)) < 0) die(c, SBX_STAGE_SYNC, -1);
        if (m.type != MSG_JOIN) die_with(c, EPROTO, SBX_STAGE_SYNC, -1);
        if (c->cpus) sbx_sys(SYS_sched_setaffinity, 0, sizeof *c->cpus, (long)c->cpus, 0);
    }

    /* Pid 1 is not dumpable (above): its memory, sandboxd's when shared,
     * cannot be read or traced by the command through /proc. The command's
     * own changes of ids reset that; it clears it again, last. */
    long cmd = K(start_command(c));
    if (cmd < 0) die(c, SBX_STAGE_FORK, -1);

    /* Pid 1 keeps only the sync socket and drops every capability. */
    set_caps(0);
    k_prctl(PR_SET_NO_NEW_PRIVS, 1);
    if (sync_fd > 3) sbx_sys(SYS_close_range, 3, (unsigned)sync_fd - 1, 0, 0);
    sbx_sys(SYS_close_range, (unsigned)sync_fd + 1, ~0u, 0, 0);
    for (int fd = 0; fd < 3; fd++)
        if (sync_fd != fd) k_close(fd);
    reap_until_command_exits(sync_fd, (pid_t)cmd);
}

/* --------------------------------------------------------------- parent side */

/*
 * Pid 1's own memory when it shares sandboxd's (SBX_PLAN_SHARED_MEMORY): one
 * mapping with its stack (above a guard page) and, at the top, what it reads
 * after sbx_spawn has returned. The kernel zeroes `tid` when pid 1 exits
 * (CLONE_CHILD_CLEARTID), as it does for a thread's stack; a later launch
 * reuses the mapping then. Mappings are kept for reuse, one per sandbox
 * running at once; untouched stack pages cost nothing (MAP_NORESERVE).
 * Without shared memory pid 1 gets its own copy of the mapping at clone, and
 * the mapping is free again as soon as clone3 returns.
 */
#define PID1_MAPPING (512 * 1024)

struct pid1_args {
    const struct sbx_plan *plan;
    int sync_fd, err_fd;      /* pid 1's ends */
    int parent_sync, parent_err; /* the parent's ends, closed in pid 1 */
    int has_cpus;
    cpu_set_t cpus;
    int shared;               /* the memory is sandboxd's (else pid 1's own copy) */
    _Atomic int32_t *cmd_tid; /* the command's, until its execve (in the block) */
    uint32_t n_binds;
    int binds[];              /* the parent's bind trees, by op; the parent frees its own array after GO */
};

struct pid1_block {
    _Atomic int32_t tid;       /* pid 1's, until it exits (shared memory only) */
    _Atomic int32_t cmd_tid;   /* the command's, until its execve or exit: it runs on a stack in here */
    int launched;              /* tid is pid 1's: free once it and then cmd_tid read 0 (pid 1
                                * sets cmd_tid, so it is read after tid) */
    int claimed;
    struct pid1_block *next;
    struct pid1_args args;     /* last: binds[] follows */
};

static pthread_mutex_t pid1_blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pid1_block *pid1_blocks;

/* A free block with room for n_ops binds, or NULL (errno set). */
static struct pid1_block *pid1_block_claim(uint32_t n_ops)
{
    size_t need = sizeof(struct pid1_block) + sizeof(int) * n_ops;
    if (need > 64 * 1024) { errno = E2BIG; return NULL; }
    pthread_mutex_lock(&pid1_blocks_lock);
    struct pid1_block *b = pid1_blocks;
    for (; b; b = b->next) {
        if (!b->claimed) break;
        if (b->launched && atomic_load(&b->tid) == 0 && atomic_load(&b->cmd_tid) == 0) break;
    }
    if (!b) {
        char *map = mmap(NULL, PID1_MAPPING, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED || mprotect(map, 4096, PROT_NONE) < 0) {
            int saved = errno;
            if (map != MAP_FAILED) munmap(map, PID1_MAPPING);
            pthread_mutex_unlock(&pid1_blocks_lock);
            errno = saved;
            return NULL;
        }
        b = (struct pid1_block *)(map + PID1_MAPPING - 64 * 1024);
        b->next = pid1_blocks;
        pid1_blocks = b;
    }
    b->claimed = 1;
    b->launched = 0;
    atomic_store(&b->tid, 0);
    atomic_store(&b->cmd_tid, 0);
    pthread_mutex_unlock(&pid1_blocks_lock);
    return b;
}

/* Where pid 1's stack starts (it grows down from the block) and its size. */
static void pid1_block_stack(struct pid1_block *b, __u64 *stack, __u64 *size)
{
    char *map = (char *)b - (PID1_MAPPING - 64 * 1024);
    *stack = (__u64)(uintptr_t)(map + 4096);
    *size = (__u64)((char *)b - (map + 4096)) & ~(__u64)15;
}

/* After clone3: pid 1's until it exits if it shares this memory, else free now. */
static void pid1_block_launched(struct pid1_block *b, int shared, pid_t pid)
{
    pthread_mutex_lock(&pid1_blocks_lock);
    if (shared && pid > 0) b->launched = 1;
    else b->claimed = 0;
    pthread_mutex_unlock(&pid1_blocks_lock);
}

/* Whether pid 1 can share this process's memory. Once pid 1 made the memory
 * not dumpable, opening the next pid 1's /proc files (uid_map, ns/mnt) takes
 * CAP_SYS_PTRACE. On cgroup v2 pid 1 starts inside the sandbox's group
 * (CLONE_INTO_CGROUP), where the OOM killer could choose it, and sandboxd
 * with it (see exec_command): the copy is kept there. */
static int can_share_memory(const struct sbx_plan *p)
{
    if (!(p->flags & SBX_PLAN_SHARED_MEMORY) || p->cgroup_dir_fd >= 0) return 0;
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) < 0) return 0;
    uint64_t eff = (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32;
    return (eff & (1ull << CAP_SYS_PTRACE)) != 0;
}

static int pid1_main(void *arg)
{
    struct pid1_args *a = arg;
    set_sigmask(SIG_SETMASK, ~0ull); /* the parent blocked them around clone3 too */
    k_close(a->parent_sync);
    k_close(a->parent_err);
    struct child_ctx c = { .plan = a->plan, .sync_fd = a->sync_fd, .err_fd = a->err_fd, .newroot_fd = -1,
                           .bind_fds = a->binds, .oldroot_fd = -1, .cpus = a->has_cpus ? &a->cpus : NULL,
                           .pty_slave = -1, .shared = a->shared, .cmd_tid = a->shared ? a->cmd_tid : NULL,
                           .n_cg = 0, .err = 0 };
    child_main(&c);
}

static int write_proc_file(pid_t pid, const char *name, const char *text)
{
    char path[64];
    sbx_format_proc_path(path, sizeof path, pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long r = sbx_write_all(fd, text, strlen(text));
    close(fd);
    if (r < 0) errno = (int)-r;
    return r < 0 ? -1 : 0;
}

/* Close the first n trees and free the array. */
static void close_binds(int *fds, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
}

static int open_ns(pid_t pid, const char *which)
{
    char path[64];
    sbx_format_proc_path(path, sizeof path, pid, which);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* A user namespace with the given maps, to idmap a mount through: a child
 * creates it and waits while we write its maps and take a descriptor. */
static int make_userns(const char *uid_map, const char *gid_map)
{
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0) return -1;
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0);
    if (pid == 0) {
        char c;
        close(gate[1]);
        while (read(gate[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(gate[0]);
    int fd = -1, saved = 0;
    if (pid < 0) { saved = errno; goto out; }
    if (write_proc_file(pid, "uid_map", uid_map) < 0 || write_proc_file(pid, "gid_map", gid_map) < 0) { saved = errno; goto out; }
    fd = open_ns(pid, "ns/user");
    saved = errno;
out:
    close(gate[1]);
    if (pid > 0) { int st; while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {} }
    errno = saved;
    return fd;
}

static void fail_child(pid_t pid, int pidfd)
{
    if (pidfd >= 0) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    else kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {}
}

int sbx_spawn(const struct sbx_plan *p, struct sbx_child *out, struct sbx_error *err)
{
    int sv[2], ep[2];
    err->stage = SBX_STAGE_NONE;
    err->err = 0;
    err->index = -1;
    out->pid = -1;
    out->pidfd = -1;
    out->sync_fd = -1;
    out->pty_master = -1;
    out->mntns_fd = -1;
    out->err_fd = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) goto early;
    if (pipe2(ep, O_CLOEXEC) < 0) { close(sv[0]); close(sv[1]); goto early; }

    /* Every bind source is opened here, before clone, with sandboxd's own
     * view and rights: the sandbox's uid may not be able to reach it. */
    int *bind_fds = malloc(sizeof(int) * (p->n_ops ? p->n_ops : 1));
    struct pid1_block *block = bind_fds ? pid1_block_claim(p->n_ops) : NULL;
    if (!block) {
        *err = (struct sbx_error){ SBX_STAGE_CLONE, errno, -1 };
        free(bind_fds);
        close(sv[0]); close(sv[1]); close(ep[0]); close(ep[1]);
        return -1;
    }
    for (uint32_t i = 0; i < p->n_ops; i++) {
        bind_fds[i] = -1;
        int overlay = p->ops[i].kind == SBX_OP_OVERLAY;
        if (p->ops[i].kind != SBX_OP_BIND && !(overlay && (p->ops[i].flags & SBX_F_IDMAP) && first_overlay_op(p, i) == i)) continue;
        if (p->ops[i].kind == SBX_OP_BIND && (p->flags & SBX_PLAN_BINDS_IN_CHILD)) continue;
        /* An overlay's lower layer never shows the mounts below it, so only its own mount is cloned. */
        bind_fds[i] = (int)syscall(SYS_open_tree, AT_FDCWD, p->ops[i].source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (overlay ? 0 : AT_RECURSIVE));
        if (bind_fds[i] < 0 && !(errno == ENOENT && (p->ops[i].flags & SBX_F_OPTIONAL))) {
            *err = (struct sbx_error){ SBX_STAGE_MOUNT_OP, errno, (int32_t)i };
            close_binds(bind_fds, i);
            pid1_block_launched(block, 0, -1);
            close(sv[0]); close(sv[1]); close(ep[0]); close(ep[1]);
            return -1;
        }
    }

    /* With SBX_PLAN_OVERLAP this thread makes the cgroups while pid 1 builds
     * the root. Woken by GO, pid 1 would queue on this core behind it, so it
     * runs on the others until it has received them for the command; then it
     * takes back this mask (a copy in its block). */
    cpu_set_t *cpus = NULL, all_cpus;
    if ((p->flags & SBX_PLAN_OVERLAP) && sched_getaffinity(0, sizeof all_cpus, &all_cpus) == 0 && CPU_COUNT(&all_cpus) > 1)
        cpus = &all_cpus;

    int pidfd = -1;
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = p->clone_flags | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    if (p->cgroup_dir_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)p->cgroup_dir_fd;
    }
    /* A prepared network namespace (see netns.c) is entered for the clone
     * only, so the child starts in it; this thread then returns home. */
    int32_t clone_stage = SBX_STAGE_CLONE;
    int clone_errno = 0;
    pid_t pid = -1;
    if (p->flags & SBX_PLAN_PREPARED_NETNS) {
        ca.flags &= ~(uint64_t)CLONE_NEWNET;
        if (setns(p->netns_fd, CLONE_NEWNET) < 0) { clone_stage = SBX_STAGE_NETNS; clone_errno = errno; }
    }
    T("parent: clone3");
    struct pid1_args *a = &block->args;
    *a = (struct pid1_args){ .plan = p, .sync_fd = sv[1], .err_fd = ep[1], .parent_sync = sv[0], .parent_err = ep[0],
                             .has_cpus = cpus != NULL, .cmd_tid = &block->cmd_tid, .n_binds = p->n_ops };
    int shared = can_share_memory(p);
    a->shared = shared;
    if (cpus) a->cpus = *cpus;
    memcpy(a->binds, bind_fds, sizeof(int) * p->n_ops);
    pid1_block_stack(block, &ca.stack, &ca.stack_size);
    if (shared) {
        ca.flags |= CLONE_VM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
        ca.parent_tid = ca.child_tid = (uint64_t)(uintptr_t)&block->tid;
    }
    if (clone_stage == SBX_STAGE_CLONE) {
        /* Pid 1 starts with every signal blocked (it runs none of our
         * handlers), as posix_spawn's child does. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        long r = sbx_clone_with_stack(&ca, sizeof ca, pid1_main, a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) clone_errno = (int)-r;
        else pid = (pid_t)r;
    }
    pid1_block_launched(block, shared, pid);
    T("parent: clone3 returned");
    if (pid > 0 && cpus) {
        cpu_set_t others = *cpus;
        int here = sched_getcpu();
        if (here >= 0 && CPU_ISSET(here, &others) && CPU_COUNT(&others) > 1) {
            CPU_CLR(here, &others);
            sched_setaffinity(pid, sizeof others, &others);
        }
    }
    close(sv[1]);
    close(ep[1]);
    if ((p->flags & SBX_PLAN_PREPARED_NETNS) && setns(p->netns_home_fd, CLONE_NEWNET) < 0) {
        *err = (struct sbx_error){ SBX_STAGE_NETNS, errno, -1 };
        if (pid > 0) fail_child(pid, pidfd);
        if (pidfd >= 0) close(pidfd);
        close_binds(bind_fds, p->n_ops);
        close(sv[0]);
        close(ep[0]);
        return -1;
    }
    if (pid < 0) {
        *err = (struct sbx_error){ clone_stage, clone_errno, -1 };
        close_binds(bind_fds, p->n_ops);
        close(sv[0]);
        close(ep[0]);
        return -1;
    }

    int userns = -1, userns_self = -1, mntns = -1;
    int32_t stage = SBX_STAGE_NONE, index = -1;
    if ((p->flags & SBX_PLAN_SETGROUPS_DENY) && write_proc_file(pid, "setgroups", "deny") < 0) { stage = SBX_STAGE_SETGROUPS_FILE; goto fail; }
    if (write_proc_file(pid, "uid_map", p->uid_map) < 0) { stage = SBX_STAGE_UID_MAP; goto fail; }
    if (write_proc_file(pid, "gid_map", p->gid_map) < 0) { stage = SBX_STAGE_GID_MAP; goto fail; }

    T("parent: maps written");
    /* The sandbox's mount namespace, taken before GO: an unprivileged
     * sandboxd can open it only while pid 1's memory is dumpable (with
     * shared memory it is not, from the second launch on, and opening it
     * takes CAP_SYS_PTRACE, see can_share_memory). Holding
     * it moves the tree's teardown out of pid 1's exit, to a moment of the
     * supervisor's choosing (Supervisor.run, release.c). Optional: without it pid 1's
     * exit tears the tree down as before. */
    mntns = open_ns(pid, "ns/mnt");
    /* Idmapped binds: the trees the child inherited are the same mounts, so
     * mapping them here, where we hold CAP_SYS_ADMIN over the host
     * filesystems, maps them for the child too. */
    for (uint32_t i = 0; i < p->n_ops; i++) {
        if (!(p->ops[i].flags & SBX_F_IDMAP) || bind_fds[i] < 0) continue;
        index = (int32_t)i;
        /* Overlay lower layers read as they are on disk (the sandbox's own
         * namespace); read-write binds use the plan's idmap namespace if any. */
        int self = p->ops[i].kind == SBX_OP_OVERLAY || !p->idmap_uid_map;
        if (self && userns_self < 0) userns_self = open_ns(pid, "ns/user");
        if (!self && userns < 0) userns = make_userns(p->idmap_uid_map, p->idmap_gid_map);
        int ns = self ? userns_self : userns;
        if (ns < 0) { stage = SBX_STAGE_IDMAP; goto fail; }
        struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns };
        if (syscall(SYS_mount_setattr, bind_fds[i], "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) { stage = SBX_STAGE_IDMAP; goto fail; }
    }
    index = -1;
    T("parent: idmap done");
    struct sbx_msg go = { MSG_GO, 0 };
    if (send_with_fds(sv[0], &go, NULL, 0) < 0) { stage = SBX_STAGE_SYNC; goto fail; }
    close_binds(bind_fds, p->n_ops);
    bind_fds = NULL;
    if (userns >= 0) close(userns);
    if (userns_self >= 0) close(userns_self);
    userns = userns_self = -1;
    T("parent: go sent");
    out->pid = pid;
    out->pidfd = pidfd;
    out->sync_fd = sv[0];
    out->mntns_fd = mntns;
    out->err_fd = ep[0];
    return 0;

fail:
    *err = (struct sbx_error){ stage, errno, index };
    if (mntns >= 0) close(mntns);
    if (bind_fds) close_binds(bind_fds, p->n_ops);
    if (userns >= 0) close(userns);
    if (userns_self >= 0) close(userns_self);
    fail_child(pid, pidfd);
    if (ep[0] >= 0) close(ep[0]);
    close(sv[0]);
    if (pidfd >= 0) close(pidfd);
    return -1;
early:
    *err = (struct sbx_error){ SBX_STAGE_SOCKETPAIR, errno, -1 };
    return -1;
}

static void close_child(struct sbx_child *c)
{
    int32_t *fds[] = { &c->pidfd, &c->sync_fd, &c->pty_master, &c->mntns_fd, &c->err_fd };
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0) close(*fds[i]);
        *fds[i] = -1;
    }
}

void sbx_spawn_abort(struct sbx_child *c)
{
    if (c->pid > 0) fail_child(c->pid, c->pidfd);
    c->pid = -1;
    close_child(c);
}

int sbx_spawn_finish(const struct sbx_plan *p, struct sbx_child *c, const int *cgroup_task_fds, uint32_t n,
                     struct sbx_error *err)
{
    *err = (struct sbx_error){ SBX_STAGE_NONE, 0, -1 };
    int overlap = (p->flags & SBX_PLAN_OVERLAP) != 0;
    if (n > (overlap ? MAX_MSG_FDS : 0)) { *err = (struct sbx_error){ SBX_STAGE_CGROUP_JOIN, E2BIG, -1 }; goto fail; }
    /* Overlapped with no groups, the command would join none and root its
     * cgroup namespace at sandboxd's: no limit would apply, silently. */
    if (overlap && n == 0) { *err = (struct sbx_error){ SBX_STAGE_CGROUP_JOIN, EINVAL, -1 }; goto fail; }
    /* Only pid 1 of an overlapped launch waits for the join. If it already
     * failed building the root, the send fails and its own report on the error
     * pipe says why; any other failure would leave it waiting, so it is killed
     * before the pipe is read. */
    int sent = 0, send_errno = 0;
    if (overlap) {
        struct sbx_msg join = { MSG_JOIN, 0 };
        sent = send_with_fds(c->sync_fd, &join, cgroup_task_fds, (int)n);
        send_errno = errno;
        if (sent < 0) syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
    }

    /* EOF on the error pipe means execve succeeded (the pipe is close-on-exec). */
    struct sbx_error ce;
    ssize_t r;
    do r = read(c->err_fd, &ce, sizeof ce); while (r < 0 && errno == EINTR);
    if (r == (ssize_t)sizeof ce) { *err = ce; goto fail; }
    if (sent < 0) { *err = (struct sbx_error){ SBX_STAGE_SYNC, send_errno, -1 }; goto fail; }
    if (r != 0) { *err = (struct sbx_error){ SBX_STAGE_SYNC, r < 0 ? errno : EPIPE, -1 }; goto fail; }
    close(c->err_fd);
    c->err_fd = -1;
    T("parent: exec seen");

    if (p->flags & SBX_PLAN_TTY) {
        struct sbx_msg pm;
        int fds[1], got = 0;
        long got_msg = recv_with_fds(c->sync_fd, &pm, fds, 1, &got);
        if (got_msg < 0 || pm.type != MSG_PTY || got != 1) {
            *err = (struct sbx_error){ SBX_STAGE_PTY, got_msg < 0 ? (int)-got_msg : EPROTO, -1 };
            if (got == 1) close(fds[0]);
            goto fail;
        }
        c->pty_master = fds[0];
    }
    return 0;
fail:
    sbx_spawn_abort(c);
    return -1;
}

int sbx_read_status(int sync_fd, int *status)
{
    struct sbx_msg m;
    ssize_t r;
    do r = recv(sync_fd, &m, sizeof m, 0); while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof m || m.type != MSG_STATUS) return -1;
    *status = m.value;
    return 0;
}

int sbx_pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

