/* Times for people and scripts: ISO 8601 in UTC ("2025-06-01T10:02:11Z"),
 * the one form the logs, `--json` outputs and messages use. */
#ifndef HK_ISOTIME_H
#define HK_ISOTIME_H

#include <stdint.h>

#define HK_ISO_LEN 32 /* buffer size, NUL included */

/* Seconds since 1970 into out[HK_ISO_LEN]; "?" if gmtime fails. */
void hk_iso_time(int64_t t, char out[HK_ISO_LEN]);

#endif
