/* C printf("%.Pg") for arrays of doubles, written as an Arrow large-string array.
 *
 * Built on first use by ess.aq.native (cc -O2 -shared); when no compiler is present ess falls
 * back to the pure-Polars formatter in numfmt.py, which gives the same text.
 *
 * Fast path: |x| = m * 2^e exactly (m < 2^53); the P significant digits are
 * N = round(m * 5^q * 2^(e+q)) for q = P-1-floor(log10|x|), computed exactly in 128-bit integers
 * and rounded half to even on the exact binary value, as glibc does. Values the fast path does
 * not cover (zero, inf, nan, exponent form, extreme magnitudes) go through snprintf itself.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef unsigned __int128 u128;

static const uint64_t POW5[28] = {
    1ULL, 5ULL, 25ULL, 125ULL, 625ULL, 3125ULL, 15625ULL, 78125ULL, 390625ULL, 1953125ULL,
    9765625ULL, 48828125ULL, 244140625ULL, 1220703125ULL, 6103515625ULL, 30517578125ULL,
    152587890625ULL, 762939453125ULL, 3814697265625ULL, 19073486328125ULL,
    95367431640625ULL, 476837158203125ULL, 2384185791015625ULL, 11920928955078125ULL,
    59604644775390625ULL, 298023223876953125ULL, 1490116119384765625ULL,
    7450580596923828125ULL};

static const uint64_t POW10[19] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
    1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
    100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
    1000000000000000000ULL};

static const double P10D[46] = {
    1e-23, 1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12,
    1e-11, 1e-10, 1e-9,  1e-8,  1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,
    1e1,   1e2,   1e3,   1e4,   1e5,   1e6,   1e7,   1e8,   1e9,   1e10,  1e11,  1e12,
    1e13,  1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,  1e21,  1e22};

static const char DIGITS2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static int slow(double v, int p, char *out) { return snprintf(out, 32, "%.*g", p, v); }

/* Digits N (exactly p of them) and decimal exponent e10 of |v|; 0 when the fast path fails. */
static int digits(double a, int p, uint64_t *n_out, int *e10_out) {
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    int biased = (int)(bits >> 52);
    if (biased == 0) return 0; /* subnormal: leave it to snprintf */
    uint64_t m = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
    int e = biased - 1075; /* a = m * 2^e exactly */
    /* floor(log10(a)) estimate from the binary exponent; the loop corrects it by one if needed */
    int e10 = ((biased - 1023) * 78913) >> 18;
    /* that estimate is one too low for about a third of values: fix it with one comparison
     * (the table is exact for non-negative powers; the digits loop below still checks) */
    if (e10 >= -23 && e10 < 22 && a >= P10D[e10 + 1 + 23]) e10++;
    for (int tries = 0; tries < 3; tries++) {
        int q = p - 1 - e10;
        if (q < 0 || q > 27) return 0;
        u128 prod = (u128)m * POW5[q];
        int sh = e + q;
        u128 n;
        int up = 0;
        if (sh >= 0) {
            if (sh > 10) return 0;
            n = prod << sh;
        } else {
            int r = -sh;
            if (r >= 127) return 0;
            n = prod >> r;
            u128 rem = prod - (n << r);
            u128 half = (u128)1 << (r - 1);
            up = rem > half || (rem == half && (n & 1));
        }
        if (n >= POW10[p]) { e10++; continue; }
        if (n < POW10[p - 1]) { e10--; continue; }
        n += up;
        if (n == POW10[p]) { n /= 10; e10++; }
        *n_out = (uint64_t)n;
        *e10_out = e10;
        return 1;
    }
    return 0;
}

static int fmt_one(double v, int p, char *out) {
    if (!isfinite(v) || v == 0.0) return slow(v, p, out);
    uint64_t n;
    int e10;
    if (!digits(fabs(v), p, &n, &e10) || e10 < -4 || e10 >= p) return slow(v, p, out);
    char d[20];
    int i = p;
    while (i >= 2) {
        unsigned two = (unsigned)(n % 100);
        n /= 100;
        d[--i] = DIGITS2[2 * two + 1];
        d[--i] = DIGITS2[2 * two];
    }
    if (i == 1) d[0] = (char)('0' + n);
    int len = p;
    while (len > 1 && d[len - 1] == '0') len--;
    char *o = out;
    if (v < 0) *o++ = '-';
    if (e10 < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -e10 - 1; i++) *o++ = '0';
        memcpy(o, d, len);
        o += len;
    } else {
        int whole = e10 + 1;
        memcpy(o, d, whole < len ? whole : len);
        o += whole < len ? whole : len;
        for (int i = len; i < whole; i++) *o++ = '0';
        if (len > whole) {
            *o++ = '.';
            memcpy(o, d + whole, len - whole);
            o += len - whole;
        }
    }
    return (int)(o - out);
}

/* Formats x[0..n) into out (room for 32 bytes per value) with Arrow offsets (n + 1 entries,
 * offsets[0] already set by the caller); returns the number of bytes written. Null slots
 * (valid bit 0, when valid is not NULL) are written as empty strings. */
int64_t ess_format_g(const double *x, const uint8_t *valid, int64_t valid_offset, int64_t n,
                     int p, char *out, int64_t *offsets) {
    int64_t pos = offsets[0];
    for (int64_t i = 0; i < n; i++) {
        int64_t bit = valid_offset + i;
        if (!valid || (valid[bit >> 3] >> (bit & 7)) & 1) pos += fmt_one(x[i], p, out + pos);
        offsets[i + 1] = pos;
    }
    return pos - offsets[0];
}

/* Occurrences of byte c in p[0..n): bytes.count at memory speed (the compiler vectorises it). */
int64_t ess_count_byte(const unsigned char *p, int64_t n, int c) {
    int64_t total = 0, i = 0;
    unsigned char b = (unsigned char)c;
    /* byte-wide counters over blocks of 255 let the compiler use 16/32 lanes at once */
    for (; i + 255 <= n; i += 255) {
        unsigned char acc = 0;
        for (int j = 0; j < 255; j++) acc += p[i + j] == b;
        total += acc;
    }
    for (; i < n; i++) total += p[i] == b;
    return total;
}

/* ---------------------------------------------------------------- Essentia CSV rows
 * One batch of rows straight from Arrow buffers to CSV bytes: integers bare, floats %.Pg,
 * strings double-quoted with embedded quotes doubled (the empty string is an empty field), raw
 * strings as they are, nulls as empty fields. The caller sizes `out` from the column widths. */
enum { K_INT64 = 0, K_UINT64 = 1, K_FLOAT64 = 2, K_STR_QUOTED = 3, K_STR_RAW = 4 };

typedef struct {
    int32_t kind;
    const void *values;     /* primitive values, or string bytes */
    const int64_t *offsets; /* large_string offsets (strings only) */
    const uint8_t *valid;   /* validity bitmap or NULL */
    int64_t offset;         /* the array's slice offset */
} ess_col;

static char *put_u64(char *o, uint64_t v) {
    char tmp[20];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *o++ = tmp[--n];
    return o;
}

static char *put_field(const ess_col *c, int64_t i, int p, char *o) {
    int64_t at = c->offset + i;
    if (c->valid && !((c->valid[at >> 3] >> (at & 7)) & 1)) return o;
    switch (c->kind) {
    case K_INT64: {
        int64_t v = ((const int64_t *)c->values)[at];
        if (v < 0) { *o++ = '-'; return put_u64(o, (uint64_t)0 - (uint64_t)v); }
        return put_u64(o, (uint64_t)v);
    }
    case K_UINT64:
        return put_u64(o, ((const uint64_t *)c->values)[at]);
    case K_FLOAT64:
        return o + fmt_one(((const double *)c->values)[at], p, o);
    default: {
        const char *s = (const char *)c->values + c->offsets[at];
        int64_t len = c->offsets[at + 1] - c->offsets[at];
        if (c->kind == K_STR_RAW) { memcpy(o, s, len); return o + len; }
        if (len == 0) return o;
        *o++ = '"';
        const char *q = memchr(s, '"', len);
        if (!q) { memcpy(o, s, len); o += len; }
        else {
            for (int64_t k = 0; k < len; k++) { if (s[k] == '"') *o++ = '"'; *o++ = s[k]; }
        }
        *o++ = '"';
        return o;
    }
    }
}

/* ends (optional, nrows entries): the offset just past each row's newline, so callers can cut
 * the buffer per row even when a string field holds a newline. */
int64_t ess_render_csv(const ess_col *cols, int32_t ncols, int64_t nrows, int32_t sep, int32_t p,
                       char *out, int64_t *ends) {
    char *o = out;
    for (int64_t i = 0; i < nrows; i++) {
        for (int32_t j = 0; j < ncols; j++) {
            if (j) *o++ = (char)sep;
            o = put_field(&cols[j], i, p, o);
        }
        *o++ = '\n';
        if (ends) ends[i] = (int64_t)(o - out);
    }
    return (int64_t)(o - out);
}

/* ---------------------------------------------------------------- the UDB's stable key hash
 * h = sum(byte[j] * base^j) mod (2^31 - 1) over each string's bytes (ess.udb.hashing), by
 * Horner's rule from the last byte, with the Mersenne reduction instead of a division. */
static uint64_t mod_m31(uint64_t x) {
    const uint64_t m = (1ULL << 31) - 1;
    x = (x & m) + (x >> 31);
    x = (x & m) + (x >> 31);
    return x >= m ? x - m : x;
}

void ess_string_hash(const int64_t *offsets, const unsigned char *data, int64_t n, uint64_t base,
                     int64_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = 0;
        for (int64_t j = offsets[i + 1] - 1; j >= offsets[i]; j--) h = mod_m31(h * base + data[j]);
        out[i] = (int64_t)h;
    }
}

/* ---------------------------------------------------------------- fast delimited parse
 * One chunk of delimited records (one-byte separator, '\n' ends a record) straight into Arrow
 * buffers, for the common clean case only. Whatever this parser is not sure about — a quote, a
 * '\r' or NUL byte, a record with another number of fields, a blank line, an empty or unusual
 * number, invalid UTF-8 in a kept string, more rows than the caller allowed for — makes it
 * return -1, and the caller parses the chunk with the general (Polars) path, which has every
 * rule and error message. So this code only has to agree with that path on what it accepts.
 *
 * Numbers: integers -?[0-9]{1,18} (no sign for unsigned); floats -?D+(.D+)?([eE][+-]?D{1,3})?,
 * converted exactly: W * 10^E with W < 2^53 and |E| <= 22 is one correctly rounded IEEE
 * operation (Clinger's fast path), anything else goes through strtod, which glibc rounds
 * correctly too. Polars (fast-float) rounds correctly, so both give the same double. */
enum { P_SKIP = 0, P_STR = 1, P_INT = 2, P_UINT = 3, P_FLOAT = 4, P_CHECK = 8 };

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

/* Integer field [s, e): 1 and *out on success, 0 when it is not in the strict form. */
static int parse_int(const unsigned char *s, const unsigned char *e, int sign_ok, int64_t *out) {
    int neg = 0;
    if (s < e && *s == '-' && sign_ok) { neg = 1; s++; }
    if (s == e || e - s > 18) return 0;
    int64_t v = 0;
    for (; s < e; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    *out = neg ? -v : v;
    return 1;
}

/* Float field [s, e) in the strict form: 1 and *out, else 0. */
static int parse_float(const unsigned char *s, const unsigned char *e, double *out) {
    const unsigned char *start = s;
    int neg = 0;
    if (s < e && *s == '-') { neg = 1; s++; }
    uint64_t w = 0;
    int sig = 0, frac = 0, exact = 1;
    const unsigned char *d0 = s;
    for (; s < e && (unsigned)(*s - '0') <= 9; s++) {
        if (sig < 19) { w = w * 10 + (*s - '0'); if (w) sig++; }
        else exact = 0;
    }
    if (s == d0) return 0;
    if (!exact) return 0; /* 19+ significant integer digits: leave it to the general path */
    if (s < e && *s == '.') {
        s++;
        const unsigned char *f0 = s;
        for (; s < e && (unsigned)(*s - '0') <= 9; s++) {
            if (sig < 19) { w = w * 10 + (*s - '0'); frac++; if (w) sig++; }
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
        v = e10 >= 0 ? v * P10D[23 + e10] : v / P10D[23 - e10];
        *out = neg ? -v : v;
        return 1;
    }
    char buf[64];
    if (e - start >= (ptrdiff_t)sizeof buf) return 0;
    memcpy(buf, start, (size_t)(e - start));
    buf[e - start] = 0;
    *out = strtod(buf, NULL);
    return 1;
}

/* Structural index: the positions of separators and '\n's, found 64 bytes at a time, so that
 * where one field ends never waits on parsing the one before (a byte loop, or a search
 * starting at the previous field's end, makes every field one long dependency chain). */
#define IDX_CAP 4096

typedef struct {
    const unsigned char *data;
    int64_t len, scanned; /* bytes indexed so far */
    uint32_t pos[IDX_CAP + 64 + 1];
    int n;                /* valid entries in pos */
    int ended;            /* the virtual end-of-data entry was added */
    unsigned char sep, quoted;
} s_index;

/* 64-bit masks of the structural bytes and of the bytes the fast path refuses in one block. */
static inline void block_masks(const unsigned char *b, unsigned char sep, int quoted,
                               uint64_t *structural, uint64_t *bad) {
#if defined(__SSE2__)
    const __m128i vsep = _mm_set1_epi8((char)sep), vnl = _mm_set1_epi8('\n');
    const __m128i vcr = _mm_set1_epi8('\r'), vnul = _mm_setzero_si128();
    const __m128i vq = _mm_set1_epi8(quoted ? '"' : '\n');
    uint64_t st = 0, bd = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(b + 16 * k));
        __m128i s1 = _mm_or_si128(_mm_cmpeq_epi8(v, vsep), _mm_cmpeq_epi8(v, vnl));
        __m128i b1 = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vcr), _mm_cmpeq_epi8(v, vnul)),
                                  _mm_cmpeq_epi8(v, vq));
        st |= (uint64_t)(uint32_t)_mm_movemask_epi8(s1) << (16 * k);
        bd |= (uint64_t)(uint32_t)_mm_movemask_epi8(b1) << (16 * k);
    }
    *structural = st;
    *bad = bd;
#else
    uint64_t st = 0, bd = 0;
    for (int k = 0; k < 64; k++) {
        unsigned char c = b[k];
        st |= (uint64_t)(c == sep || c == '\n') << k;
        bd |= (uint64_t)(c == '\r' || c == 0 || (quoted && c == '"')) << k;
    }
    *structural = st;
    *bad = bd;
#endif
}

/* Index more of the data, keeping entries from `keep` on. 0 when a refused byte shows up. */
static int index_more(s_index *ix, int keep) {
    memmove(ix->pos, ix->pos + keep, sizeof(uint32_t) * (size_t)(ix->n - keep));
    ix->n -= keep;
    while (ix->scanned < ix->len && ix->n < IDX_CAP) {
        const unsigned char *b = ix->data + ix->scanned;
        unsigned char tail[64];
        int64_t left = ix->len - ix->scanned;
        if (left < 64) { /* pad the last block with a byte that is neither structural nor bad */
            memset(tail, 'x', sizeof tail);
            memcpy(tail, b, (size_t)left);
            b = tail;
        }
        uint64_t st, bad;
        block_masks(b, ix->sep, ix->quoted, &st, &bad);
        if (bad) return 0;
        uint32_t base = (uint32_t)ix->scanned;
        while (st) {
            ix->pos[ix->n++] = base + (uint32_t)__builtin_ctzll(st);
            st &= st - 1;
        }
        ix->scanned += 64;
    }
    if (ix->scanned >= ix->len && !ix->ended) {
        ix->ended = 1; /* a last record without its '\n' ends at the end of the data */
        if (ix->len == 0 || ix->data[ix->len - 1] != '\n') ix->pos[ix->n++] = (uint32_t)ix->len;
    }
    return 1;
}

/* values[c]: int64/double array (P_INT/P_UINT/P_FLOAT) or string bytes (P_STR, room for the
 * whole chunk); offsets[c]: large_string offsets (P_STR, max_rows + 1). Returns rows or -1. */
int64_t ess_parse_delimited(const unsigned char *data, int64_t len, int32_t sep, int32_t quoted,
                            int32_t ncols, const int32_t *kinds, void *const *values,
                            int64_t *const *offsets, int64_t max_rows) {
    if (len <= 0 || len >= (int64_t)UINT32_MAX || ncols <= 0 || ncols > 1024 || sep == '\n')
        return -1;
    s_index *ix = malloc(sizeof *ix);
    if (!ix) return -1;
    ix->data = data;
    ix->len = len;
    ix->scanned = 0;
    ix->n = 0;
    ix->ended = 0;
    ix->sep = (unsigned char)sep;
    ix->quoted = quoted != 0;
    for (int c = 0; c < ncols; c++)
        if ((kinds[c] & 7) == P_STR) offsets[c][0] = 0;
    int64_t row = 0, result = -1;
    int at = 0;
    int64_t start = 0; /* where the next field begins */
    for (;;) {
        if (ix->n - at < ncols) {
            if (ix->ended) {
                if (ix->n == at) result = row; /* every record consumed */
                break;
            }
            if (!index_more(ix, at)) break;
            at = 0;
            continue;
        }
        if (row >= max_rows) break;
        const uint32_t *pos = ix->pos + at;
        int ok = 1;
        for (int c = 0; c < ncols && ok; c++) {
            int64_t e = pos[c];
            const unsigned char *f = data + start, *fe = data + e;
            /* fields end at separators, the record at '\n' (or the end of the data) */
            if (c < ncols - 1 ? (e >= len || data[e] != (unsigned char)sep)
                              : (e < len && data[e] != '\n')) { ok = 0; break; }
            int kind = kinds[c];
            switch (kind & 7) {
            case P_SKIP:
                break;
            case P_STR: {
                int64_t o = offsets[c][row], n = fe - f;
                for (const unsigned char *q = f; q < fe; q++)
                    if (*q >= 0x80) { ok = utf8_ok(f, fe); break; }
                memcpy((char *)values[c] + o, f, (size_t)n);
                offsets[c][row + 1] = o + n;
                break;
            }
            case P_INT:
            case P_UINT: {
                int64_t v = 0;
                ok = parse_int(f, fe, (kind & 7) == P_INT, &v);
                if (!(kind & P_CHECK)) ((int64_t *)values[c])[row] = v;
                break;
            }
            case P_FLOAT: {
                double v = 0;
                ok = parse_float(f, fe, &v);
                if (!(kind & P_CHECK)) ((double *)values[c])[row] = v;
                break;
            }
            default:
                ok = 0;
            }
            start = e + 1;
        }
        if (!ok) break;
        at += ncols;
        row++;
    }
    free(ix);
    return result;
}
