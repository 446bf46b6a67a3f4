/* `halfkey doctor`: diagnoses a client token and its server, one line per
 * check (OK, WARN, FAIL, or SKIP when an earlier failure makes the check
 * meaningless), each problem followed by a `fix:` line saying how to
 * repair it. Reads only, with one exception: given the right PIN it logs
 * in (resetting the wrong-PIN counter, as any login does); a wrong PIN is
 * checked without counting towards the lockout (hk_ks_pin_check). */
#ifndef HK_DOCTOR_H
#define HK_DOCTOR_H

#include <stdio.h>

#include "client/keystore.h"
#include "common/error.h"

/* Runs every check on the token at `dir` (NULL: the default directory,
 * see hk_ks_dir_resolve) and prints the report to `out`. `pin` (or NULL)
 * adds the login check and unseals every key. *failures gets the number of
 * FAIL lines. HK_ERR_ARG on a bad argument, else HK_OK. */
HK_WUR hk_err hk_doctor_run(const char *dir, const char *pin, FILE *out,
                            int *failures);

/* How to get past a locked user PIN on this token: the SO's reset
 * (`halfkey passwd --so-pin-file`, PKCS#11 C_InitPIN) when the token has
 * what it needs, else a backup or a new token. A static string. */
const char *hk_doctor_locked_pin_fix(const hk_ks_tokeninfo *ti);

#endif
