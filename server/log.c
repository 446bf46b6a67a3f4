/* One-line log events on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common/isotime.h"
#include <libwebsockets.h>

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

void hk_log_lws(int level, const char *line)
{
    char msg[512];
    size_t i, n = 0;

    /* one k=v field: quotes and control characters (the trailing
     * newline) replaced, so a line stays one parseable event */
    for (i = 0; line[i] && n + 1 < sizeof(msg); i++)
        if ((unsigned char)line[i] >= ' ' && line[i] != '"')
            msg[n++] = line[i];
        else if (line[i] == '"')
            msg[n++] = '\'';
    while (n > 0 && msg[n - 1] == ' ')
        n--;
    msg[n] = 0;
    hk_log(level == LLL_ERR ? "error" : "warn", "event=lws msg=\"%s\"", msg);
}
