/* A set of string keys numbered in order of arrival: the UDB vector fold's join of a batch's
 * keys against a partition's stored keys (ess.udb.fold).
 *
 * The stored keys are added first (numbered 0..n-1); then each batch row's key is looked up
 * and, when it is not there, added with the next number, its row noted as the key's first
 * appearance. One pass gives every batch row its merged-vector row, stored or new, where the
 * Polars path needs a join, a filter of the misses, a unique and a second join.
 *
 * Keys come as Arrow string views (16 bytes: the length, then the bytes when they fit in 12,
 * else their first 4 bytes, the data buffer's index and the offset there). The set copies
 * each key's view (dense, in key order) and keeps a pointer to a longer key's bytes, so the
 * buffers must outlive it. Open addressing with linear probing; a slot holds 32 bits of the
 * key's hash and its number + 1 (0: empty). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t *slots;
    int64_t mask;  /* slots - 1, a power of 2 minus 1 */
    int64_t n;     /* keys */
    int64_t room;  /* keys the arrays below hold */
    /* each key as a canonical 16-byte view (length, then up to 12 bytes zero-padded, or the
     * first 4 bytes of a longer key): dense, in key order, so a probe compares in cache */
    unsigned char *views;
    const unsigned char **longs;  /* a longer key's bytes (NULL for an inline key) */
} keyset;

/* The canonical view of v into out, and the key's bytes (inline ones are in out). */
static inline const unsigned char *canonical(const unsigned char *v, const unsigned char *const *buffers,
                                      unsigned char *out, int32_t *len) {
    int32_t n, buffer, offset;
    memcpy(&n, v, 4);
    *len = n;
    memset(out, 0, 16);
    memcpy(out, &n, 4);
    if (n <= 12) {
        memcpy(out + 4, v + 4, (size_t)n);
        return out + 4;
    }
    memcpy(out + 4, v + 4, 4);
    memcpy(&buffer, v + 8, 4);
    memcpy(&offset, v + 12, 4);
    return buffers[buffer] + offset;
}

static uint64_t mix(uint64_t h) {
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return h;
}

/* An inline key hashes its canonical view's two words; a longer one all its bytes. */
static inline uint64_t key_hash(const unsigned char *view, const unsigned char *s, int32_t len) {
    uint64_t a, b;
    memcpy(&a, view, 8);
    memcpy(&b, view + 8, 8);
    uint64_t h = mix(a ^ 0x9e3779b97f4a7c15ULL);
    h = mix(h ^ b);
    if (len <= 12) return h;
    int32_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = mix(h ^ w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, s + i, (size_t)(len - i));
        h = mix(h ^ w ^ 0x94d049bb133111ebULL);
    }
    return h;
}

static inline int same_key(const keyset *ks, int64_t k, const unsigned char *view,
                    const unsigned char *s, int32_t len) {
    const unsigned char *mine = ks->views + 16 * k;
    if (memcmp(mine, view, len <= 12 ? 16 : 8) != 0) return 0;
    return len <= 12 || memcmp(ks->longs[k], s, (size_t)len) == 0;
}

static int grow_slots(keyset *ks, int64_t size) {
    uint64_t *slots = calloc((size_t)size, sizeof(uint64_t));
    if (!slots) return -1;
    for (int64_t k = 0; k < ks->n; k++) {
        const unsigned char *view = ks->views + 16 * k;
        int32_t len;
        memcpy(&len, view, 4);
        uint64_t h = key_hash(view, len <= 12 ? view + 4 : ks->longs[k], len);
        int64_t at = (int64_t)(h & (uint64_t)(size - 1));
        while (slots[at]) at = (at + 1) & (size - 1);
        slots[at] = (h >> 32 << 32) | (uint64_t)(k + 1);
    }
    free(ks->slots);
    ks->slots = slots;
    ks->mask = size - 1;
    return 0;
}

static int grow_keys(keyset *ks) {
    int64_t room = ks->room * 2 + 1024;
    unsigned char *views = realloc(ks->views, (size_t)room * 16);
    if (!views) return -1;
    ks->views = views;
    const unsigned char **longs = realloc((void *)ks->longs, (size_t)room * sizeof(*longs));
    if (!longs) return -1;
    ks->longs = longs;
    ks->room = room;
    return 0;
}

void ess_keyset_free(void *handle) {
    keyset *ks = handle;
    if (!ks) return;
    free(ks->slots);
    free(ks->views);
    free((void *)ks->longs);
    free(ks);
}

/* A set sized for about `expected` keys (it grows); NULL when out of memory. */
void *ess_keyset_new(int64_t expected) {
    keyset *ks = calloc(1, sizeof(keyset));
    if (!ks) return NULL;
    int64_t size = 1024;
    while (size < 2 * expected) size *= 2;
    if (grow_slots(ks, size) != 0) {
        ess_keyset_free(ks);
        return NULL;
    }
    return ks;
}

/* Each of n views: its key's number into idx[i], the key added with the next number when it
 * is new, and then row_base + i noted in first[] (rows where a new key first appears, in
 * order). Returns how many keys were new, or -1 when out of memory.
 *
 * Rows go in blocks: the block's keys are hashed and their slots prefetched first, then
 * probed, so the slots' cache misses overlap instead of following one another. */
#define BLOCK 16
int64_t ess_keyset_add_views(void *handle, const unsigned char *views,
                             const unsigned char *const *buffers, int64_t n, int64_t row_base,
                             int64_t *idx, int64_t *first) {
    keyset *ks = handle;
    int64_t fresh = 0;
    unsigned char canon[BLOCK][16];
    const unsigned char *bytes[BLOCK];
    int32_t lens[BLOCK];
    uint64_t hashes[BLOCK];
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t m = n - start < BLOCK ? n - start : BLOCK;
        for (int64_t j = 0; j < m; j++) {
            bytes[j] = canonical(views + 16 * (start + j), buffers, canon[j], &lens[j]);
            hashes[j] = key_hash(canon[j], bytes[j], lens[j]);
            __builtin_prefetch(&ks->slots[hashes[j] & (uint64_t)ks->mask]);
        }
        for (int64_t j = 0; j < m; j++) {
            uint64_t h = hashes[j], tag = h >> 32 << 32;
            int64_t at = (int64_t)(h & (uint64_t)ks->mask);
            int64_t found = -1;
            for (;;) {
                uint64_t slot = ks->slots[at];
                if (!slot) break;
                if ((slot & 0xffffffff00000000ULL) == tag) {
                    int64_t k = (int64_t)(slot & 0xffffffffULL) - 1;
                    if (same_key(ks, k, canon[j], bytes[j], lens[j])) {
                        found = k;
                        break;
                    }
                }
                at = (at + 1) & ks->mask;
            }
            if (found < 0) {
                if (ks->n == ks->room && grow_keys(ks) != 0) return -1;
                found = ks->n++;
                memcpy(ks->views + 16 * found, canon[j], 16);
                /* an inline key's bytes are in its canonical view: no pointer to keep */
                ks->longs[found] = lens[j] <= 12 ? NULL : bytes[j];
                ks->slots[at] = tag | (uint64_t)(found + 1);
                first[fresh++] = row_base + start + j;
                if (2 * ks->n > ks->mask && grow_slots(ks, 2 * (ks->mask + 1)) != 0) return -1;
            }
            idx[start + j] = found;
        }
    }
    return fresh;
}
