/*
 * The cgroup janitor. cgroup directories are the one thing a sandbox leaves on
 * the host that the kernel does not clean up when its processes die, so a
 * SIGKILLed sandboxd would leak them. The janitor is forked before the
 * sandbox starts, holds the read end of a pipe whose write end only sandboxd
 * holds, and on EOF without a dismissal removes the directories once the
 * sandbox's processes (killed by PDEATHSIG) are gone.
 */
#define _GNU_SOURCE
#include "csandbox.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void kill_members(const char *dir)
{
    char path[SBX_PATH_MAX], buf[4096];
    if (sbx_concat(path, sizeof path, dir, "/cgroup.procs") < 0) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    long v = 0;
    int have = 0;
    for (char *p = buf; *p; p++) {
        if (*p >= '0' && *p <= '9') { v = v * 10 + (*p - '0'); have = 1; }
        else { if (have && v > 1) kill((pid_t)v, SIGKILL); v = 0; have = 0; }
    }
    if (have && v > 1) kill((pid_t)v, SIGKILL);
}

__attribute__((noreturn)) static void janitor_main(int rfd, const char *const *dirs)
{
    setsid();
    for (int s = 1; s < NSIG; s++) {
        struct sigaction ign = { .sa_handler = SIG_IGN };
        if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) sigaction(s, &ign, NULL);
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int i = 0; i < 3; i++) if (devnull >= 0 && devnull != i) dup2(devnull, i);
    if (rfd > 3) syscall(SYS_close_range, 3, (unsigned)rfd - 1, 0);
    syscall(SYS_close_range, (unsigned)rfd + 1, ~0u, 0);

    char c;
    ssize_t r;
    do r = read(rfd, &c, 1); while (r < 0 && errno == EINTR);
    if (r == 1 && c == 'd') _exit(0);
    /* sandboxd is gone without cleaning up. Its sandbox dies with it (PDEATHSIG);
     * wait for the cgroups to empty, then remove them. Give up after ~10 s. */
    for (int attempt = 0; attempt < 1000; attempt++) {
        int left = 0;
        for (const char *const *d = dirs; *d; d++) {
            if (rmdir(*d) == 0 || errno == ENOENT) continue;
            left = 1;
            kill_members(*d);
        }
        if (!left) break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    _exit(0);
}

int sbx_janitor_start(const char *const *dirs)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    /* exit_signal 0: no SIGCHLD to sandboxd; init reaps the janitor. */
    pid_t pid = (pid_t)syscall(SYS_clone, 0, 0, NULL, NULL, 0);
    if (pid == 0) {
        close(p[1]);
        janitor_main(p[0], dirs);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return -1;
    }
    return p[1];
}

void sbx_janitor_dismiss(int fd)
{
    char d = 'd';
    sbx_write_all(fd, &d, 1);
    close(fd);
}
