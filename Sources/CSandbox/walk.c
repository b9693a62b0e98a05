/*
 * The blocked-path walk: finds entries of a tree whose name matches one of a
 * set of fnmatch(3) patterns, or (inode mode) whose device/inode is in a set.
 * Runs in the parent before clone, so it may allocate. getdents64 on directory
 * fds, no stat() per entry in name mode: d_type is enough.
 *
 * Name mode can reuse the index of an earlier walk of the same tree with the
 * same patterns. Reading a directory is the walk's cost (on ext4 each
 * getdents64 hashes and sorts the whole directory), and a directory whose
 * device, inode, ctime and mtime are unchanged has the same entries, so its
 * record answers instead: its matches and the subdirectories to descend.
 * Every directory is still stat'ed (opened first if its record lists
 * subdirectories, or if it has none), so a change anywhere, a directory
 * swapped for another, or a mount placed over one, is seen where it
 * happened. ctime cannot be set by a user, and a directory changed within
 * `settle_ns` of the walk is not recorded: with coarse timestamps a change in
 * the same tick as the read would keep the old ctime.
 */
#define _GNU_SOURCE
#include "csandbox.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct out { char *buf; size_t len, cap; int failed; };

static int reserve(struct out *o, size_t n)
{
    if (o->failed) return 0;
    if (o->len + n <= o->cap) return 1;
    size_t cap = o->cap ? o->cap * 2 : 4096;
    while (o->len + n > cap) cap *= 2;
    char *nb = realloc(o->buf, cap);
    if (!nb) { o->failed = 1; return 0; }
    o->buf = nb;
    o->cap = cap;
    return 1;
}

static void put(struct out *o, const void *p, size_t n)
{
    if (n == 0 || !reserve(o, n)) return;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* One match: its type letter, then its path relative to the root, then NUL.
 * NUL is the one byte no name can hold: names may contain newlines and bytes
 * that are not UTF-8, and such a blocked file must still be masked. */
static void emit(struct out *o, char type, const char *rel)
{
    size_t n = strlen(rel);
    if (!reserve(o, n + 2)) return;
    o->buf[o->len++] = type;
    memcpy(o->buf + o->len, rel, n);
    o->len += n;
    o->buf[o->len++] = '\0';
}

/* Index layout (a private cache file, native byte order): the magic, the
 * FNV-1a hash of everything after it, then one record per directory: a
 * fixed header, the directory's path relative to the root, then its items
 * (a tag, f/d/l for a match or s for a subdirectory to descend, a 16-bit
 * length, the name). */
static const char index_magic[8] = { 'S', 'B', 'X', 'W', 'A', 'L', 'K', 1 };
struct rec {
    uint64_t dev, ino;
    int64_t ctime_s, ctime_ns, mtime_s, mtime_ns;
    uint32_t visited, rel_len, items_len, zero; /* explicit padding, written as 0 */
};
#define REC_SIZE sizeof(struct rec)
#define HEAD_SIZE (sizeof index_magic + sizeof(uint64_t))

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

struct walk {
    const char *const *patterns;
    int n_patterns;
    const uint64_t *inodes; /* dev, ino pairs */
    int n_inodes;
    struct out out;
    long visited;
    /* The previous index, as a hash table of record offsets (+1; 0 = empty). */
    const unsigned char *prev;
    size_t prev_len;
    uint32_t *slots;
    size_t n_slots;
    struct out *next; /* the index being written, or NULL */
    int64_t now_s, now_ns, settle_ns;
    /* Devices whose file system keeps a ctime the index can trust (see trusted_fs). */
    uint64_t fs_dev[16];
    signed char fs_ok[16];
    int n_fs;
    long dirs_read, dirs_reused;
};

static void load_index(struct walk *w, const unsigned char *p, size_t len)
{
    if (!p || len < HEAD_SIZE || len > UINT32_MAX || memcmp(p, index_magic, sizeof index_magic) != 0) return;
    uint64_t sum;
    memcpy(&sum, p + sizeof index_magic, sizeof sum);
    if (sum != fnv1a(p + HEAD_SIZE, len - HEAD_SIZE)) return;
    size_t n = 0;
    for (size_t at = HEAD_SIZE; at < len;) {
        struct rec r;
        if (len - at < REC_SIZE) return;
        memcpy(&r, p + at, REC_SIZE);
        if ((uint64_t)r.rel_len + r.items_len > len - at - REC_SIZE) return;
        at += REC_SIZE + r.rel_len + r.items_len;
        n++;
    }
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    w->slots = calloc(slots, sizeof *w->slots);
    if (!w->slots) return;
    w->n_slots = slots;
    for (size_t at = HEAD_SIZE; at < len;) {
        struct rec r;
        memcpy(&r, p + at, REC_SIZE);
        size_t i = fnv1a(p + at + REC_SIZE, r.rel_len) & (slots - 1);
        while (w->slots[i]) i = (i + 1) & (slots - 1);
        w->slots[i] = (uint32_t)at + 1;
        at += REC_SIZE + r.rel_len + r.items_len;
    }
    w->prev = p;
    w->prev_len = len;
}

/* The previous record of the directory at `rel`, if its identity and times are unchanged. */
static const unsigned char *find_record(const struct walk *w, const char *rel, size_t rel_len, const struct stat *st)
{
    if (!w->n_slots) return NULL;
    for (size_t i = fnv1a(rel, rel_len) & (w->n_slots - 1); w->slots[i]; i = (i + 1) & (w->n_slots - 1)) {
        const unsigned char *p = w->prev + w->slots[i] - 1;
        struct rec r;
        memcpy(&r, p, REC_SIZE);
        if (r.rel_len != rel_len || memcmp(p + REC_SIZE, rel, rel_len) != 0) continue;
        if (r.dev == (uint64_t)st->st_dev && r.ino == (uint64_t)st->st_ino
            && r.ctime_s == st->st_ctim.tv_sec && r.ctime_ns == st->st_ctim.tv_nsec
            && r.mtime_s == st->st_mtim.tv_sec && r.mtime_ns == st->st_mtim.tv_nsec)
            return p;
        return NULL;
    }
    return NULL;
}

static void add_item(struct out *items, char tag, const char *name, size_t len)
{
    uint16_t n = (uint16_t)len;
    put(items, &tag, 1);
    put(items, &n, sizeof n);
    put(items, name, len);
}

/* Changed long enough before the walk that a later change must move its ctime.
 * A ctime with no nanoseconds suggests coarse or synthesized timestamps: not recorded. */
static int settled(const struct walk *w, const struct stat *st)
{
    int64_t s = st->st_ctim.tv_sec, ns = st->st_ctim.tv_nsec;
    if (ns == 0 || s > w->now_s || w->now_s - s > INT64_MAX / 1000000000 - 1) return 0;
    return (w->now_s - s) * 1000000000 + (w->now_ns - ns) > w->settle_ns;
}

static void add_record(struct walk *w, const struct stat *st, const char *rel, size_t rel_len,
                       uint32_t visited, const struct out *items)
{
    if (!w->next || items->failed || !settled(w, st)) return;
    struct rec r = {
        (uint64_t)st->st_dev, (uint64_t)st->st_ino,
        st->st_ctim.tv_sec, st->st_ctim.tv_nsec, st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
        visited, (uint32_t)rel_len, (uint32_t)items->len, 0,
    };
    put(w->next, &r, REC_SIZE);
    put(w->next, rel, rel_len);
    put(w->next, items->buf, items->len);
}

static int name_matches(const struct walk *w, const char *name)
{
    for (int i = 0; i < w->n_patterns; i++)
        if (fnmatch(w->patterns[i], name, 0) == 0) return 1;
    return 0;
}

static void walk_dir(struct walk *w, int dfd, const struct stat *st, char *rel, size_t rel_len);

/* `rel` + "/" + `name` (or `name` at the root), if it fits; its length, or 0. */
static size_t join(char *rel, size_t rel_len, const char *name, size_t nl)
{
    if (rel_len + nl + 2 >= SBX_PATH_MAX) return 0;
    size_t at = rel_len;
    if (at) rel[at++] = '/';
    memcpy(rel + at, name, nl);
    rel[at + nl] = '\0';
    return at + nl;
}

static void replay(struct walk *w, int dfd, const unsigned char *p, char *rel, size_t rel_len);

/* Whether a record lists a subdirectory, which its replay descends from the directory's descriptor. */
static int lists_subdirectories(const unsigned char *p)
{
    struct rec r;
    memcpy(&r, p, REC_SIZE);
    const unsigned char *items = p + REC_SIZE + r.rel_len, *end = items + r.items_len;
    while (end - items >= 3) {
        if (items[0] == 's') return 1;
        uint16_t nl;
        memcpy(&nl, items + 1, sizeof nl);
        if (nl > end - items - 3) break;
        items += 3 + nl;
    }
    return 0;
}

/* What trusted_fs found for `dev`: 1 or 0, or -1 if it has not judged that device yet. */
static int judged_fs(const struct walk *w, dev_t dev)
{
    for (int i = 0; i < w->n_fs; i++)
        if (w->fs_dev[i] == (uint64_t)dev) return w->fs_ok[i];
    return -1;
}

/* Directories are opened O_PATH (no permission check, no file open) and
 * reopened for reading only when their record cannot answer. One whose
 * unchanged record lists no subdirectory (most of a large tree's: its
 * leaves) is answered from fstatat alone, which sees what the opened
 * descriptor's fstat would (the entry itself, or a mount over it), in one
 * system call instead of three. */
static void descend(struct walk *w, int dfd, const char *name, char *rel, size_t len)
{
    struct stat st;
    if (w->n_slots && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)
        && judged_fs(w, st.st_dev) == 1) {
        const unsigned char *known = find_record(w, rel, len, &st);
        if (known && !lists_subdirectories(known)) {
            replay(w, -1, known, rel, len);
            return;
        }
    }
    int sub = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) return;
    if (fstat(sub, &st) == 0) walk_dir(w, sub, &st, rel, len);
    close(sub);
}

/* Answers a directory from its unchanged record: its matches, then its subdirectories walked. */
static void replay(struct walk *w, int dfd, const unsigned char *p, char *rel, size_t rel_len)
{
    struct rec r;
    memcpy(&r, p, REC_SIZE);
    w->visited += r.visited;
    w->dirs_reused++;
    const unsigned char *items = p + REC_SIZE + r.rel_len, *end = items + r.items_len;
    char name[256];
    while (end - items >= 3) {
        char tag = (char)items[0];
        uint16_t nl;
        memcpy(&nl, items + 1, sizeof nl);
        items += 3;
        if (nl == 0 || nl >= sizeof name || nl > end - items) break;
        memcpy(name, items, nl);
        name[nl] = '\0';
        items += nl;
        /* Only sandboxd writes an index, but a damaged one must not lead the walk out of its tree. */
        if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) break;
        size_t len = join(rel, rel_len, name, nl);
        if (len) {
            if (tag == 's') descend(w, dfd, name, rel, len);
            else emit(&w->out, tag, rel);
        }
        rel[rel_len] = '\0';
    }
    /* After the subdirectories, as a directory read is recorded: an unchanged tree gives identical bytes. */
    if (w->next) put(w->next, p, REC_SIZE + r.rel_len + r.items_len);
}

/* Local file systems whose ctime the kernel sets on every change to a
 * directory and no user can set back. Elsewhere (vfat derives ctime from
 * mtime; FUSE, NFS, 9p, SMB report another machine's or a cached time) the
 * index is neither used nor written. */
static int trusted_fs(struct walk *w, int fd, const struct stat *st)
{
    int judged = judged_fs(w, st->st_dev);
    if (judged >= 0) return judged;
    struct statfs sf;
    int ok = 0;
    if (fstatfs(fd, &sf) == 0) {
        switch ((unsigned long)sf.f_type) {
        case 0xEF53:     /* ext2/3/4 */
        case 0x58465342: /* xfs */
        case 0x9123683E: /* btrfs */
        case 0x01021994: /* tmpfs */
        case 0xF2F52010: /* f2fs */
            ok = 1;
        }
    }
    if (w->n_fs < (int)(sizeof w->fs_dev / sizeof w->fs_dev[0])) {
        w->fs_dev[w->n_fs] = (uint64_t)st->st_dev;
        w->fs_ok[w->n_fs++] = (signed char)ok;
    }
    return ok;
}

static void walk_dir(struct walk *w, int dfd, const struct stat *st, char *rel, size_t rel_len)
{
    int indexed = w->next && trusted_fs(w, dfd, st);
    const unsigned char *known = indexed ? find_record(w, rel, rel_len, st) : NULL;
    if (known) { replay(w, dfd, known, rel, rel_len); return; }
    w->dirs_read++;
    dfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* the caller's O_PATH fd stays theirs */
    if (dfd < 0) return;
    struct out items = { NULL, 0, 0, 0 };
    uint32_t visited = 0;
    /* On the heap: a deep tree must not exhaust the stack, one frame per level. */
    char *buf = malloc(32768);
    if (!buf) { close(dfd); w->out.failed = 1; return; }
    for (;;) {
        long n = syscall(SYS_getdents64, dfd, buf, 32768);
        if (n < 0) items.failed = 1; /* a partial read must not be recorded as the whole directory */
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
            w->visited++;
            visited++;
            size_t nl = strlen(name);
            size_t len = join(rel, rel_len, name, nl);
            if (!len) { items.failed = 1; continue; }
            unsigned char type = d->d_type;
            if (type == DT_UNKNOWN) {
                struct stat sub;
                if (fstatat(dfd, name, &sub, AT_SYMLINK_NOFOLLOW) == 0)
                    type = S_ISDIR(sub.st_mode) ? DT_DIR : S_ISLNK(sub.st_mode) ? DT_LNK : DT_REG;
                else
                    items.failed = 1;
            }
            char tag = type == DT_DIR ? 'd' : type == DT_LNK ? 'l' : 'f';
            int matched = 0;
            if (w->n_patterns && name_matches(w, name)) {
                emit(&w->out, tag, rel);
                add_item(&items, tag, name, nl);
                matched = 1;
            } else if (w->n_inodes && type != DT_DIR && type != DT_LNK) {
                struct stat sub;
                if (fstatat(dfd, name, &sub, AT_SYMLINK_NOFOLLOW) == 0 && sub.st_nlink > 1) {
                    for (int i = 0; i < w->n_inodes; i++)
                        if (w->inodes[2 * i] == (uint64_t)sub.st_dev && w->inodes[2 * i + 1] == (uint64_t)sub.st_ino) {
                            emit(&w->out, tag, rel);
                            break;
                        }
                }
            }
            if (type == DT_DIR && !matched) {
                add_item(&items, 's', name, nl);
                descend(w, dfd, name, rel, len);
            }
            rel[rel_len] = '\0';
        }
    }
    free(buf);
    close(dfd);
    if (!indexed) items.failed = 1;
    add_record(w, st, rel, rel_len, visited, &items);
    free(items.buf);
}

char *sbx_walk(const char *root, const char *const *patterns, int n_patterns,
               const uint64_t *inodes, int n_inodes, long *visited, struct sbx_walk_index *index)
{
    struct walk w = { .patterns = patterns, .n_patterns = n_patterns, .inodes = inodes, .n_inodes = n_inodes };
    struct out next = { NULL, 0, 0, 0 };
    /* The index stands for name matches only: the inode pass stats files, whose links change freely. */
    if (index && n_inodes == 0) {
        index->next = NULL;
        index->next_len = 0;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        w.now_s = now.tv_sec;
        w.now_ns = now.tv_nsec;
        w.settle_ns = index->settle_ns;
        load_index(&w, index->prev, index->prev_len);
        put(&next, index_magic, sizeof index_magic);
        put(&next, &(uint64_t){ 0 }, sizeof(uint64_t));
        w.next = &next;
    }
    int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) { int e = errno; free(w.slots); free(next.buf); errno = e; return NULL; }
    char rel[SBX_PATH_MAX];
    rel[0] = '\0';
    struct stat st;
    if (fstat(fd, &st) == 0) walk_dir(&w, fd, &st, rel, 0);
    close(fd);
    free(w.slots);
    emit(&w.out, '.', "");
    if (w.out.failed) { free(w.out.buf); free(next.buf); errno = ENOMEM; return NULL; }
    if (visited) *visited = w.visited;
    if (w.next) {
        index->dirs_read = w.dirs_read;
        index->dirs_reused = w.dirs_reused;
        if (next.failed) {
            free(next.buf);
        } else {
            uint64_t sum = fnv1a(next.buf + HEAD_SIZE, next.len - HEAD_SIZE);
            memcpy(next.buf + sizeof index_magic, &sum, sizeof sum);
            index->next = next.buf;
            index->next_len = next.len;
        }
    }
    return w.out.buf;
}
