/* The PostgreSQL back end of a halfkeyd built without libpq (meson
 * -Dpostgresql=disabled, or libpq-dev missing): db_url is refused with a
 * message that says how to get it; SQLite works as ever. */
#include <stdio.h>

#include "server/store/db.h"

hk_err hk_db_open_pg(const char *conninfo, hk_db **out, char *why,
                     size_t whylen)
{
    if (conninfo == NULL || *conninfo == '\0' || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (why != NULL && whylen > 0)
        snprintf(why, whylen,
                 "database (postgresql): this halfkeyd was built without "
                 "PostgreSQL support (install libpq-dev and build with meson "
                 "-Dpostgresql=enabled), use db = FILE for SQLite");
    return HK_ERR_CONFIG;
}
