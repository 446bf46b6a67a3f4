/* ISO 8601 times (common/isotime.h). */
#include <time.h>

#include "common/isotime.h"

void hk_iso_time(int64_t t, char out[HK_ISO_LEN])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, HK_ISO_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        out[0] = '?';
        out[1] = 0;
    }
}
