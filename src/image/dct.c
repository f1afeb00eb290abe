/*
 * dct.c: the DCT-II that pHash needs, computed exactly as scipy.fftpack.dct (type 2, no
 * normalization) computes it: scipy hands the transform to pocketfft, which folds the input,
 * runs a real backward FFT (radix-4 and radix-2 passes with twiddles from its own sin/cos table)
 * and unfolds the result. We perform the same double-precision operations in the same order, so
 * every coefficient is bit-identical; that matters because pHash compares coefficients with their
 * median, and an image with symmetric content has coefficients that are zero up to rounding,
 * whose signs then decide bits. Only lengths whose factors are 2 and 4 are supported (32, 64).
 *
 * The floating-point expressions below must not be contracted into fused multiply-adds, which
 * would round differently from the reference.
 */
#pragma GCC optimize("fp-contract=off")

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "image.h"

typedef struct cplx {
    double r, i;
} cplx;

/* pocketfft's table of exp(2 pi i k / n): two short tables whose products give every entry,
 * each entry computed from the octant where sin/cos are most accurate. */
typedef struct sincos_tab {
    size_t n, mask, shift;
    cplx v1[64], v2[64];
} sincos_tab;

static cplx octant(size_t x, size_t n, double ang)
{
    cplx c;
    x <<= 3;
    if (x < 4 * n) {
        if (x < 2 * n) {
            if (x < n) {
                c.r = cos((double)x * ang);
                c.i = sin((double)x * ang);
            } else {
                c.r = sin((double)(2 * n - x) * ang);
                c.i = cos((double)(2 * n - x) * ang);
            }
        } else {
            x -= 2 * n;
            if (x < n) {
                c.r = -sin((double)x * ang);
                c.i = cos((double)x * ang);
            } else {
                c.r = -cos((double)(2 * n - x) * ang);
                c.i = sin((double)(2 * n - x) * ang);
            }
        }
    } else {
        x = 8 * n - x;
        if (x < 2 * n) {
            if (x < n) {
                c.r = cos((double)x * ang);
                c.i = -sin((double)x * ang);
            } else {
                c.r = sin((double)(2 * n - x) * ang);
                c.i = -cos((double)(2 * n - x) * ang);
            }
        } else {
            x -= 2 * n;
            if (x < n) {
                c.r = -sin((double)x * ang);
                c.i = -cos((double)x * ang);
            } else {
                c.r = -cos((double)(2 * n - x) * ang);
                c.i = -sin((double)(2 * n - x) * ang);
            }
        }
    }
    return c;
}

static void sincos_init(sincos_tab *t, size_t n)
{
    /* The angle is formed in long double and rounded once, as the reference does. */
    const long double pi = 3.141592653589793238462643383279502884197L;
    double ang = (double)(0.25L * pi / (long double)n);
    size_t nval = (n + 2) / 2;
    t->n = n;
    t->shift = 1;
    while (((size_t)1 << t->shift) * ((size_t)1 << t->shift) < nval)
        t->shift++;
    t->mask = ((size_t)1 << t->shift) - 1;
    t->v1[0].r = 1.0;
    t->v1[0].i = 0.0;
    for (size_t i = 1; i <= t->mask; i++)
        t->v1[i] = octant(i, n, ang);
    size_t n2 = (nval + t->mask) / (t->mask + 1);
    t->v2[0].r = 1.0;
    t->v2[0].i = 0.0;
    for (size_t i = 1; i < n2; i++)
        t->v2[i] = octant(i * (t->mask + 1), n, ang);
}

static cplx sincos_get(const sincos_tab *t, size_t idx)
{
    cplx c;
    if (2 * idx <= t->n) {
        cplx a = t->v1[idx & t->mask], b = t->v2[idx >> t->shift];
        c.r = a.r * b.r - a.i * b.i;
        c.i = a.r * b.i + a.i * b.r;
        return c;
    }
    idx = t->n - idx;
    cplx a = t->v1[idx & t->mask], b = t->v2[idx >> t->shift];
    c.r = a.r * b.r - a.i * b.i;
    c.i = -(a.r * b.i + a.i * b.r);
    return c;
}

#define MAX_N       64
#define MAX_FACTORS 8

typedef struct dct_plan {
    size_t n;
    size_t nf;
    size_t fct[MAX_FACTORS];
    size_t tw_off[MAX_FACTORS];
    double tw[2 * MAX_N]; /* FFT twiddles, per factor */
    double post[MAX_N];   /* DCT unfolding twiddles: cos(2 pi (k+1) / 4n) */
} dct_plan;

static void plan_init(dct_plan *p, size_t n)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    size_t len = n;
    while (len % 4 == 0) {
        p->fct[p->nf++] = 4;
        len >>= 2;
    }
    if (len % 2 == 0) {
        len >>= 1;
        p->fct[p->nf++] = 2;
        /* The factor 2 goes first. */
        size_t tmp = p->fct[0];
        p->fct[0] = p->fct[p->nf - 1];
        p->fct[p->nf - 1] = tmp;
    }
    sincos_tab twid;
    sincos_init(&twid, n);
    size_t l1 = 1, off = 0;
    for (size_t k = 0; k < p->nf; k++) {
        size_t ip = p->fct[k], ido = n / (l1 * ip);
        p->tw_off[k] = off;
        if (k < p->nf - 1) { /* the last factor needs no twiddles */
            double *tw = p->tw + off;
            off += (ip - 1) * (ido - 1);
            for (size_t j = 1; j < ip; j++)
                for (size_t i = 1; i <= (ido - 1) / 2; i++) {
                    cplx c = sincos_get(&twid, j * l1 * i);
                    tw[(j - 1) * (ido - 1) + 2 * i - 2] = c.r;
                    tw[(j - 1) * (ido - 1) + 2 * i - 1] = c.i;
                }
        }
        l1 *= ip;
    }
    sincos_tab t4;
    sincos_init(&t4, 4 * n);
    for (size_t i = 0; i < n; i++)
        p->post[i] = sincos_get(&t4, i + 1).r;
}

static void radb2(size_t ido, size_t l1, const double *cc, double *ch, const double *wa)
{
#define CC(a, b, c) cc[(a) + ido * ((b) + 2 * (c))]
#define CH(a, b, c) ch[(a) + ido * ((b) + l1 * (c))]
#define WA(x, i)    wa[(i) + (x) * (ido - 1)]
    for (size_t k = 0; k < l1; k++) {
        double a = CC(0, 0, k), b = CC(ido - 1, 1, k);
        CH(0, k, 0) = a + b;
        CH(0, k, 1) = a - b;
    }
    if ((ido & 1) == 0)
        for (size_t k = 0; k < l1; k++) {
            CH(ido - 1, k, 0) = 2 * CC(ido - 1, 0, k);
            CH(ido - 1, k, 1) = -2 * CC(0, 1, k);
        }
    if (ido <= 2)
        return;
    for (size_t k = 0; k < l1; k++)
        for (size_t i = 2; i < ido; i += 2) {
            size_t ic = ido - i;
            double tr2, ti2;
            CH(i - 1, k, 0) = CC(i - 1, 0, k) + CC(ic - 1, 1, k);
            tr2 = CC(i - 1, 0, k) - CC(ic - 1, 1, k);
            ti2 = CC(i, 0, k) + CC(ic, 1, k);
            CH(i, k, 0) = CC(i, 0, k) - CC(ic, 1, k);
            /* (a + ib) = conj(c + id) * (e + if) */
            double c = WA(0, i - 2), d = WA(0, i - 1);
            CH(i, k, 1) = c * ti2 + d * tr2;
            CH(i - 1, k, 1) = c * tr2 - d * ti2;
        }
#undef CC
#undef CH
#undef WA
}

static void radb4(size_t ido, size_t l1, const double *cc, double *ch, const double *wa)
{
    const double sqrt2 = (double)1.414213562373095048801688724209698L;
#define CC(a, b, c) cc[(a) + ido * ((b) + 4 * (c))]
#define CH(a, b, c) ch[(a) + ido * ((b) + l1 * (c))]
#define WA(x, i)    wa[(i) + (x) * (ido - 1)]
#define PM(a, b, c, d)                                                                             \
    do {                                                                                           \
        double pm_c_ = (c), pm_d_ = (d);                                                           \
        a = pm_c_ + pm_d_;                                                                         \
        b = pm_c_ - pm_d_;                                                                         \
    } while (0)
#define MULPM(a, b, c, d, e, f)                                                                    \
    do {                                                                                           \
        double mp_c_ = (c), mp_d_ = (d), mp_e_ = (e), mp_f_ = (f);                                 \
        a = mp_c_ * mp_e_ + mp_d_ * mp_f_;                                                         \
        b = mp_c_ * mp_f_ - mp_d_ * mp_e_;                                                         \
    } while (0)
    for (size_t k = 0; k < l1; k++) {
        double tr1, tr2;
        PM(tr2, tr1, CC(0, 0, k), CC(ido - 1, 3, k));
        double tr3 = 2 * CC(ido - 1, 1, k);
        double tr4 = 2 * CC(0, 2, k);
        PM(CH(0, k, 0), CH(0, k, 2), tr2, tr3);
        PM(CH(0, k, 3), CH(0, k, 1), tr1, tr4);
    }
    if ((ido & 1) == 0)
        for (size_t k = 0; k < l1; k++) {
            double tr1, tr2, ti1, ti2;
            PM(ti1, ti2, CC(0, 3, k), CC(0, 1, k));
            PM(tr2, tr1, CC(ido - 1, 0, k), CC(ido - 1, 2, k));
            CH(ido - 1, k, 0) = tr2 + tr2;
            CH(ido - 1, k, 1) = sqrt2 * (tr1 - ti1);
            CH(ido - 1, k, 2) = ti2 + ti2;
            CH(ido - 1, k, 3) = -sqrt2 * (tr1 + ti1);
        }
    if (ido <= 2)
        return;
    for (size_t k = 0; k < l1; k++)
        for (size_t i = 2; i < ido; i += 2) {
            double ci2, ci3, ci4, cr2, cr3, cr4, ti1, ti2, ti3, ti4, tr1, tr2, tr3, tr4;
            size_t ic = ido - i;
            PM(tr2, tr1, CC(i - 1, 0, k), CC(ic - 1, 3, k));
            PM(ti1, ti2, CC(i, 0, k), CC(ic, 3, k));
            PM(tr4, ti3, CC(i, 2, k), CC(ic, 1, k));
            PM(tr3, ti4, CC(i - 1, 2, k), CC(ic - 1, 1, k));
            PM(CH(i - 1, k, 0), cr3, tr2, tr3);
            PM(CH(i, k, 0), ci3, ti2, ti3);
            PM(cr4, cr2, tr1, tr4);
            PM(ci2, ci4, ti1, ti4);
            MULPM(CH(i, k, 1), CH(i - 1, k, 1), WA(0, i - 2), WA(0, i - 1), ci2, cr2);
            MULPM(CH(i, k, 2), CH(i - 1, k, 2), WA(1, i - 2), WA(1, i - 1), ci3, cr3);
            MULPM(CH(i, k, 3), CH(i - 1, k, 3), WA(2, i - 2), WA(2, i - 1), ci4, cr4);
        }
#undef CC
#undef CH
#undef WA
#undef PM
#undef MULPM
}

/* The real backward FFT (half-complex to real), unnormalized. */
static void rfft_backward(const dct_plan *p, double *c)
{
    double ch[MAX_N];
    double *p1 = c, *p2 = ch;
    size_t n = p->n;
    for (size_t k = 0, l1 = 1; k < p->nf; k++) {
        size_t ip = p->fct[k], ido = n / (ip * l1);
        if (ip == 4)
            radb4(ido, l1, p1, p2, p->tw + p->tw_off[k]);
        else
            radb2(ido, l1, p1, p2, p->tw + p->tw_off[k]);
        double *t = p1;
        p1 = p2;
        p2 = t;
        l1 *= ip;
    }
    if (p1 != c)
        memcpy(c, p1, n * sizeof *c);
}

static dct_plan plan32, plan64;
static pthread_once_t plans_once = PTHREAD_ONCE_INIT;

static void plans_init(void)
{
    plan_init(&plan32, 32);
    plan_init(&plan64, 64);
}

void gencache__image_dct2(double *c, size_t n)
{
    pthread_once(&plans_once, plans_init);
    const dct_plan *p = n == 32 ? &plan32 : &plan64;
    size_t ns2 = (n + 1) / 2;
    c[0] *= 2;
    if ((n & 1) == 0)
        c[n - 1] *= 2;
    for (size_t k = 1; k < n - 1; k += 2) {
        double t = c[k + 1];
        c[k + 1] -= c[k];
        c[k] = t + c[k];
    }
    rfft_backward(p, c);
    for (size_t k = 1, kc = n - 1; k < ns2; k++, kc--) {
        double t1 = p->post[k - 1] * c[kc] + p->post[kc - 1] * c[k];
        double t2 = p->post[k - 1] * c[k] - p->post[kc - 1] * c[kc];
        c[k] = 0.5 * (t1 + t2);
        c[kc] = 0.5 * (t1 - t2);
    }
    if ((n & 1) == 0)
        c[ns2] *= p->post[ns2 - 1];
}
