/*
 * A network namespace prepared while sandboxd plans.
 *
 * Creating a network namespace is the costliest part of clone3: 0.4-0.6 ms of
 * kernel time registering sysctl tables and the loopback device, on the
 * critical path of every launch. When sandboxd runs as root it can create the
 * namespace on a helper thread as soon as it starts, bring lo up there, and
 * let the launch enter it around clone3 (setns there and back) instead of
 * passing CLONE_NEWNET: the kernel's work overlaps with profile loading and
 * planning on the other core.
 *
 * Such a namespace belongs to the host's user namespace, not the sandbox's:
 * root in the sandbox holds no capability over it (it cannot reconfigure lo,
 * bind privileged ports or write its sysctls). The launcher therefore uses it
 * only for plans that keep no network capability. An unprivileged sandboxd
 * cannot create one (creating a user namespace needs a single-threaded
 * process) and keeps CLONE_NEWNET.
 */
#define _GNU_SOURCE
#include "csandbox.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

struct sbx_netns {
    pthread_t thread;
    int fd;      /* the prepared namespace, lo up; -1 until ready or on failure */
    int home_fd; /* sandboxd's own network namespace */
    int err;
};

static void *prepare(void *arg)
{
    struct sbx_netns *n = arg;
    /* The thread's own namespaces are its own: unshare changes no other thread. */
    n->home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (n->home_fd < 0 || unshare(CLONE_NEWNET) < 0) {
        n->err = errno;
        return NULL;
    }
    long up = sbx_loopback_up();
    if (up < 0) {
        n->err = (int)-up;
        return NULL;
    }
    n->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (n->fd < 0) n->err = errno;
    return NULL;
}

struct sbx_netns *sbx_netns_prepare(void)
{
    struct sbx_netns *n = malloc(sizeof *n);
    if (!n) return NULL;
    n->fd = n->home_fd = -1;
    n->err = 0;
    /* On another core than this one, where the planning runs: placed here,
     * the kernel work would delay the planning instead of overlapping it. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    cpu_set_t cpus;
    int here = sched_getcpu();
    if (here >= 0 && sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1 && CPU_ISSET(here, &cpus)) {
        CPU_CLR(here, &cpus);
        pthread_attr_setaffinity_np(&attr, sizeof cpus, &cpus);
    }
    int rc = pthread_create(&n->thread, &attr, prepare, n);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(n);
        errno = rc;
        return NULL;
    }
    return n;
}

int sbx_netns_wait(struct sbx_netns *n, int *fd, int *home_fd)
{
    pthread_join(n->thread, NULL);
    n->thread = 0;
    if (n->fd < 0 || n->home_fd < 0) {
        errno = n->err;
        return -1;
    }
    *fd = n->fd;
    *home_fd = n->home_fd;
    return 0;
}

void sbx_netns_release(struct sbx_netns *n)
{
    if (n->thread) pthread_join(n->thread, NULL);
    if (n->fd >= 0) close(n->fd);
    if (n->home_fd >= 0) close(n->home_fd);
    free(n);
}
