/* Failure reasons (see why.h). */
#include <stdarg.h>
#include <stdio.h>

#include "common/why.h"

void hk_why(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}
