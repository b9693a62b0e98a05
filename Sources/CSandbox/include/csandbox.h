#ifndef CSANDBOX_H
#define CSANDBOX_H
/* Interface filled in by the launcher work. */
#endif
