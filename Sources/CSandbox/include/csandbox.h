#ifndef CSANDBOX_H
#define CSANDBOX_H
/*
 * The C side of sandboxd: it *executes* a flat launch plan and decides nothing.
 *
 * Everything policy-related (which mounts, which uid maps, which seccomp
 * program, which capabilities) is computed in Swift and handed over as a
 * `struct sbx_plan`. Between clone() and execve() the code here makes raw
 * system calls only: no malloc, no locks, no Swift. Setup failures travel back
 * to the parent as one `struct sbx_error` {stage, errno, index} over a
 * close-on-exec pipe, so the parent can name the stage that failed.
 */
#include <stdint.h>
#include <stddef.h>
#include <linux/filter.h>

/* Ordered root-assembly operations, applied inside the new mount namespace.
 * Targets are absolute paths inside the sandbox; bind sources are host paths. */
enum sbx_op_kind {
    SBX_OP_BIND = 1,     /* bind host `source` at `target` (recursive) */
    SBX_OP_TMPFS = 2,    /* tmpfs at `target`, mount data in `data` */
    SBX_OP_PROC = 3,     /* fresh procfs at `target` */
    SBX_OP_DEV = 4,      /* minimal /dev at `target`: null zero full random urandom tty, pts, shm */
    SBX_OP_MASK = 5,     /* hide `target`: empty read-only file or directory on top of it */
    SBX_OP_READONLY = 6, /* make `target` (already inside the new root) read-only in place */
    SBX_OP_SYMLINK = 8,  /* symlink `target` -> `source` */
    SBX_OP_OVERLAY = 9,  /* directory SUBDIR of an overlayfs (lower = host `source`) at `target`;
                          * `data` = "UPPER\nWORK\nSUBDIR" (host dirs). SUBDIR "": the overlay
                          * itself, mounted at `target`; otherwise ops naming the same
                          * lower, upper and work share one overlayfs. */
};

enum sbx_op_flags {
    SBX_F_RDONLY = 1u << 0,   /* bind read-only (recursively) */
    SBX_F_OPTIONAL = 1u << 1, /* skip silently when the source or target does not exist */
    SBX_F_IDMAP = 1u << 2,    /* bind through an idmapped mount prepared by the parent */
    SBX_F_DEVICES = 1u << 3,  /* keep device access (default: nodev) */
};

struct sbx_op {
    uint32_t kind;
    uint32_t flags;
    const char *source;
    const char *target;
    const char *data;
};

struct sbx_rlimit {
    int32_t resource;
    uint64_t soft;
    uint64_t hard;
};

enum sbx_plan_flags {
    SBX_PLAN_CGROUPNS = 1u << 0,       /* unshare the cgroup namespace once placed in the cgroups */
    SBX_PLAN_LOOPBACK = 1u << 1,       /* bring `lo` up in the new network namespace */
    SBX_PLAN_TTY = 1u << 2,            /* give the command a new pty from the sandbox's devpts */
    SBX_PLAN_SETGROUPS_DENY = 1u << 3, /* unprivileged mode: write "deny" to setgroups, skip setgroups() */
    SBX_PLAN_PREPARED_NETNS = 1u << 4, /* start in `netns_fd` (lo already up) instead of CLONE_NEWNET */
    SBX_PLAN_BINDS_IN_CHILD = 1u << 5, /* open bind sources inside the sandbox's mount namespace (at
                                        * /oldroot/SOURCE): an unprivileged caller cannot clone mounts
                                        * of the host's namespace (open_tree needs CAP_SYS_ADMIN there) */
    SBX_PLAN_OVERLAP = 1u << 6,        /* the caller makes cgroup v1 groups between sbx_spawn and
                                        * sbx_spawn_finish: pid 1 builds the root on another core
                                        * meanwhile, then waits for their `tasks` files */
    SBX_PLAN_SHARED_MEMORY = 1u << 7,  /* pid 1 may share the caller's memory instead of a copy
                                        * (launch.c, DESIGN "Pid 1's own memory"): taken with
                                        * CAP_SYS_PTRACE in effect and no cgroup_dir_fd. The
                                        * caller is not dumpable from then on */
};

struct sbx_plan {
    uint32_t clone_flags;      /* CLONE_NEW* namespaces created at clone (not CLONE_NEWCGROUP) */
    uint32_t flags;            /* enum sbx_plan_flags */
    const char *uid_map;       /* written to /proc/PID/uid_map by the parent */
    const char *gid_map;
    const char *idmap_uid_map; /* maps of a throwaway user namespace for SBX_F_IDMAP binds; */
    const char *idmap_gid_map; /* NULL: idmap through the sandbox's own user namespace */
    uint32_t setup_uid;        /* ids the sandbox's pid 1 takes once the maps exist */
    uint32_t setup_gid;
    uint32_t uid;              /* ids the command runs as */
    uint32_t gid;
    const char *hostname;
    const char *staging;       /* an existing directory to mount the staging tmpfs on ("/tmp") */
    const struct sbx_op *ops;
    uint32_t n_ops;
    const char *cwd;           /* working directory inside */
    const char *path_search;   /* PATH used to find argv[0] when it has no '/' */
    char *const *argv;
    char *const *envp;
    uint64_t cap_keep;         /* bitmask of capabilities kept in the bounding/permitted/effective sets */
    const struct sock_filter *bpf; /* the filter programs, back to back */
    const uint32_t *bpf_lens;  /* instructions in each program */
    uint32_t n_bpf;            /* number of programs; 0 is refused: a sandbox always has a filter */
    const struct sbx_rlimit *rlimits;
    uint32_t n_rlimits;
    /* cgroup v2: directory to start pid 1 in (clone3 CLONE_INTO_CGROUP), or -1.
     * cgroup v1 groups are joined later: see SBX_PLAN_OVERLAP, sbx_spawn_finish. */
    int32_t cgroup_dir_fd;
    /* With SBX_PLAN_PREPARED_NETNS: the namespace to start in (sbx_netns_wait)
     * and the caller's own, which the calling thread returns to after clone3. */
    int32_t netns_fd;
    int32_t netns_home_fd;
};

/* Stages, named by sbx_stage_name(); the order is the order of setup. */
enum sbx_stage {
    SBX_STAGE_NONE = 0,
    SBX_STAGE_SOCKETPAIR, SBX_STAGE_NETNS, SBX_STAGE_CLONE, SBX_STAGE_UID_MAP, SBX_STAGE_GID_MAP, SBX_STAGE_SETGROUPS_FILE,
    SBX_STAGE_IDMAP, SBX_STAGE_SYNC,
    SBX_STAGE_SETID_SETUP, SBX_STAGE_DUMPABLE, SBX_STAGE_PROPAGATION, SBX_STAGE_STAGING_TMPFS, SBX_STAGE_PIVOT_STAGING,
    SBX_STAGE_MOUNT_OP, SBX_STAGE_PIVOT_ROOT, SBX_STAGE_HOSTNAME, SBX_STAGE_LOOPBACK, SBX_STAGE_PTY,
    SBX_STAGE_CGROUP_JOIN, SBX_STAGE_CGROUPNS, SBX_STAGE_FORK, SBX_STAGE_SETSID, SBX_STAGE_CTTY, SBX_STAGE_RLIMIT, SBX_STAGE_SETGROUPS,
    SBX_STAGE_SETGID, SBX_STAGE_SETUID, SBX_STAGE_CAPBSET, SBX_STAGE_CAPSET, SBX_STAGE_NO_NEW_PRIVS,
    SBX_STAGE_CLOSE_FDS, SBX_STAGE_CHDIR, SBX_STAGE_SECCOMP, SBX_STAGE_EXECVE,
};

struct sbx_error {
    int32_t stage;
    int32_t err;     /* errno */
    int32_t index;   /* index of the failing op for SBX_STAGE_MOUNT_OP, else -1 */
};

struct sbx_child {
    int32_t pid;        /* host pid of the sandbox's pid 1 */
    int32_t pidfd;      /* pidfd of that process (close-on-exec) */
    int32_t sync_fd;    /* socket: carries the command's final wait status */
    int32_t pty_master; /* with SBX_PLAN_TTY: master side of the command's pty, else -1 */
    int32_t mntns_fd;   /* the sandbox's mount namespace (close-on-exec), or -1: see Supervisor.run */
    int32_t err_fd;     /* until sbx_spawn_finish: the pipe that reports a failed setup (EOF = exec'd) */
};

/* Start the sandbox described by `plan`: clone, write its id maps, idmap its
 * binds, and let it build its root. Returns 0 and fills `out`; the caller then
 * calls sbx_spawn_finish (or sbx_spawn_abort). Returns -1 and fills `err` on
 * failure (the child, if any, is killed and reaped before returning).
 * Pid 1 may read `plan` and everything it points to (in this process's
 * memory, SBX_PLAN_SHARED_MEMORY) until sbx_spawn_finish or sbx_spawn_abort
 * returns: keep it there, unchanged, until then. Pid 1's parent-death signal
 * follows the calling thread: it must outlive the sandbox. */
int sbx_spawn(const struct sbx_plan *plan, struct sbx_child *out, struct sbx_error *err);

/* With SBX_PLAN_OVERLAP, hand pid 1 the cgroup v1 `tasks` files for the
 * command to join (without it, `n` must be 0); then wait until the command
 * has been exec'd. The command writes "0" into each before anything else: a
 * self-move skips the kernel's global threadgroup lock, and v1 checks the
 * credentials the file was opened with. Pid 1 stays out of the groups. Between sbx_spawn and this call the caller makes
 * the groups while pid 1 builds the root.
 * Returns 0, or -1 with `err` filled and the child killed, reaped and closed. */
int sbx_spawn_finish(const struct sbx_plan *plan, struct sbx_child *child, const int *cgroup_task_fds, uint32_t n,
                     struct sbx_error *err);

/* Kill, reap and close a child sbx_spawn started (on a failure between the two calls). */
void sbx_spawn_abort(struct sbx_child *child);

/* Read the final wait status pid 1 reports for the command. Returns 0 and sets
 * *status, or -1 if pid 1 died without reporting (it was killed). */
int sbx_read_status(int sync_fd, int *status);

const char *sbx_stage_name(int32_t stage);

/* The cgroup janitor: a tiny process that outlives a SIGKILLed sandboxd and
 * removes the sandbox's cgroup directories once they are empty, or that
 * removes them when handed them after sandboxd is done with them. */
struct sbx_janitor {
    int fd;          /* sandboxd's end of its socket pair (close-on-exec); -1 when not running */
    int pid;
    void *memory;    /* its arguments and stack, freed by dismiss */
    size_t memory_size;
};
/* `dirs` is a NULL-terminated list, copied. Returns 0, or -1 (errno set). */
int sbx_janitor_start(const char *const *dirs, struct sbx_janitor *out);
/* Tell the janitor the parent cleaned up itself (release: it exits on its
 * own, which on another core overlaps what the caller does next), then reap
 * it and free its memory (reap). dismiss is both. */
void sbx_janitor_release(struct sbx_janitor *janitor);
void sbx_janitor_reap(struct sbx_janitor *janitor);
void sbx_janitor_dismiss(struct sbx_janitor *janitor);
/* Hand the janitor the removal of the (empty) groups and, if mntns_fd >= 0,
 * the sandbox's mount namespace to close: it does both and exits without the
 * caller waiting. Returns 0 if it took the namespace (mntns_fd is closed
 * then), -1 if not (the caller must close it).
 * Only for a caller that exits soon after: the janitor stays its child
 * (never reaped, memory never freed) until then, and is reaped by init or
 * the nearest subreaper after. */
int sbx_janitor_hand_off(struct sbx_janitor *janitor, int mntns_fd);

/* Walk `root` (not following symlinks) and return a malloc'd list of matches,
 * each a type letter (f, d, l) and the path relative to root, terminated by
 * NUL (a name may hold any other byte), ending with the record ".". An entry
 * matches when its name matches one of `patterns` (fnmatch) or, for files
 * with more than one link, its (dev, ino) is one of the `n_inodes` pairs in
 * `inodes`. A matched directory is not descended into.
 * NULL on error (errno set). `visited` receives the number of entries seen.
 *
 * `index` (name mode only; may be NULL) carries the index of an earlier walk
 * of the same root with the same patterns in, and this walk's out: its
 * unchanged directories are not read again (see walk.c). On return `next` is
 * a malloc'd index for the next walk (NULL if it could not be built) and the
 * counters say how many directories were read and how many were answered
 * from `prev`. A directory changed less than `settle_ns` before the walk is
 * left out of `next`. */
struct sbx_walk_index {
    const void *prev;
    size_t prev_len;
    int64_t settle_ns;
    void *next;
    size_t next_len;
    long dirs_read, dirs_reused;
};
char *sbx_walk(const char *root, const char *const *patterns, int n_patterns,
               const uint64_t *inodes, int n_inodes, long *visited, struct sbx_walk_index *index);

/* A network namespace created on a helper thread while the caller plans
 * (root only; see netns.c). prepare returns NULL (errno set) if the thread
 * cannot start. wait joins it and returns 0 with both descriptors (owned by
 * the handle), or -1 with errno. release joins if needed, closes, frees. */
struct sbx_netns;
struct sbx_netns *sbx_netns_prepare(void);
int sbx_netns_wait(struct sbx_netns *n, int *fd, int *home_fd);
void sbx_netns_release(struct sbx_netns *n);
/* Bring `lo` up in the calling thread's network namespace: 0 or -errno
 * (errno untouched, for pid 1). */
long sbx_loopback_up(void);

/* Hands a named sandbox's end to a process that outlives sandboxd (see
 * release.c): it closes `mntns_fd` (the mount tree's teardown, overlayfs's
 * sync of its upper layers included), fsyncs `sync_fds` in order, renames
 * `rename_from` over `rename_to` if every fsync succeeded (else unlinks it;
 * both may be NULL), and exits, which drops the flock on `lock_fd`. Each
 * descriptor may be -1. Returns 0 with every descriptor passed on (the
 * caller's copies are closed here; it must not unlock the lock, which would
 * unlock the finisher's too), or -1 (errno set) with nothing started and
 * every descriptor still the caller's. */
struct sbx_finish {
    int mntns_fd;
    int lock_fd;
    const int *sync_fds;
    int n_sync;
    const char *rename_from, *rename_to;
    /* The caller exits right after: the finisher is its own child (no exit
     * signal; init or the nearest subreaper reaps it once the caller is
     * gone), started without the middle process a long-lived caller needs. */
    int direct;
};
int sbx_finisher_start(const struct sbx_finish *f);

/* The executable's GNU build ID as lowercase hex into `out`; its length, or -1. */
int sbx_build_id(char *out, size_t cap);

/* Small wrappers Swift cannot call directly. */
int sbx_pidfd_send_signal(int pidfd, int sig);
int sbx_landlock_abi(void);
int sbx_memfd(const char *name);
/* 0 if open_tree(2) works here, else -1 with errno. */
int sbx_probe_open_tree(void);
#include <signal.h>
int sbx_signalfd(const sigset_t *mask);
/* Read one signal from a signalfd: its number, or -1. */
int sbx_read_signal(int fd);
/* The id of the mount `path` (symlinks followed) is on, or -1 with errno. */
int64_t sbx_mount_id(const char *path);
/* The filesystem type (statfs f_type) of `path`, or -1 with errno. */
int64_t sbx_fs_magic(const char *path);
/* CLONE_NEW{USER,NS,PID,NET,IPC,UTS}: the namespaces created at clone time. */
uint32_t sbx_clone_namespaces(void);

#endif
