/* The optional one-line failure reason ("why" buffer)
 * that functions reading files, configuration or a database fill in for
 * the operator. */
#ifndef HK_WHY_H
#define HK_WHY_H

#include <stddef.h>

/* printf into why[0..len) when why is not NULL and len > 0 (truncated,
 * always NUL-terminated). */
void hk_why(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
