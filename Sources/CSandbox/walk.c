/*
 * The blocked-path walk: finds entries of a tree whose name matches one of a
 * set of fnmatch(3) patterns, or (inode mode) whose device/inode is in a set.
 * Runs in the parent before clone, so it may allocate. getdents64 on O_PATH-free
 * directory fds, no stat() per entry in name mode: d_type is enough.
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
#include <sys/syscall.h>
#include <unistd.h>

struct out { char *buf; size_t len, cap; int failed; };

static void emit(struct out *o, char type, const char *rel)
{
    size_t n = strlen(rel);
    if (o->len + n + 3 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (o->len + n + 3 > cap) cap *= 2;
        char *nb = realloc(o->buf, cap);
        if (!nb) { o->failed = 1; return; }
        o->buf = nb;
        o->cap = cap;
    }
    o->buf[o->len++] = type;
    memcpy(o->buf + o->len, rel, n);
    o->len += n;
    o->buf[o->len++] = '\n';
}

struct walk {
    const char *const *patterns;
    int n_patterns;
    const uint64_t *inodes; /* dev, ino pairs */
    int n_inodes;
    struct out out;
    long visited;
};

static int name_matches(const struct walk *w, const char *name)
{
    for (int i = 0; i < w->n_patterns; i++)
        if (fnmatch(w->patterns[i], name, 0) == 0) return 1;
    return 0;
}

static void walk_dir(struct walk *w, int dfd, char *rel, size_t rel_len)
{
    char buf[32768];
    for (;;) {
        long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
            w->visited++;
            size_t nl = strlen(name);
            if (rel_len + nl + 2 >= SBX_PATH_MAX) continue;
            size_t at = rel_len;
            if (at) rel[at++] = '/';
            memcpy(rel + at, name, nl + 1);
            unsigned char type = d->d_type;
            if (type == DT_UNKNOWN) {
                struct stat st;
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                    type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_REG;
            }
            char tag = type == DT_DIR ? 'd' : type == DT_LNK ? 'l' : 'f';
            int matched = 0;
            if (w->n_patterns && name_matches(w, name)) {
                emit(&w->out, tag, rel);
                matched = 1;
            } else if (w->n_inodes && type != DT_DIR && type != DT_LNK) {
                struct stat st;
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink > 1) {
                    for (int i = 0; i < w->n_inodes; i++)
                        if (w->inodes[2 * i] == (uint64_t)st.st_dev && w->inodes[2 * i + 1] == (uint64_t)st.st_ino) {
                            emit(&w->out, tag, rel);
                            break;
                        }
                }
            }
            if (type == DT_DIR && !matched) {
                int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                    walk_dir(w, sub, rel, at + nl);
                    close(sub);
                }
            }
            rel[rel_len] = '\0';
        }
    }
}

char *sbx_walk(const char *root, const char *const *patterns, int n_patterns,
               const uint64_t *inodes, int n_inodes, long *visited)
{
    struct walk w = { patterns, n_patterns, inodes, n_inodes, { NULL, 0, 0, 0 }, 0 };
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return NULL;
    char rel[SBX_PATH_MAX];
    rel[0] = '\0';
    walk_dir(&w, fd, rel, 0);
    close(fd);
    emit(&w.out, '.', "");
    if (w.out.failed) { free(w.out.buf); errno = ENOMEM; return NULL; }
    w.out.buf[w.out.len - 1] = '\0';
    if (visited) *visited = w.visited;
    return w.out.buf;
}
