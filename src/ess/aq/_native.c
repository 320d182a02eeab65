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
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

/* Exactly 8 decimal digits of x < 10^8: two independent halves, two digits per table load
 * (a loop dividing by 100 eight times is one long chain of dependent divisions). */
static inline void put8(uint32_t x, char *d) {
    uint32_t hi = x / 10000, lo = x % 10000;
    memcpy(d, DIGITS2 + 2 * (hi / 100), 2);
    memcpy(d + 2, DIGITS2 + 2 * (hi % 100), 2);
    memcpy(d + 4, DIGITS2 + 2 * (lo / 100), 2);
    memcpy(d + 6, DIGITS2 + 2 * (lo % 100), 2);
}

/* One value as %.<p>g into out. The caller leaves 32 bytes of room from out (24 characters
 * at most, and snprintf's NUL), so the digits are moved with fixed-size copies that may write
 * past the value's end within that room: no variable-length memcpy call per value. */
static int fmt_one(double v, int p, char *out) {
    if (!isfinite(v) || v == 0.0) return slow(v, p, out);
    uint64_t n;
    int e10;
    if (!digits(fabs(v), p, &n, &e10) || e10 < -4 || e10 >= p) return slow(v, p, out);
    /* the p <= 17 digits of n < 10^p, right-aligned in the first 24 bytes */
    char buf[48] = {0};
    uint64_t upper = n / 100000000u;
    uint32_t top = (uint32_t)(upper / 100000000u);
    put8(top, buf);
    put8((uint32_t)(upper - (uint64_t)top * 100000000u), buf + 8);
    put8((uint32_t)(n - upper * 100000000u), buf + 16);
    const char *d = buf + 24 - p;
    int len = p;
    while (len > 1 && d[len - 1] == '0') len--;
    char *o = out;
    if (v < 0) *o++ = '-';
    if (e10 < 0) { /* 0.000ddd: o ends by out + 1 + 5 + 24 */
        memcpy(o, "0.000", 5);
        o += 1 - e10;
        memcpy(o, d, 24);
        return (int)(o + len - out);
    }
    int whole = e10 + 1;
    if (len <= whole) { /* an integer: its digits, then the zeros d already holds */
        memcpy(o, d, 24);
        return (int)(o + whole - out);
    }
    if (whole <= 8) { /* ddd.ddd with copies ending by out + 1 + 8 + 1 + 16 */
        memcpy(o, d, 16);
        o[whole] = '.';
        memcpy(o + whole + 1, d + whole, 16);
        return (int)(o + len + 1 - out);
    }
    memcpy(o, d, whole);
    o[whole] = '.';
    memcpy(o + whole + 1, d + whole, len - whole);
    return (int)(o + len + 1 - out);
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

/* Occurrences of bytes a and b in p[0..n) in one pass (the reader wants the newlines and the
 * quotes of each chunk: one read of the memory instead of two). */
void ess_count_pair(const unsigned char *p, int64_t n, int a, int b, int64_t *out) {
    int64_t ta = 0, tb = 0, i = 0;
    unsigned char x = (unsigned char)a, y = (unsigned char)b;
    for (; i + 255 <= n; i += 255) {
        unsigned char ca = 0, cb = 0;
        for (int j = 0; j < 255; j++) {
            ca += p[i + j] == x;
            cb += p[i + j] == y;
        }
        ta += ca;
        tb += cb;
    }
    for (; i < n; i++) {
        ta += p[i] == x;
        tb += p[i] == y;
    }
    out[0] = ta;
    out[1] = tb;
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

static uint64_t string_hash(const unsigned char *data, int64_t start, int64_t end, uint64_t base) {
    uint64_t h = 0;
    for (int64_t j = end - 1; j >= start; j--) h = mod_m31(h * base + data[j]);
    return h;
}

void ess_string_hash(const int64_t *offsets, const unsigned char *data, int64_t n, uint64_t base,
                     int64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (int64_t)string_hash(data, offsets[i], offsets[i + 1], base);
}

/* Arrow string views of the n strings [offsets[i], offsets[i + 1]) of `data`, 16 bytes each into
 * `views`: the length, then the bytes when they fit in 12, else their first 4 bytes, buffer 0
 * and the offset (offsets must be below 2^31). Polars' strings are such views: it takes the
 * column without converting it (a large_string column is copied into views, 2-5 ms per
 * 400,000 strings). */
void ess_string_views(const int64_t *offsets, const unsigned char *data, int64_t n,
                      unsigned char *views) {
    for (int64_t i = 0; i < n; i++) {
        int64_t start = offsets[i];
        int32_t len = (int32_t)(offsets[i + 1] - start);
        unsigned char *v = views + 16 * i;
        memset(v, 0, 16);
        memcpy(v, &len, 4);
        if (len <= 12) {
            memcpy(v + 4, data + start, (size_t)len);
        } else {
            int32_t buffer = 0, offset = (int32_t)start;
            memcpy(v + 4, data + start, 4);
            memcpy(v + 8, &buffer, 4);
            memcpy(v + 12, &offset, 4);
        }
    }
}

/* The stable counting sort of the cut: rows partition after partition (`part[i]` each row's,
 * `counts` each partition's rows), in row order within each. */
static void counting_order(const uint8_t *part, int64_t n, int32_t partitions,
                           const int64_t *counts, int64_t *order) {
    int64_t next[256];
    int64_t at = 0;
    for (int32_t p = 0; p < partitions; p++) {
        next[p] = at;
        at += counts[p];
    }
    for (int64_t i = 0; i < n; i++) order[next[part[i]]++] = i;
}

/* ------------------------------------------------------------ the cut on Arrow string views
 * A view is 16 bytes: the length, then the bytes when they fit in 12, else their first 4 bytes,
 * the index of the data buffer in `buffers` and the offset there. */
static const unsigned char *view_bytes(const unsigned char *v, const unsigned char *const *buffers,
                                       int32_t *len) {
    int32_t n, buffer, offset;
    memcpy(&n, v, 4);
    *len = n;
    if (n <= 12) return v + 4;
    memcpy(&buffer, v + 8, 4);
    memcpy(&offset, v + 12, 4);
    return buffers[buffer] + offset;
}

/* The UDB's cut of a batch keyed by one string column, on its n Arrow string views, in two
 * passes and no sort: each row's partition (the key hash of ess_string_hash, mod `partitions`,
 * at most 256) into `part`, then a stable counting sort: `order` lists the rows partition after
 * partition, in row order within each; `counts[p]` is the number of rows of partition p. */
void ess_view_partition_order(const unsigned char *views, const unsigned char *const *buffers,
                              int64_t n, uint64_t base, int32_t partitions, uint8_t *part,
                              int64_t *order, int64_t *counts) {
    /* an inline string (at most 12 bytes) hashes as sum(byte[j] * base^j) with the powers
     * below 2^31: each term is below 2^39 and their sum below 2^43, so one reduction at the
     * end, and the terms do not wait on each other as Horner's steps do */
    uint64_t pw[12];
    pw[0] = 1;
    for (int j = 1; j < 12; j++) pw[j] = mod_m31(pw[j - 1] * base);
    for (int32_t p = 0; p < partitions; p++) counts[p] = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t len;
        const unsigned char *s = view_bytes(views + 16 * i, buffers, &len);
        uint64_t h;
        if (len <= 12) {
            h = 0;
            for (int32_t j = 0; j < len; j++) h += s[j] * pw[j];
            h = mod_m31(h);
        } else {
            h = string_hash(s, 0, len, base);
        }
        uint8_t p = (uint8_t)(h % (uint64_t)partitions);
        part[i] = p;
        counts[p]++;
    }
    counting_order(part, n, partitions, counts, order);
}

/* Bytes of the strings longer than 12 among n views (rows order[0..n), or the first n when
 * order is NULL): what a compacted copy keeps in its one data buffer. */
int64_t ess_view_long_bytes(const unsigned char *views, const int64_t *order, int64_t n) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t len;
        memcpy(&len, views + 16 * (order ? order[i] : i), 4);
        if (len > 12) total += len;
    }
    return total;
}

/* The views of rows order[0..n) into out_views, compacted: a long string's bytes are copied
 * into out_data (buffer 0, sized by ess_view_long_bytes, below 2^31) in output order, so the
 * result holds only its own rows' bytes, not the whole parsed text the input views point
 * into (a staged file of a few rows would otherwise carry it all). Short strings are inline:
 * one 16-byte copy each, where a take of offsets and bytes copies every string separately. */
void ess_view_gather(const unsigned char *views, const unsigned char *const *buffers,
                     const int64_t *order, int64_t n, unsigned char *out_views,
                     unsigned char *out_data) {
    int32_t at = 0, zero = 0;
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *v = views + 16 * order[i];
        unsigned char *o = out_views + 16 * i;
        memcpy(o, v, 16);
        int32_t len;
        const unsigned char *s = view_bytes(v, buffers, &len);
        if (len > 12) {
            memcpy(out_data + at, s, (size_t)len);
            memcpy(o + 8, &zero, 4);
            memcpy(o + 12, &at, 4);
            at += len;
        }
    }
}

/* Rows order[0..n) of a column of 8-byte values (no bounds checks: the order is the cut's own
 * permutation). */
void ess_gather_8(const uint64_t *values, const int64_t *order, int64_t n, uint64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = values[order[i]];
}

/* Left-to-right sum of x[0..n) onto init, as a C loop adds: the order decides the exact result
 * of a float -var total, so no pairwise or vectorised summation (never build with fast-math). */
double ess_sum_f64(const double *x, int64_t n, double init) {
    double s = init;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}
