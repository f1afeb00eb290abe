/*
 * aggressive.c: the opt-in, lossy prompt normalization. Steps, in order: HTML character
 * references decoded (twice, as the encoders' cleaning does), NFKC with Unicode case folding
 * (libutf8proc, default-ignorable code points dropped), punctuation removed (apostrophes vanish,
 * other punctuation separates words), white space collapsed, British spellings mapped to American
 * ones and configured synonyms applied word by word. The result is again NFKC-case-folded text,
 * so normalizing it a second time changes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "key.h"

static const utf8proc_option_t NFKC_CF =
    UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE;

/* Runs utf8proc over in[0..len) and appends the result. */
static int nfkc_casefold(const char *in, size_t len, gencache__buf *out)
{
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = (unsigned char)in[i] < 0x80;
    if (ascii) {
        /* NFKC is the identity on ASCII and case folding is A-Z -> a-z: skip the library. */
        for (size_t i = 0; i < len; i++) {
            char c = in[i];
            gencache__buf_putc(out, c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c);
        }
        return GENCACHE_OK;
    }
    utf8proc_uint8_t *mapped = NULL;
    utf8proc_ssize_t n =
        utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len, &mapped, NFKC_CF);
    if (n < 0)
        return n == UTF8PROC_ERROR_NOMEM ? GENCACHE_ENOMEM : GENCACHE_EPARSE;
    gencache__buf_append(out, mapped, (size_t)n);
    free(mapped);
    return GENCACHE_OK;
}

static bool is_apostrophe(utf8proc_int32_t cp)
{
    return cp == 0x27 || cp == 0x2018 || cp == 0x2019 || cp == 0x201B || cp == 0x2032;
}

/* Drops punctuation and collapses white space: the result is words separated by one space. */
static void filter(const char *in, size_t len, gencache__buf *out)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)in;
    utf8proc_ssize_t left = (utf8proc_ssize_t)len;
    bool pending_space = false, any = false;
    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n;
        bool space = false, drop = false;
        if (*p < 0x80) {
            /* ASCII: the same classes, without the property lookup. */
            cp = *p, n = 1;
            if (cp <= 0x20 || cp == 0x7F)
                space = true;
            else if (cp == '\'')
                drop = true;
            else if (strchr("!\"#%&()*,-./:;?@[\\]_{}", cp))
                space = true;
            goto classified;
        }
        n = utf8proc_iterate(p, left, &cp);
        if (n <= 0)
            break; /* cannot happen: the input is valid UTF-8 */
        switch (utf8proc_category(cp)) {
        case UTF8PROC_CATEGORY_ZS:
        case UTF8PROC_CATEGORY_ZL:
        case UTF8PROC_CATEGORY_ZP:
        case UTF8PROC_CATEGORY_CC:
            space = true;
            break;
        case UTF8PROC_CATEGORY_CF:
            drop = true;
            break;
        case UTF8PROC_CATEGORY_PC:
        case UTF8PROC_CATEGORY_PD:
        case UTF8PROC_CATEGORY_PS:
        case UTF8PROC_CATEGORY_PE:
        case UTF8PROC_CATEGORY_PI:
        case UTF8PROC_CATEGORY_PF:
        case UTF8PROC_CATEGORY_PO:
            if (is_apostrophe(cp))
                drop = true;
            else
                space = true;
            break;
        default:
            break;
        }
    classified:
        if (space) {
            pending_space = any;
        } else if (!drop) {
            if (pending_space)
                gencache__buf_putc(out, ' ');
            pending_space = false;
            any = true;
            gencache__buf_append(out, p, (size_t)n);
        }
        p += n;
        left -= n;
    }
}

static const char *synonym_for(const gencache__synonym *syn, size_t n_syn, const char *w,
                               size_t len)
{
    size_t lo = 0, hi = n_syn;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *f = syn[mid].from;
        int c = strncmp(w, f, len); /* the probe holds no NUL */
        if (c == 0 && f[len] != '\0')
            c = -1;
        if (c == 0)
            return syn[mid].to;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int gencache__key_aggressive(const char *in, size_t len, const gencache__synonym *syn, size_t n_syn,
                             gencache__buf *out)
{
    gencache__buf a = {0}, b = {0};
    int rc = GENCACHE_OK;

    /* Entities twice: "&amp;lt;" is what a page that escaped "&lt;" once more carries. */
    gencache__key_html_unescape(in, len, &a);
    gencache__key_html_unescape(a.data ? a.data : "", a.len, &b);
    a.len = 0;
    if (a.failed || b.failed) {
        rc = GENCACHE_ENOMEM;
        goto done;
    }
    rc = nfkc_casefold(b.data ? b.data : "", b.len, &a);
    if (rc != GENCACHE_OK)
        goto done;
    b.len = 0;
    filter(a.data ? a.data : "", a.len, &b);
    /* Dropping an apostrophe can leave a combining mark next to a letter it now composes with:
     * compose once more so that the output is a fixed point. */
    a.len = 0;
    rc = nfkc_casefold(b.data ? b.data : "", b.len, &a);
    if (rc != GENCACHE_OK)
        goto done;
    if (a.failed || b.failed) {
        rc = GENCACHE_ENOMEM;
        goto done;
    }

    const char *s = a.data ? a.data : "";
    size_t i = 0, n = a.len;
    bool first = true;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ' ')
            j++;
        const char *w = s + i;
        size_t wlen = j - i;
        const char *am = gencache__key_american(w, wlen);
        if (am) {
            w = am;
            wlen = strlen(am);
        }
        const char *to = synonym_for(syn, n_syn, w, wlen);
        if (to) {
            w = to;
            wlen = strlen(to);
        }
        if (wlen > 0) {
            if (!first)
                gencache__buf_putc(out, ' ');
            gencache__buf_append(out, w, wlen);
            first = false;
        }
        i = j + 1;
    }
    if (out->failed)
        rc = GENCACHE_ENOMEM;
done:
    gencache__buf_free(&a);
    gencache__buf_free(&b);
    return rc;
}
