/* Helpers shared by the launcher's C files: all async-signal-safe, no allocation. */
#ifndef CSANDBOX_INTERNAL_H
#define CSANDBOX_INTERNAL_H
#include <stddef.h>
#include <sys/types.h>

#define SBX_PATH_MAX 4096
/* Exit code of a sandbox whose setup failed; the parent reports the stage instead. */
#define SBX_EXIT_SETUP 125

int sbx_write_all(int fd, const void *buf, size_t len);
/* dst = a + b; -1 with ENAMETOOLONG if it does not fit. */
int sbx_concat(char *dst, size_t cap, const char *a, const char *b);
/* Decimal of v into buf (no terminator needed by callers, but one is written); returns length. */
int sbx_format_int(char *buf, size_t cap, long v);
/* "/proc/<pid>/<name>" */
void sbx_format_proc_path(char *buf, size_t cap, pid_t pid, const char *name);
#endif
