/* One-line log events on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "server/log.h"

void hk_log(const char *level, const char *fmt, ...)
{
    char ts[32], line[1024];
    struct tm tm;
    time_t now = time(NULL);
    va_list ap;

    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* one write per line, so concurrent threads do not interleave */
    fprintf(stderr, "%s %s %s\n", ts, level, line);
}
