/*
 * Releasing a sandbox's mount namespace off the critical path.
 *
 * When the last process of a sandbox exits, the kernel unmounts its whole
 * tree in that process's exit: 0.3-0.6 ms for a plain root, more with
 * persistent overlays, whose unmount syncs the upper layers' filesystem.
 * The supervisor waits for that exit, so all of it used to sit between the
 * command's end and sandboxd's answer. sbx_spawn therefore keeps a
 * descriptor of the namespace; pid 1's exit then only drops a reference,
 * and the final close, which runs the teardown in the closing thread's
 * return to user space, happens here on a helper thread while the
 * supervisor removes cgroups and writes its records. sbx_release_wait joins
 * it, so nothing of the sandbox outlives sandboxd.
 */
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct sbx_release {
    pthread_t thread;
    int fd;
};

static void *release(void *arg)
{
    struct sbx_release *r = arg;
    close(r->fd);
    return NULL;
}

struct sbx_release *sbx_release_async(int fd)
{
    struct sbx_release *r = malloc(sizeof *r);
    if (r) {
        r->fd = fd;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        /* The thread only closes a descriptor: a small stack is plenty. */
        pthread_attr_setstacksize(&attr, 64 * 1024);
        int rc = pthread_create(&r->thread, &attr, release, r);
        pthread_attr_destroy(&attr);
        if (rc == 0) return r;
        free(r);
    }
    close(fd);
    return NULL;
}

void sbx_release_wait(struct sbx_release *r)
{
    if (!r) return;
    pthread_join(r->thread, NULL);
    free(r);
}
