/* Fast parse of clean delimited records (aq_pp's reader), straight into Arrow buffers.
 *
 * One chunk of records (one-byte separator, '\n' ends a record) for the common clean case only.
 * Whatever this parser is not sure about (a quote, a '\r' or NUL byte, a record with another
 * number of fields, a blank line, an empty or unusual number, invalid UTF-8 in a kept string,
 * more rows than the caller allowed for) makes it return -1, and the caller parses the chunk
 * with the general (Polars) path, which has every rule and error message. So this code only has
 * to agree with that path on what it accepts.
 *
 * Numbers: integers -?[0-9]{1,18} (no sign for unsigned); floats -?D+(.D+)?([eE][+-]?D{1,3})?;
 * an empty field or a lone '-' is 0, as Essentia reads them. Floats are converted exactly:
 * W * 10^E with W <= 2^53 and |E| <= 22 is one correctly rounded IEEE operation (Clinger's
 * fast path), anything else goes through strtod, which glibc rounds correctly too. Polars (fast-float) rounds correctly, so both give the same double.
 *
 * Speed: a structural index (positions of separators and '\n's, found 64 bytes at a time)
 * decouples the fields from each other, and columns are then converted one at a time over a
 * window of records, so each inner loop has one kind of field and no per-field dispatch. Short
 * numbers are converted 8 digits at a time (SWAR) without a branch per digit. Integer columns
 * that are only checked (P_CHECK) are validated, not converted: one 16-byte compare a field.
 */
#include <float.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__) && !defined(ESS_NO_SIMD)
#include <emmintrin.h>
#endif
/* x86-64 hosts get an AVX2 variant of the indexing code, picked at run time (the helper is built
 * without -march, so plain code may only use SSE2). -DESS_NO_AVX2 keeps the SSE2 code only. */
#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__) && !defined(ESS_NO_SIMD) && \
    !defined(ESS_NO_AVX2)
#define ESS_AVX2 1
#include <immintrin.h>
#define ESS_TARGET_AVX2 __attribute__((target("avx2,popcnt,bmi,bmi2")))
#endif
/* Likewise an FMA variant of the float column (no division in the short-decimal path), picked at
 * run time; -DESS_NO_FMA (or -DESS_NO_AVX2) keeps the division only. */
#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__) && !defined(ESS_NO_SIMD) && \
    !defined(ESS_NO_AVX2) && !defined(ESS_NO_FMA)
#define ESS_FMA 1
#define ESS_TARGET_FMA __attribute__((target("fma")))
#endif

enum { P_SKIP = 0, P_STR = 1, P_INT = 2, P_UINT = 3, P_FLOAT = 4, P_CHECK = 8 };

static const double EXACT10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
/* RN(10^-b): the FMA path's reciprocals (constant folded, so correctly rounded). */
static const double INV10[9] = {1.0,       1.0 / 1e1, 1.0 / 1e2, 1.0 / 1e3, 1.0 / 1e4,
                                1.0 / 1e5, 1.0 / 1e6, 1.0 / 1e7, 1.0 / 1e8};
static const uint64_t U10[9] = {1,      10,      100,      1000,     10000,
                                100000, 1000000, 10000000, 100000000};

/* ------------------------------------------------------------------ fields */

/* Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF), as Polars requires. */
static int utf8_ok(const unsigned char *s, const unsigned char *e) {
    while (s < e) {
        unsigned c = *s;
        if (c < 0x80) { s++; continue; }
        int n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) { n = 2; lo = 0xA0; }
        else if (c == 0xED) { n = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) n = 2;
        else if (c == 0xF0) { n = 3; lo = 0x90; }
        else if (c == 0xF4) { n = 3; hi = 0x8F; }
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else return 0;
        if (e - s <= n) return 0;
        if (s[1] < lo || s[1] > hi) return 0;
        for (int k = 2; k <= n; k++)
            if ((s[k] & 0xC0) != 0x80) return 0;
        s += n + 1;
    }
    return 1;
}

/* The 8 digits of x (the first in the low byte) as a number, or -1 if a byte is not a digit. */
static inline int64_t word_digits(uint64_t x) {
    if (((x & 0xF0F0F0F0F0F0F0F0ULL) |
         (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) != 0x3333333333333333ULL)
        return -1;
    x -= 0x3030303030303030ULL;
    x = (x * 10) + (x >> 8);
    x = (((x & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
         (((x >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
    return (int64_t)(uint32_t)x;
}

/* The n (1..8) digits at p as a number, or -1 if one is not a digit. Reads 8 bytes at p: the
 * caller guarantees they are readable. The digits are moved to the top of the word and the
 * bytes below filled with '0', then all 8 are checked and converted at once. */
static inline int64_t eight_digits(const unsigned char *p, int n) {
    uint64_t x;
    memcpy(&x, p, 8);
    int low = 8 * (8 - n);
    return word_digits((x << low) | (0x3030303030303030ULL & ~(~0ULL << low)));
}

/* Unsigned digits [s, e) with at least 16 readable bytes at s; -1 if not 1..16 digits. */
static inline int64_t digits16(const unsigned char *s, const unsigned char *e) {
    int64_t n = e - s;
    if (n < 1 || n > 16) return -1;
    if (n <= 8) return eight_digits(s, (int)n);
    int64_t hi = eight_digits(s, (int)n - 8), lo = eight_digits(s + n - 8, 8);
    return (hi | lo) < 0 ? -1 : hi * 100000000 + lo;
}

static int parse_int_slow(const unsigned char *s, const unsigned char *e, int64_t *out) {
    if (s == e || e - s > 18) return 0;
    int64_t v = 0;
    for (; s < e; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* Integer field [s, e): 1 and *out on success, 0 when it is not in the strict form. */
static inline int parse_int(const unsigned char *s, const unsigned char *e,
                            const unsigned char *limit, int sign_ok, int64_t *out) {
    int neg = s < e && *s == '-';
    if (neg && !sign_ok) return 0;
    s += neg;
    int64_t v;
    if (limit - s >= 16 && e - s <= 16) {
        v = digits16(s, e);
        if (v < 0) return 0;
    } else if (!parse_int_slow(s, e, &v)) {
        return 0;
    }
    *out = neg ? -v : v;
    return 1;
}

/* w * 10^e10 for 17-19 significant digits (such as 46.230000000000004, which a float's shortest
 * repr gives), where w no longer fits a double exactly: in x87 extended precision, w (below
 * 2^64) and 10^|e10| (5^27 < 2^64) are exact and the product or quotient is rounded once, to 64
 * bits; rounding that to 53 bits gives the correctly rounded double unless it fell exactly on
 * a midpoint between two doubles (its 11 lowest bits 10000000000), the one case where rounding
 * twice can differ from once: those go to strtod. 0 when not applicable (no 64-bit long
 * double, or |e10| > 27). */
static int wide_pow10(uint64_t w, int e10, double *out) {
#if LDBL_MANT_DIG == 64
    static const long double P10[28] = {
        1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
        1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
        1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    if (e10 < -27 || e10 > 27) return 0;
    long double x = e10 >= 0 ? (long double)w * P10[e10] : (long double)w / P10[-e10];
    uint64_t mant;
    memcpy(&mant, &x, 8); /* the explicit 64-bit significand */
    if ((mant & 0x7FF) == 0x400) return 0;
    *out = (double)x;
    return 1;
#else
    (void)w, (void)e10, (void)out;
    return 0;
#endif
}

static int parse_float_slow(const unsigned char *s, const unsigned char *e, double *out) {
    const unsigned char *start = s;
    int neg = 0;
    if (s < e && *s == '-') { neg = 1; s++; }
    uint64_t w = 0;
    int sig = 0, frac = 0, exact = 1;
    const unsigned char *d0 = s;
    for (; s < e && (unsigned)(*s - '0') <= 9; s++) {
        if (sig >= 19) return 0; /* 19+ significant integer digits: the general path */
        w = w * 10 + (uint64_t)(*s - '0');
        if (w) sig++;
    }
    if (s == d0) return 0;
    if (s < e && *s == '.') {
        s++;
        const unsigned char *f0 = s;
        for (; s < e && (unsigned)(*s - '0') <= 9; s++) {
            if (sig < 19) { w = w * 10 + (uint64_t)(*s - '0'); frac++; if (w) sig++; }
            else exact = 0; /* digits past 19 only matter to strtod */
        }
        if (s == f0) return 0;
    }
    int ex = 0;
    if (s < e && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0;
        if (s < e && (*s == '+' || *s == '-')) { eneg = *s == '-'; s++; }
        const unsigned char *x0 = s;
        for (; s < e && (unsigned)(*s - '0') <= 9; s++) ex = ex * 10 + (*s - '0');
        if (s == x0 || s - x0 > 3) return 0;
        if (eneg) ex = -ex;
    }
    if (s != e) return 0;
    int e10 = ex - frac;
    if (exact && w <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)w;
        v = e10 >= 0 ? v * EXACT10[e10] : v / EXACT10[-e10];
        *out = neg ? -v : v;
        return 1;
    }
    if (exact && wide_pow10(w, e10, out)) {
        if (neg) *out = -*out;
        return 1;
    }
    char buf[64];
    if (e - start >= (ptrdiff_t)sizeof buf) return 0;
    memcpy(buf, start, (size_t)(e - start));
    buf[e - start] = 0;
    *out = strtod(buf, NULL);
    return 1;
}

/* w / 10^b correctly rounded without a division (w < 2^53, b <= 8; only inlined into FMA code,
 * where __builtin_fma is one instruction). With y = RN(10^-b), |10^b y - 1| < 2^-53:
 *  - q0 = RN(w y) is within 2 ulps of x = w / 10^b;
 *  - r = w - q0 10^b is a multiple of ulp(q0) (<= 1) below 4 * 10^b of them, so the fma is exact;
 *  - q0 + r y = x + (x - q0)(10^b y - 1) is within 2^-52 ulp of x, and the fma rounds it once;
 *  - x is never a midpoint (a dyadic w / 10^b has under 54 significant bits) and is at least
 *    ulp(x) / 4 / 10^b > 2^-29 ulp away from any (w 2^-F - odd 10^b is a nonzero integer),
 *  so RN(q0 + r y) = RN(x), the division's result, bit for bit. */
static inline double div_pow10_fma(double w, int b) {
    double q0 = w * INV10[b];
    return __builtin_fma(__builtin_fma(-q0, EXACT10[b], w), INV10[b], q0);
}

/* parse_float_slow's value, NaN when it refuses the field (digits never read as NaN). Its own
 * function so that the fast path's result does not go through memory. */
static __attribute__((noinline)) double float_slow(const unsigned char *s, const unsigned char *e) {
    double v;
    return parse_float_slow(s, e, &v) ? v : __builtin_nan("");
}

static inline int float_slow_into(const unsigned char *s, const unsigned char *e, double *out) {
    double v = float_slow(s, e);
    *out = v;
    return v == v;
}

/* Float field [s, e). The common short form D{1,8}(.D{1,8})? is converted with SWAR digits and
 * one exact division (use_fma: the division-free equivalent); everything else goes to
 * parse_float_slow. Always inlined, so use_fma is a constant. */
static inline __attribute__((always_inline)) int parse_float(const unsigned char *s,
                                                              const unsigned char *e,
                                                              const unsigned char *limit,
                                                              int use_fma, double *out) {
    const unsigned char *f = s + (s < e && *s == '-');
    int64_t n = e - f;
    if (n < 1 || n > 16 || limit - f < 24) return float_slow_into(s, e, out); /* 24: see below */
#if defined(__SSE2__) && !defined(ESS_NO_SIMD)
    __m128i v = _mm_loadu_si128((const __m128i *)f);
    unsigned dots = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
    dots &= (1u << n) - 1;
#else
    unsigned dots = 0;
    for (int k = 0; k < n; k++) dots |= (unsigned)(f[k] == '.') << k;
#endif
    int a = dots ? __builtin_ctz(dots) : (int)n; /* integer digits */
    int b = dots ? (int)n - a - 1 : 0;           /* fraction digits */
    /* a + b <= 15 keeps the digits below 2^53 (exact); the reads end by f + a + 1 + 8 <= f + 24 */
    if ((dots & (dots - 1)) || a < 1 || a > 8 || (dots && (b < 1 || b > 8)) || a + b > 15)
        return float_slow_into(s, e, out);
    int64_t digits;
    if (n <= 8) {
        /* The whole field in one word (prices mostly are): the bytes before the dot move up one
         * byte over it, and the digits are converted at once, as an integer of a + b digits. */
        uint64_t x;
        memcpy(&x, f, 8);
        int low = 8 * (8 - (int)n);
        x <<= low;
        if (dots) { /* the dot is byte 8 - n + a of x, and not the last one (b >= 1) */
            int at = low + 8 * a;
            x = (x & (~0ULL << (at + 8))) | ((x << 8) & ~(~0ULL << (at + 8)));
            low += 8;
        }
        digits = word_digits(x | (0x3030303030303030ULL & ~(~0ULL << low)));
    } else {
        int64_t ip = eight_digits(f, a), fp = b ? eight_digits(f + a + 1, b) : 0;
        digits = (ip | fp) < 0 ? -1 : ip * (int64_t)U10[b] + fp;
    }
    if (digits < 0) return float_slow_into(s, e, out); /* exponent or a stray byte */
    double w = (double)(uint64_t)digits;
    double x = use_fma ? div_pow10_fma(w, b) : w / EXACT10[b];
    *out = f != s ? -x : x;
    return 1;
}

/* ------------------------------------------------------------------ structural index */
#define IDX_CAP 4096
/* Index entries are byte positions (chunks are shorter than 2^31 bytes) with the top bit set on
 * those of '\n's, so the layout check reads the index only, not the data a second time. */
#define NL_BIT 0x80000000u
#define POS_MASK 0x7FFFFFFFu

typedef struct {
    const unsigned char *data;
    int64_t len, scanned; /* bytes indexed so far */
    uint32_t slots[IDX_CAP + 64 + 2];
    uint32_t *pos;        /* = slots + 1: pos[-1] is the end of the record before pos[0] */
    int n;                /* entries in pos */
    int ended;            /* all data indexed (and the virtual end entry added if needed) */
    int high;             /* a byte >= 0x80 was seen: kept strings need a UTF-8 check */
    int avx2;             /* the CPU runs index_blocks_avx2 */
    unsigned char sep, quoted;
} s_index;

/* 64-bit masks of the structural bytes, of the bytes the fast path refuses, and of high bytes. */
static inline void block_masks(const unsigned char *b, unsigned char sep, int quoted,
                               uint64_t *structural, uint64_t *newline, uint64_t *bad,
                               uint64_t *high) {
    uint64_t st = 0, nl = 0, bd = 0, hi = 0;
#if defined(__SSE2__) && !defined(ESS_NO_SIMD)
    const __m128i vsep = _mm_set1_epi8((char)sep), vnl = _mm_set1_epi8('\n');
    const __m128i vcr = _mm_set1_epi8('\r'), vnul = _mm_setzero_si128();
    const __m128i vq = _mm_set1_epi8(quoted ? '"' : '\r');
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(b + 16 * k));
        __m128i n1 = _mm_cmpeq_epi8(v, vnl), s1 = _mm_or_si128(_mm_cmpeq_epi8(v, vsep), n1);
        __m128i b1 = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vcr), _mm_cmpeq_epi8(v, vnul)),
                                  _mm_cmpeq_epi8(v, vq));
        st |= (uint64_t)(uint32_t)_mm_movemask_epi8(s1) << (16 * k);
        nl |= (uint64_t)(uint32_t)_mm_movemask_epi8(n1) << (16 * k);
        bd |= (uint64_t)(uint32_t)_mm_movemask_epi8(b1) << (16 * k);
        hi |= (uint64_t)(uint32_t)_mm_movemask_epi8(v) << (16 * k);
    }
#else
    for (int k = 0; k < 64; k++) {
        unsigned char c = b[k];
        st |= (uint64_t)(c == sep || c == '\n') << k;
        nl |= (uint64_t)(c == '\n') << k;
        bd |= (uint64_t)(c == '\r' || c == 0 || (quoted && c == '"')) << k;
        hi |= (uint64_t)(c >= 0x80) << k;
    }
#endif
    *structural = st;
    *newline = nl;
    *bad = bd;
    *high = hi;
}

#ifdef ESS_AVX2
/* block_masks with 32-byte compares. */
static inline ESS_TARGET_AVX2 void block_masks_avx2(const unsigned char *b, unsigned char sep,
                                                    int quoted, uint64_t *structural,
                                                    uint64_t *newline, uint64_t *bad,
                                                    uint64_t *high) {
    const __m256i vsep = _mm256_set1_epi8((char)sep), vnl = _mm256_set1_epi8('\n');
    const __m256i vcr = _mm256_set1_epi8('\r'), vnul = _mm256_setzero_si256();
    const __m256i vq = _mm256_set1_epi8(quoted ? '"' : '\r');
    uint64_t m[4][2];
    for (int k = 0; k < 2; k++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b + 32 * k));
        __m256i n1 = _mm256_cmpeq_epi8(v, vnl);
        __m256i s1 = _mm256_or_si256(_mm256_cmpeq_epi8(v, vsep), n1);
        __m256i b1 = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, vcr), _mm256_cmpeq_epi8(v, vnul)),
            _mm256_cmpeq_epi8(v, vq));
        m[0][k] = (uint32_t)_mm256_movemask_epi8(s1);
        m[1][k] = (uint32_t)_mm256_movemask_epi8(n1);
        m[2][k] = (uint32_t)_mm256_movemask_epi8(b1);
        m[3][k] = (uint32_t)_mm256_movemask_epi8(v);
    }
    *structural = m[0][0] | m[0][1] << 32;
    *newline = m[1][0] | m[1][1] << 32;
    *bad = m[2][0] | m[2][1] << 32;
    *high = m[3][0] | m[3][1] << 32;
}
#endif

/* Population count of a block's structural mask. Without the popcnt instruction (SSE2 code)
 * __builtin_popcountll is a libgcc call; this is a dozen inline operations. */
static inline int popcount64(uint64_t x) {
#if defined(__POPCNT__) || !defined(__x86_64__)
    return __builtin_popcountll(x);
#else
    x -= (x >> 1) & 0x5555555555555555ULL;
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* Index 64-byte blocks until the data ends or the index is full; 0 when a refused byte shows
 * up. A macro, to be compiled once per instruction set (MASKS, POPCOUNT). Positions are written
 * 8 at a time without a branch each (the count varies per block); a '\n' gets NL_BIT. */
#define INDEX_BLOCKS(MASKS, POPCOUNT)                                                            \
    while (ix->scanned < ix->len && ix->n < IDX_CAP) {                                         \
        const unsigned char *b = ix->data + ix->scanned;                                       \
        unsigned char tail[64];                                                                \
        int64_t left = ix->len - ix->scanned;                                                  \
        if (left < 64) { /* pad the last block with a byte that is neither structural nor bad */ \
            memset(tail, ix->sep == 'x' ? 'y' : 'x', sizeof tail);                             \
            memcpy(tail, b, (size_t)left);                                                     \
            b = tail;                                                                          \
        }                                                                                      \
        uint64_t st, nl, bad, high;                                                            \
        MASKS(b, ix->sep, ix->quoted, &st, &nl, &bad, &high);                                  \
        if (bad) return 0;                                                                     \
        ix->high |= high != 0;                                                                 \
        uint32_t base = (uint32_t)ix->scanned, *out = ix->pos + ix->n;                         \
        int count = POPCOUNT(st);                                                              \
        for (int k = 0; k < count; k += 8)                                                     \
            for (int j = 0; j < 8; j++) {                                                      \
                int at = st ? __builtin_ctzll(st) : 0;                                         \
                out[k + j] = (base + (uint32_t)at) | (uint32_t)(nl >> at) << 31;               \
                st &= st - 1;                                                                  \
            }                                                                                  \
        ix->n += count;                                                                        \
        ix->scanned += 64;                                                                     \
    }                                                                                          \
    return 1;

static int index_blocks(s_index *ix) { INDEX_BLOCKS(block_masks, popcount64) }

#ifdef ESS_AVX2
static ESS_TARGET_AVX2 int index_blocks_avx2(s_index *ix) {
    INDEX_BLOCKS(block_masks_avx2, __builtin_popcountll)
}
#endif

/* Drop the first `keep` entries and index more data. 0 when a refused byte shows up. */
static int index_more(s_index *ix, int keep) {
    if (keep) {
        ix->pos[-1] = ix->pos[keep - 1];
        memmove(ix->pos, ix->pos + keep, sizeof(uint32_t) * (size_t)(ix->n - keep));
        ix->n -= keep;
    }
#ifdef ESS_AVX2
    if (ix->avx2 ? !index_blocks_avx2(ix) : !index_blocks(ix)) return 0;
#else
    if (!index_blocks(ix)) return 0;
#endif
    if (ix->scanned >= ix->len && !ix->ended) {
        ix->ended = 1; /* a last record without its '\n' ends at the end of the data */
        if (ix->data[ix->len - 1] != '\n') ix->pos[ix->n++] = (uint32_t)ix->len | NL_BIT;
    }
    return 1;
}

/* Whether entries [0, rows * ncols) end fields and records where the layout says: every
 * record's last entry is a '\n' (the virtual end entry counts as one) and no other entry is.
 * When all the last entries are '\n's and the window holds `rows` '\n's in all, no other entry
 * is one; the count is a loop the compiler vectorises. */
static int layout_ok(const s_index *ix, int64_t rows, int ncols) {
    const uint32_t *pos = ix->pos;
    int total = (int)(rows * ncols);
    uint32_t wrong = 0, lines = 0;
    for (int64_t r = 0; r < rows; r++) wrong |= ~pos[r * ncols + ncols - 1];
    for (int i = 0; i < total; i++) lines += pos[i] >> 31;
    return !(wrong & NL_BIT) && lines == (uint32_t)rows;
}

/* ------------------------------------------------------------------ columns */

typedef struct {
    const unsigned char *data, *limit;
    const uint32_t *pos;  /* pos[-1]: end of the record before the window */
    int64_t rows, row0;   /* records in the window; index of the first in the output */
    int ncols;
    const int32_t *kinds; /* P_* of every field */
    int first_numeric;    /* the field whose emptiness triggers the empty-record check */
} s_window;

/* Field c of window record r is [start, end). */
#define FIELD_END(w, r, c) ((w)->pos[(r) * (w)->ncols + (c)] & POS_MASK)
#define FIELD_START(w, r, c) (((w)->pos[(r) * (w)->ncols + (c) - 1] + 1) & POS_MASK)

/* The general path drops a record whose read fields are all empty (a blank line of the CSV
 * reader looks the same); such a record is left to it. Only asked when a numeric field is
 * empty, which is rare. */
static int record_all_empty(const s_window *w, int64_t r) {
    for (int c = 0; c < w->ncols; c++)
        if ((w->kinds[c] & 7) != P_SKIP && FIELD_END(w, r, c) != FIELD_START(w, r, c)) return 0;
    return 1;
}

/* Essentia's field rules: an empty numeric field and a lone '-' read as 0. */
static inline int blank_number(const unsigned char *s, const unsigned char *e) {
    return e == s || (e - s == 1 && *s == '-');
}

static int column_str(const s_window *w, int c, int check_utf8, char *text, int64_t *offsets) {
    int64_t at = offsets[w->row0];
    for (int64_t r = 0; r < w->rows; r++) {
        const unsigned char *f = w->data + FIELD_START(w, r, c), *e = w->data + FIELD_END(w, r, c);
        if (check_utf8 && !utf8_ok(f, e)) return 0;
        memcpy(text + at, f, (size_t)(e - f));
        at += e - f;
        offsets[w->row0 + r + 1] = at;
    }
    return 1;
}

static int column_int(const s_window *w, int c, int sign_ok, int64_t *out) {
    const unsigned char *data = w->data, *limit = w->limit;
    int64_t rows = w->rows, *o = out + w->row0; /* locals: the stores could alias the window */
    int ok = 1;
    for (int64_t r = 0; r < rows; r++) {
        const unsigned char *f = data + FIELD_START(w, r, c), *e = data + FIELD_END(w, r, c);
        int64_t v = 0;
        if (!blank_number(f, e))
            ok &= parse_int(f, e, limit, sign_ok, &v);
        else if (f == e && c == w->first_numeric && record_all_empty(w, r))
            return 0;
        o[r] = v;
    }
    return ok;
}

/* Bit k set: byte k of the 16 at p (all readable) is not a digit. */
static inline unsigned nondigits16(const unsigned char *p) {
#if defined(__SSE2__) && !defined(ESS_NO_SIMD)
    __m128i v = _mm_loadu_si128((const __m128i *)p); /* signed compares: bytes >= 0x80 are < '0' */
    return (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8('0')), _mm_cmpgt_epi8(v, _mm_set1_epi8('9'))));
#else
    unsigned m = 0;
    for (int k = 0; k < 16; k++) m |= (unsigned)((unsigned)(p[k] - '0') > 9) << k;
    return m;
#endif
}

/* column_int for a checked column (out == NULL): whether every field is in the form parse_int
 * accepts or blank, without converting. A field of 1..16 bytes with 16 readable ones is all
 * digits but for a leading '-' (a signed column, or a lone '-', which is blank); longer or last
 * fields take parse_int. Validity is accumulated, so the loop has no data-dependent branch. */
static int column_int_check(const s_window *w, int c, int sign_ok) {
    int ok = 1;
    for (int64_t r = 0; r < w->rows; r++) {
        const unsigned char *f = w->data + FIELD_START(w, r, c), *e = w->data + FIELD_END(w, r, c);
        int64_t n = e - f;
        if (n >= 1 && n <= 16 && w->limit - f >= 16) {
            unsigned m = nondigits16(f) & ((1u << n) - 1);
            ok &= (m == 0) | ((m == 1) & (*f == '-') & (sign_ok | (n == 1)));
        } else if (n == 0) {
            if (c == w->first_numeric && record_all_empty(w, r)) return 0;
        } else {
            int64_t v;
            ok &= blank_number(f, e) || parse_int(f, e, w->limit, sign_ok, &v);
        }
    }
    return ok;
}

/* A macro, to be compiled once per float conversion (USE_FMA). */
#define COLUMN_FLOAT(USE_FMA)                                                                  \
    const unsigned char *data = w->data, *limit = w->limit;                                    \
    int64_t rows = w->rows;                                                                    \
    double *o = out ? out + w->row0 : NULL; /* locals: the stores could alias the window */    \
    int ok = 1;                                                                                \
    for (int64_t r = 0; r < rows; r++) {                                                       \
        const unsigned char *f = data + FIELD_START(w, r, c), *e = data + FIELD_END(w, r, c);  \
        double v = 0;                                                                          \
        if (!blank_number(f, e))                                                               \
            ok &= parse_float(f, e, limit, USE_FMA, &v);                                       \
        else if (f == e && c == w->first_numeric && record_all_empty(w, r))                    \
            return 0;                                                                          \
        if (o) o[r] = v;                                                                       \
    }                                                                                          \
    return ok;

static int column_float(const s_window *w, int c, double *out) { COLUMN_FLOAT(0) }

#ifdef ESS_FMA
static ESS_TARGET_FMA int column_float_fma(const s_window *w, int c, double *out) {
    COLUMN_FLOAT(1)
}
#endif

static int convert_window(const s_window *w, const int32_t *kinds, void *const *values,
                          int64_t *const *offsets, int high, int fma) {
#ifndef ESS_FMA
    (void)fma;
#endif
    for (int c = 0; c < w->ncols; c++) {
        int kind = kinds[c] & 7, check = (kinds[c] & P_CHECK) != 0, ok = 1;
        if (kind == P_STR)
            ok = column_str(w, c, high, (char *)values[c], offsets[c]);
        else if ((kind == P_INT || kind == P_UINT) && check)
            ok = column_int_check(w, c, kind == P_INT);
        else if (kind == P_INT || kind == P_UINT)
            ok = column_int(w, c, kind == P_INT, (int64_t *)values[c]);
#ifdef ESS_FMA
        else if (kind == P_FLOAT && fma)
            ok = column_float_fma(w, c, check ? NULL : (double *)values[c]);
#endif
        else if (kind == P_FLOAT)
            ok = column_float(w, c, check ? NULL : (double *)values[c]);
        else if (kind != P_SKIP)
            ok = 0;
        if (!ok) return 0;
    }
    return 1;
}

/* values[c]: int64/double array of max_rows (P_INT/P_UINT/P_FLOAT) or string bytes with room
 * for the whole chunk (P_STR); offsets[c]: large_string offsets (P_STR, max_rows + 1).
 * Returns the number of records, or -1 when the chunk needs the general path. */
int64_t ess_parse_delimited(const unsigned char *data, int64_t len, int32_t sep, int32_t quoted,
                            int32_t ncols, const int32_t *kinds, void *const *values,
                            int64_t *const *offsets, int64_t max_rows) {
    if (len <= 0 || len > (int64_t)POS_MASK || ncols <= 0 || ncols > 1024 || sep == '\n')
        return -1;
    int first_numeric = -1;
    for (int c = ncols - 1; c >= 0; c--)
        if ((kinds[c] & 7) >= P_INT) first_numeric = c;
    if (first_numeric < 0) return -1; /* no numeric field: nothing pins the record layout */
    s_index *ix = calloc(1, sizeof *ix);
    if (!ix) return -1;
    ix->data = data;
    ix->len = len;
    ix->pos = ix->slots + 1;
    ix->pos[-1] = UINT32_MAX; /* so the first field starts at (UINT32_MAX + 1) & POS_MASK = 0 */
    ix->sep = (unsigned char)sep;
    ix->quoted = quoted != 0;
#ifdef ESS_AVX2
    ix->avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
               __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#endif
    int fma = 0;
#ifdef ESS_FMA
    fma = __builtin_cpu_supports("fma");
#endif
    for (int c = 0; c < ncols; c++)
        if ((kinds[c] & 7) == P_STR) offsets[c][0] = 0;
    int64_t row = 0, result = -1;
    int used = 0;
    for (;;) {
        if (!index_more(ix, used)) break;
        int64_t rows = ix->n / ncols;
        used = (int)(rows * ncols);
        if (ix->ended && used != ix->n) break; /* the last record is short */
        if (rows == 0) {
            if (ix->ended) result = row;
            if (ix->ended) break;
            continue;
        }
        if (row + rows > max_rows || !layout_ok(ix, rows, ncols)) break;
        s_window w = {data, data + len, ix->pos, rows, row, ncols, kinds, first_numeric};
        if (!convert_window(&w, kinds, values, offsets, ix->high, fma)) break;
        row += rows;
    }
    free(ix);
    return result;
}
