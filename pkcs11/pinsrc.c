/* The protected authentication path: with $HALFKEY_PKCS11_PIN_FILE set (a
 * regular file of mode 0600 or stricter holding the PIN on its first
 * line), tokens report CKF_PROTECTED_AUTHENTICATION_PATH and C_Login with
 * a NULL PIN reads the PIN from that file (browsers, daemons and headless
 * tests cannot answer a PIN prompt). With $HALFKEY_PKCS11_AUTO_LOGIN=1 as
 * well, tokens do not even report CKF_LOGIN_REQUIRED: C_OpenSession logs
 * the slot in from the file, for applications that can only prompt
 * (Chromium shows a PIN dialog even for a protected authentication path,
 * which a headless browser cannot answer). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pkcs11/hk_p11.h"

#define HK_PIN_FILE_ENV "HALFKEY_PKCS11_PIN_FILE"
#define HK_AUTO_LOGIN_ENV "HALFKEY_PKCS11_AUTO_LOGIN"

int hk_p11_pin_path(void)
{
    const char *f = getenv(HK_PIN_FILE_ENV);

    return f != NULL && f[0] != 0;
}

int hk_p11_auto_login(void)
{
    const char *v = getenv(HK_AUTO_LOGIN_ENV);

    return hk_p11_pin_path() && v != NULL && strcmp(v, "1") == 0;
}

static CK_RV hk_p11_pin_fail(const char *f, const char *why)
{
    fprintf(stderr, "halfkey-pkcs11: PIN file %s: %s\n", f, why);
    return CKR_FUNCTION_FAILED;
}

CK_RV hk_p11_pin_read(char **out)
{
    const char *f = getenv(HK_PIN_FILE_ENV);
    char *buf = NULL;
    struct stat st;
    ssize_t n;
    int fd;

    if (!hk_p11_pin_path())
        return CKR_ARGUMENTS_BAD;
    if ((fd = open(f, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return hk_p11_pin_fail(f, "cannot open");
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (st.st_mode & 077) != 0) {
        close(fd);
        return hk_p11_pin_fail(f, "not a regular file of mode 0600");
    }
    if ((buf = OPENSSL_zalloc(HK_KS_PIN_MAX + 2)) == NULL) {
        close(fd);
        return CKR_HOST_MEMORY;
    }
    n = read(fd, buf, HK_KS_PIN_MAX + 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    buf[strcspn(buf, "\r\n")] = 0;
    OPENSSL_cleanse(buf + strlen(buf), HK_KS_PIN_MAX + 2 - strlen(buf));
    if (strlen(buf) < HK_KS_PIN_MIN_OLD || strlen(buf) > HK_KS_PIN_MAX) {
        OPENSSL_clear_free(buf, HK_KS_PIN_MAX + 2);
        return CKR_PIN_LEN_RANGE;
    }
    *out = buf;
    return CKR_OK;
}
