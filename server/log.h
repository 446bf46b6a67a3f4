/* halfkeyd's log: one line per event on stderr, "time level event k=v...".
 * Callers never pass secrets (shares, tokens, PINs, keys). */
#ifndef HK_SERVER_LOG_H
#define HK_SERVER_LOG_H

void hk_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* libwebsockets' own log lines (lws_set_log_level's emitter) as events:
 * "time level event=lws msg=..." like every other line. */
void hk_log_lws(int level, const char *line);

#endif
