/*
 * normalize.c: prompt normalization, the lossless modes and the dispatch. `safe` and `clip` only
 * rewrite prompts made of printable ASCII other than '&' plus TAB, LF and CR: on those, every text
 * encoder's Python cleaning (ftfy, html.unescape twice, white-space collapsing, CLIP's lowercasing)
 * is known to reduce to collapsing white space (and lowercasing A-Z), so merging them never merges
 * prompts an encoder tells apart. Every other prompt is left byte for byte as given.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "key.h"

bool gencache__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x01 && c < 0x80) {
            p++;
            continue;
        }
        if (c == 0)
            return false;
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n + 1;
    }
    return true;
}

/* The set of prompts safe and clip may touch: printable ASCII except '&', plus TAB, LF, CR. */
static bool plain_ascii(const char *s, size_t len)
{
    size_t i = 0;
#ifdef __SSE2__
    /* Sixteen bytes at a time. In the signed compares bytes of 0x80 and up are negative, so they
     * fall below 0x20 with the control characters. */
    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i ws = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\t')),
                                  _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')),
                                               _mm_cmpeq_epi8(v, _mm_set1_epi8('\r'))));
        __m128i bad = _mm_andnot_si128(ws, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
        bad = _mm_or_si128(bad, _mm_cmpgt_epi8(v, _mm_set1_epi8(0x7E)));
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('&')));
        if (_mm_movemask_epi8(bad))
            return false;
    }
#endif
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c <= 0x7E) {
            if (c == '&')
                return false;
        } else if (c != '\t' && c != '\n' && c != '\r') {
            return false;
        }
    }
    return true;
}

static void collapse_ascii(const char *s, size_t len, bool lower, gencache__buf *out)
{
    /* The output is never longer than the input: reserve once, then write directly. An empty
     * prompt writes nothing (and an empty buffer may have no storage to point into). */
    if (len == 0 || !gencache__buf_reserve(out, len))
        return;
    char *w = out->data + out->len, *start = w;
    bool pending_space = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            pending_space = w != start;
            continue;
        }
        if (pending_space)
            *w++ = ' ';
        pending_space = false;
        if (lower && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        *w++ = c;
    }
    out->len += (size_t)(w - start);
}

int gencache__key_normalize(gencache_norm_mode mode, const char *in, size_t len,
                            const gencache__synonym *syn, size_t n_syn, gencache__buf *out)
{
    /* A plain-ASCII prompt is valid UTF-8 without NUL: the common case is checked only once. */
    bool plain = (mode == GENCACHE_NORM_SAFE || mode == GENCACHE_NORM_CLIP) && plain_ascii(in, len);
    if (!plain && !gencache__utf8_valid(in, len))
        return GENCACHE_EPARSE;
    switch (mode) {
    case GENCACHE_NORM_EXACT:
    case GENCACHE_NORM_TOKENS:
        gencache__buf_append(out, in, len);
        break;
    case GENCACHE_NORM_SAFE:
    case GENCACHE_NORM_CLIP:
        if (plain)
            collapse_ascii(in, len, mode == GENCACHE_NORM_CLIP, out);
        else
            gencache__buf_append(out, in, len);
        break;
    case GENCACHE_NORM_AGGRESSIVE: {
        int rc = gencache__key_aggressive(in, len, syn, n_syn, out);
        if (rc != GENCACHE_OK)
            return rc;
        break;
    }
    default:
        return GENCACHE_EINVAL;
    }
    return out->failed ? GENCACHE_ENOMEM : GENCACHE_OK;
}

static const char *const mode_names[] = {
    [GENCACHE_NORM_EXACT] = "exact",
    [GENCACHE_NORM_SAFE] = "safe",
    [GENCACHE_NORM_CLIP] = "clip",
    [GENCACHE_NORM_TOKENS] = "tokens",
    [GENCACHE_NORM_AGGRESSIVE] = "aggressive",
};
#define N_MODES (sizeof mode_names / sizeof mode_names[0])

int gencache_norm_mode_parse(const char *name, gencache_norm_mode *out)
{
    if (out)
        *out = GENCACHE_NORM_SAFE;
    if (!name || !out)
        return GENCACHE_EINVAL;
    for (size_t i = 0; i < N_MODES; i++) {
        if (strcmp(name, mode_names[i]) == 0) {
            *out = (gencache_norm_mode)i;
            return GENCACHE_OK;
        }
    }
    return GENCACHE_EINVAL;
}

const char *gencache_norm_mode_name(gencache_norm_mode mode)
{
    if ((unsigned)mode >= N_MODES)
        return NULL;
    return mode_names[mode];
}

int gencache_normalize(gencache_norm_mode mode, const char *in, size_t len, char **out,
                       size_t *out_len)
{
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!out || (!in && len > 0) || (unsigned)mode >= N_MODES)
        return GENCACHE_EINVAL;
    gencache__buf b = {0};
    int rc = gencache__key_normalize(mode, in ? in : "", len, NULL, 0, &b);
    if (rc == GENCACHE_OK && !gencache__buf_terminate(&b))
        rc = GENCACHE_ENOMEM;
    if (rc != GENCACHE_OK) {
        gencache__buf_free(&b);
        return rc;
    }
    *out = b.data;
    if (out_len)
        *out_len = b.len;
    return GENCACHE_OK;
}

void gencache_free(void *ptr)
{
    free(ptr);
}
