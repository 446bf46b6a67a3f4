/* One-line log events on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common/isotime.h"
#include "server/log.h"

void hk_log(const char *level, const char *fmt, ...)
{
    char ts[HK_ISO_LEN], line[1024];
    va_list ap;

    hk_iso_time((int64_t)time(NULL), ts);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* one write per line, so concurrent threads do not interleave */
    fprintf(stderr, "%s %s %s\n", ts, level, line);
}
