/* Minimal CHECK()-style test harness (after bitcoin-core/secp256k1): a
 * failed check prints its location and aborts the test binary. */
#ifndef HK_TEST_CHECK_H
#define HK_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define CHECK_OK(expr) CHECK((expr) == HK_OK)
#define CHECK_ERR(expr, code) CHECK((expr) == (code))

#endif
