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
