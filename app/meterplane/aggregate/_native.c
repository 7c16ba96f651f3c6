/* The embedded aggregator's native core: what it does for every event, without Python
 * objects per event and, where it touches only C memory, without the interpreter lock.
 *
 * Why: ``serve`` runs ingest and the aggregator in one process (the issue asks for it),
 * so they share CPython's interpreter lock. Per event the Python aggregator held it about
 * twice as long as ingest needed it; ingest then waited for counting, whatever either
 * cost alone (bench/RESULTS.md, fifth session). This module takes over, frame by frame:
 *
 * - ``Dedup``: the window of (customerId, idempotencyKey) identities, as a hash set of
 *   UTF-8 bytes kept in arrival order, so forgetting the oldest is a walk of one block;
 * - ``Meters``: the catalog's meters and the periods the Python ``CounterBook`` has opened;
 * - ``scan_events``: one pass over an event frame's body (the request's JSON exactly as
 *   received and validated by ingest) that decodes the identities, drops the duplicates,
 *   counts the first copies (one summary per counter touched, which the Python counters
 *   ``merge``) and returns their raw-row columns as Arrow buffers (payload: each event's
 *   JSON text as received, as the Kafka loader stores it).
 *
 * The Python path stays the reference. An event this core would not decide exactly as
 * it does (see "counting" below) is left to it whole; a frame the scan does not fully
 * understand (a repeated field, an unexpected shape) is refused (``None``) *before*
 * anything is admitted, and the caller takes the Python path for all of it. Timestamps
 * are parsed here only in the plain RFC 3339 form with at most six fraction digits; any
 * other form is left to the caller (``ts_unparsed``), which knows msgspec's rules.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sys/mman.h>

/* ------------------------------------------------------------------------ hashing */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *p, size_t n, uint64_t seed) {
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) * 0x9e3779b97f4a7c15ULL;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w ^ ((uint64_t)n << 56));
}

/* The hash tables' slots. From 2 MiB up, a mapping of their own with transparent huge
 * pages asked for: the dedup window holds a day of identities, tens of MiB probed at
 * random, and in 4 KiB pages nearly every probe also misses the TLB and every page is a
 * fault when first written (in ``perf``, faults under ``admit_hashed`` were a sixth of
 * the aggregator's time while a burst grew the table). */
#define HUGE_TABLE ((size_t)2 << 20)

static void *table_alloc(size_t n, size_t size) {
    size_t bytes = n * size;
    if (bytes < HUGE_TABLE) return calloc(n, size);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without it, small pages */
#endif
    return p;
}

static void table_free(void *p, size_t n, size_t size) {
    if (!p) return;
    if (n * size < HUGE_TABLE)
        free(p);
    else
        munmap(p, n * size);
}

/* Double an open-addressing table (``tab``, ``cap`` slots, a power of two) of ``type``,
 * whose free slots have ``occupied`` NULL and whose entries keep their hash in ``h``;
 * ``ok`` is set to 0 when out of memory (the table is then unchanged). */
#define DOUBLE_TABLE(type, tab, cap, occupied, ok)                 \
    do {                                                           \
        size_t cap_ = (cap) * 2;                                   \
        type *t_ = table_alloc(cap_, sizeof(type));                \
        (ok) = t_ != NULL;                                         \
        if (!t_) break;                                            \
        for (size_t i_ = 0; i_ < (cap); i_++) {                    \
            if (!(tab)[i_].occupied) continue;                     \
            size_t j_ = (size_t)(tab)[i_].h & (cap_ - 1);          \
            while (t_[j_].occupied) j_ = (j_ + 1) & (cap_ - 1);    \
            t_[j_] = (tab)[i_];                                    \
        }                                                          \
        table_free((tab), (cap), sizeof(type));                    \
        (tab) = t_;                                                \
        (cap) = cap_;                                              \
    } while (0)

/* ------------------------------------------------------------------------ dedup set */

/* An identity: its key's bytes in the block of the frame that admitted it (the key's
 * length is the u32 before them), the customer as an index into the customers seen so
 * far, and the low half of its hash (the table never holds 2**32 slots). 16 bytes: the
 * table is most of the window's memory. key == NULL marks a free slot. */
typedef struct {
    const char *key;
    uint32_t h;
    uint32_t cust;
} Entry;

static inline uint32_t key_len(const char *key) {
    uint32_t n;
    memcpy(&n, key - 4, 4);
    return n;
}

/* The identities one admit call remembered, in one allocation, oldest block first. */
typedef struct Block {
    struct Block *next;
    int64_t at;
    uint32_t n;
    size_t used, size; /* bytes of records written; bytes allocated, header included */
    char data[]; /* n records of: u32 cust, u32 klen, klen bytes */
} Block;

typedef struct {
    PyObject_HEAD
    Entry *slots;
    size_t cap; /* a power of two */
    size_t n;
    Block *head, *tail;
    size_t block_bytes; /* allocated by the blocks held */
    /* customers: id -> str (a new reference each), and a small hash table of ids */
    PyObject *cust_names; /* list[str] */
    char **cust_bytes;
    uint32_t *cust_lens;
    uint32_t n_cust, cust_cap;
    uint32_t *cust_index; /* open addressing: id + 1, 0 = free */
    uint32_t cust_index_cap;
    /* The aggregator admits without the interpreter lock; anyone may look meanwhile
     * (``in``, ``len``: tests, inspection). This lock keeps them apart. */
    pthread_mutex_t lock;
} DedupObject;

static uint64_t ident_hash(uint32_t cust, const char *key, size_t klen) {
    return hash_bytes(key, klen, mix64(cust + 0x51ed270b27f1b5a1ULL));
}

/* A customer's hash (``hash_bytes(p, n, 7)``) keys both its id and its counters' periods. */
static inline uint64_t cust_hash(const char *p, size_t n) { return hash_bytes(p, n, 7); }

static int customer_id(DedupObject *d, const char *p, uint32_t n, uint64_t h, uint32_t *out) {
    uint32_t mask = d->cust_index_cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        uint32_t v = d->cust_index[i];
        if (v == 0) break;
        uint32_t id = v - 1;
        if (d->cust_lens[id] == n && memcmp(d->cust_bytes[id], p, n) == 0) {
            *out = id;
            return 0;
        }
    }
    /* a customer not seen before: needs the GIL (a str object); callers hold it */
    if (d->n_cust == d->cust_cap) {
        uint32_t cap = d->cust_cap ? d->cust_cap * 2 : 16;
        char **b = realloc(d->cust_bytes, cap * sizeof(char *));
        if (!b) return -1;
        d->cust_bytes = b;
        uint32_t *l = realloc(d->cust_lens, cap * sizeof(uint32_t));
        if (!l) return -1;
        d->cust_lens = l;
        d->cust_cap = cap;
    }
    if ((d->n_cust + 1) * 2 > d->cust_index_cap) {
        uint32_t cap = d->cust_index_cap * 2;
        uint32_t *idx = calloc(cap, sizeof(uint32_t));
        if (!idx) return -1;
        for (uint32_t id = 0; id < d->n_cust; id++) {
            uint64_t hh = cust_hash(d->cust_bytes[id], d->cust_lens[id]);
            uint32_t j = (uint32_t)hh & (cap - 1);
            while (idx[j]) j = (j + 1) & (cap - 1);
            idx[j] = id + 1;
        }
        free(d->cust_index);
        d->cust_index = idx;
        d->cust_index_cap = cap;
        mask = cap - 1;
    }
    char *copy = malloc(n ? n : 1);
    if (!copy) return -1;
    memcpy(copy, p, n);
    PyObject *name = PyUnicode_DecodeUTF8(p, n, "strict");
    if (!name) {
        free(copy);
        return -2;
    }
    PyUnicode_InternInPlace(&name);
    if (PyList_Append(d->cust_names, name) < 0) {
        Py_DECREF(name);
        free(copy);
        return -2;
    }
    Py_DECREF(name);
    uint32_t id = d->n_cust++;
    d->cust_bytes[id] = copy;
    d->cust_lens[id] = n;
    uint32_t i = (uint32_t)h & mask;
    while (d->cust_index[i]) i = (i + 1) & mask;
    d->cust_index[i] = id + 1;
    *out = id;
    return 0;
}

/* Look a customer up without creating it (no GIL needed): -1 when unknown. */
static int64_t customer_find(const DedupObject *d, const char *p, uint32_t n) {
    uint64_t h = cust_hash(p, n);
    uint32_t mask = d->cust_index_cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        uint32_t v = d->cust_index[i];
        if (v == 0) return -1;
        uint32_t id = v - 1;
        if (d->cust_lens[id] == n && memcmp(d->cust_bytes[id], p, n) == 0) return id;
    }
}

static Entry *find_slot(const DedupObject *d, uint64_t h, uint32_t cust, const char *key,
                        uint32_t klen) {
    size_t mask = d->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        Entry *e = &d->slots[i];
        if (!e->key) return e;
        if (e->h == (uint32_t)h && e->cust == cust && key_len(e->key) == klen &&
            memcmp(e->key, key, klen) == 0)
            return e;
    }
}

static int grow(DedupObject *d) {
    int ok;
    DOUBLE_TABLE(Entry, d->slots, d->cap, key, ok);
    return ok ? 0 : -1;
}

/* Remove one entry (backward-shift deletion keeps linear probing tombstone-free). */
static void remove_entry(DedupObject *d, Entry *e) {
    size_t mask = d->cap - 1;
    size_t i = (size_t)(e - d->slots);
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        Entry *f = &d->slots[j];
        if (!f->key) break;
        size_t home = (size_t)f->h & mask;
        /* f may move to i if its home is not in the cyclic range (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            d->slots[i] = *f;
            i = j;
        }
    }
    d->slots[i].key = NULL;
    d->n--;
}

/* A block sized for ``n`` identities holding ``bytes`` key bytes in all. */
static Block *block_new(int64_t at, size_t n, size_t bytes) {
    size_t size = sizeof(Block) + n * 8 + bytes;
    Block *b = malloc(size);
    if (!b) return NULL;
    b->size = size;
    b->next = NULL;
    b->at = at;
    b->n = 0;
    b->used = 0;
    return b;
}

/* Admit one identity (its ``ident_hash`` is ``h``) into ``b`` unless known: 1 admitted,
 * 0 a duplicate, -1 no memory. */
static int admit_hashed(DedupObject *d, Block *b, uint32_t cust, const char *key, uint32_t klen,
                        uint64_t h) {
    if ((d->n + 1) * 2 > d->cap && grow(d) < 0) return -1; /* short probes: at most half full */
    Entry *e = find_slot(d, h, cust, key, klen);
    if (e->key) return 0;
    char *rec = b->data + b->used;
    memcpy(rec, &cust, 4);
    memcpy(rec + 4, &klen, 4);
    memcpy(rec + 8, key, klen);
    b->used += 8 + (size_t)klen;
    b->n++;
    e->h = (uint32_t)h;
    e->key = rec + 8;
    e->cust = cust;
    d->n++;
    return 1;
}

static int admit_one(DedupObject *d, Block *b, uint32_t cust, const char *key, uint32_t klen) {
    return admit_hashed(d, b, cust, key, klen, ident_hash(cust, key, klen));
}

static void block_link(DedupObject *d, Block *b) {
    if (!b->n) {
        free(b);
        return;
    }
    d->block_bytes += b->size;
    if (d->tail)
        d->tail->next = b;
    else
        d->head = b;
    d->tail = b;
}

static void forget_block(DedupObject *d, Block *b) {
    const char *rec = b->data;
    for (uint32_t k = 0; k < b->n; k++) {
        uint32_t cust, klen;
        memcpy(&cust, rec, 4);
        memcpy(&klen, rec + 4, 4);
        uint64_t h = ident_hash(cust, rec + 8, klen);
        Entry *e = find_slot(d, h, cust, rec + 8, klen);
        if (e->key == rec + 8) remove_entry(d, e);
        rec += 8 + (size_t)klen;
    }
}

static PyObject *Dedup_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    DedupObject *d = (DedupObject *)type->tp_alloc(type, 0);
    if (!d) return NULL;
    d->cap = 1024;
    d->slots = table_alloc(d->cap, sizeof(Entry));
    d->cust_index_cap = 64;
    d->cust_index = calloc(d->cust_index_cap, sizeof(uint32_t));
    pthread_mutex_init(&d->lock, NULL);
    d->cust_names = PyList_New(0);
    if (!d->slots || !d->cust_index || !d->cust_names) {
        Py_DECREF(d);
        return PyErr_NoMemory();
    }
    return (PyObject *)d;
}

static void Dedup_dealloc(DedupObject *d) {
    pthread_mutex_destroy(&d->lock);
    Block *b = d->head;
    while (b) {
        Block *next = b->next;
        free(b);
        b = next;
    }
    for (uint32_t i = 0; i < d->n_cust; i++) free(d->cust_bytes[i]);
    free(d->cust_bytes);
    free(d->cust_lens);
    free(d->cust_index);
    table_free(d->slots, d->cap, sizeof(Entry));
    Py_XDECREF(d->cust_names);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static Py_ssize_t Dedup_len(DedupObject *d) {
    pthread_mutex_lock(&d->lock);
    Py_ssize_t n = (Py_ssize_t)d->n;
    pthread_mutex_unlock(&d->lock);
    return n;
}

static int utf8_of(PyObject *s, const char **p, Py_ssize_t *n, const char *what) {
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(s)->tp_name);
        return -1;
    }
    *p = PyUnicode_AsUTF8AndSize(s, n);
    if (!*p) return -1;
    if (*n > UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s is too long", what);
        return -1;
    }
    return 0;
}

static int Dedup_contains_locked(DedupObject *d, PyObject *ident) {
    if (!PyTuple_Check(ident) || PyTuple_GET_SIZE(ident) != 2) return 0;
    const char *c, *k;
    Py_ssize_t cn, kn;
    if (utf8_of(PyTuple_GET_ITEM(ident, 0), &c, &cn, "customer") < 0 ||
        utf8_of(PyTuple_GET_ITEM(ident, 1), &k, &kn, "key") < 0)
        return -1;
    int64_t cust = customer_find(d, c, (uint32_t)cn);
    if (cust < 0) return 0;
    uint64_t h = ident_hash((uint32_t)cust, k, (size_t)kn);
    return find_slot(d, h, (uint32_t)cust, k, (uint32_t)kn)->key != NULL;
}

/* admit(customers, keys, at) -> list[int]: the indices not remembered yet (the first of
 * several copies within the lists too), now remembered as arrived at ``at``. */
static PyObject *Dedup_admit_locked(DedupObject *d, PyObject *args) {
    PyObject *customers, *keys;
    long long at;
    if (!PyArg_ParseTuple(args, "O!O!L", &PyList_Type, &customers, &PyList_Type, &keys, &at))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(customers);
    if (PyList_GET_SIZE(keys) != n) {
        PyErr_SetString(PyExc_ValueError, "customers and keys differ in length");
        return NULL;
    }
    size_t bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *k;
        Py_ssize_t kn;
        if (utf8_of(PyList_GET_ITEM(keys, i), &k, &kn, "key") < 0) return NULL;
        bytes += (size_t)kn;
    }
    Block *b = block_new(at, (size_t)n, bytes);
    PyObject *fresh = PyList_New(0);
    if (!b || !fresh) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *c, *k;
        Py_ssize_t cn, kn;
        uint32_t cust;
        if (utf8_of(PyList_GET_ITEM(customers, i), &c, &cn, "customer") < 0) goto fail;
        if (utf8_of(PyList_GET_ITEM(keys, i), &k, &kn, "key") < 0) goto fail;
        int r = customer_id(d, c, (uint32_t)cn, cust_hash(c, (size_t)cn), &cust);
        if (r == -1) {
            PyErr_NoMemory();
            goto fail;
        }
        if (r == -2) goto fail;
        r = admit_one(d, b, cust, k, (uint32_t)kn);
        if (r < 0) {
            PyErr_NoMemory();
            goto fail;
        }
        if (r) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (!idx || PyList_Append(fresh, idx) < 0) {
                Py_XDECREF(idx);
                goto fail;
            }
            Py_DECREF(idx);
        }
    }
    block_link(d, b);
    return fresh;
fail:
    /* what this call admitted so far stays remembered: keep the block that holds it */
    if (b) block_link(d, b);
    Py_XDECREF(fresh);
    return NULL;
}

static PyObject *Dedup_forget_before_locked(DedupObject *d, PyObject *arg) {
    long long cutoff = PyLong_AsLongLong(arg);
    if (cutoff == -1 && PyErr_Occurred()) return NULL;
    while (d->head && d->head->at < cutoff) {
        Block *b = d->head;
        forget_block(d, b);
        d->block_bytes -= b->size;
        d->head = b->next;
        if (!d->head) d->tail = NULL;
        free(b);
    }
    Py_RETURN_NONE;
}

/* arrivals() -> [(at, [(customer, key), ...]), ...], oldest first (for inspection) */
static PyObject *Dedup_arrivals_locked(DedupObject *d, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (Block *b = d->head; b; b = b->next) {
        PyObject *idents = PyList_New(b->n);
        if (!idents) goto fail;
        const char *rec = b->data;
        for (uint32_t k = 0; k < b->n; k++) {
            uint32_t cust, klen;
            memcpy(&cust, rec, 4);
            memcpy(&klen, rec + 4, 4);
            PyObject *t = Py_BuildValue("(Os#)", PyList_GET_ITEM(d->cust_names, cust), rec + 8,
                                        (Py_ssize_t)klen);
            if (!t) {
                Py_DECREF(idents);
                goto fail;
            }
            PyList_SET_ITEM(idents, k, t);
            rec += 8 + (size_t)klen;
        }
        PyObject *pair = Py_BuildValue("(LN)", (long long)b->at, idents);
        if (!pair || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static int Dedup_contains(DedupObject *d, PyObject *ident) {
    pthread_mutex_lock(&d->lock);
    int r = Dedup_contains_locked(d, ident);
    pthread_mutex_unlock(&d->lock);
    return r;
}

#define LOCKED(name, arg_t)                                      \
    static PyObject *name(DedupObject *d, arg_t arg) {           \
        pthread_mutex_lock(&d->lock);                            \
        PyObject *r = name##_locked(d, arg);                     \
        pthread_mutex_unlock(&d->lock);                          \
        return r;                                                \
    }
LOCKED(Dedup_admit, PyObject *)
LOCKED(Dedup_forget_before, PyObject *)
LOCKED(Dedup_arrivals, PyObject *)

/* nbytes() -> the bytes the window holds outside Python's allocator (tracemalloc sees none
 * of them): the table, the blocks of identities, the customers' names. */
static PyObject *Dedup_nbytes(DedupObject *d, PyObject *unused) {
    pthread_mutex_lock(&d->lock);
    size_t n = d->cap * sizeof(Entry) + d->block_bytes + d->cust_index_cap * sizeof(uint32_t) +
               d->cust_cap * (sizeof(char *) + sizeof(uint32_t));
    for (uint32_t i = 0; i < d->n_cust; i++) n += d->cust_lens[i];
    pthread_mutex_unlock(&d->lock);
    return PyLong_FromSize_t(n);
}

static PyMethodDef Dedup_methods[] = {
    {"admit", (PyCFunction)Dedup_admit, METH_VARARGS,
     "admit(customers, keys, at) -> indices of the identities not remembered yet"},
    {"forget_before", (PyCFunction)Dedup_forget_before, METH_O,
     "forget_before(cutoff): forget every identity that arrived before ``cutoff``"},
    {"nbytes", (PyCFunction)Dedup_nbytes, METH_NOARGS,
     "nbytes() -> bytes held in C (the table, the identities, the customers)"},
    {"arrivals", (PyCFunction)Dedup_arrivals, METH_NOARGS,
     "arrivals() -> (arrival, identities) per remembered block, oldest first"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Dedup_as_sequence = {
    .sq_length = (lenfunc)Dedup_len,
    .sq_contains = (objobjproc)Dedup_contains,
};

static PyTypeObject DedupType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "meterplane.aggregate._native.Dedup",
    .tp_basicsize = sizeof(DedupObject),
    .tp_dealloc = (destructor)Dedup_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "(customerId, idempotencyKey) identities, remembered in arrival order.",
    .tp_new = Dedup_new,
    .tp_methods = Dedup_methods,
    .tp_as_sequence = &Dedup_as_sequence,
};

/* ------------------------------------------------------------------------ JSON scan */

typedef struct {
    const char *p, *end;
} Cur;

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* A string token's content (between the quotes); *esc set when it holds escapes. */
static int str_token(Cur *c, const char **s, size_t *n, int *esc) {
    if (c->p >= c->end || *c->p != '"') return -1;
    const char *q = ++c->p;
    *esc = 0;
    for (;;) { /* the next quote, then whether an escape came first (rare) */
        q = memchr(q, '"', (size_t)(c->end - q));
        if (!q) return -1;
        const char *bs = memchr(c->p, '\\', (size_t)(q - c->p));
        if (!bs) break;
        *esc = 1;
        for (q = bs; q < c->end && *q != '"'; q += *q == '\\' ? 2 : 1) {
        }
        if (q >= c->end) return -1;
        break;
    }
    *s = c->p;
    *n = (size_t)(q - c->p);
    c->p = q + 1;
    return 0;
}

static int hex4(const char *p, uint32_t *v) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        x <<= 4;
        if (ch >= '0' && ch <= '9')
            x |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            x |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            x |= (uint32_t)(ch - 'A' + 10);
        else
            return -1;
    }
    *v = x;
    return 0;
}

/* Decode a string token's escapes into ``out`` (never longer than the token). */
static int unescape(const char *s, size_t n, char *out, size_t *outn) {
    const char *end = s + n;
    char *o = out;
    while (s < end) {
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        if (s + 1 >= end) return -1;
        char e = s[1];
        s += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (s + 4 > end || hex4(s, &cp) < 0) return -1;
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (s + 6 > end || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: return -1;
        }
    }
    *outn = (size_t)(o - out);
    return 0;
}

/* Skip any JSON value (the body was validated: this only needs to find where it ends). */
static int skip_value(Cur *c) {
    ws(c);
    if (c->p >= c->end) return -1;
    char ch = *c->p;
    if (ch == '"') {
        const char *s;
        size_t n;
        int esc;
        return str_token(c, &s, &n, &esc);
    }
    if (ch == '{' || ch == '[') {
        int depth = 0;
        while (c->p < c->end) {
            ch = *c->p;
            if (ch == '"') {
                const char *s;
                size_t n;
                int esc;
                if (str_token(c, &s, &n, &esc) < 0) return -1;
                continue;
            }
            if (ch == '{' || ch == '[') depth++;
            if (ch == '}' || ch == ']') depth--;
            c->p++;
            if (depth == 0) return 0;
        }
        return -1;
    }
    while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']' && *c->p != ' ' &&
           *c->p != '\n' && *c->p != '\r' && *c->p != '\t')
        c->p++;
    return 0;
}

static inline int digits(const char *p, int n, int *v) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)`` to µs since the epoch; -1: another
 * form (left to the caller). */
static int parse_rfc3339(const char *s, size_t n, int64_t *out) {
    int y, mo, d, h, mi, se;
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return -1;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return -1;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59) return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) return -1;
    size_t i = 19;
    int64_t frac = 0;
    if (i < n && s[i] == '.') {
        size_t k = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        size_t nd = i - k;
        if (nd < 1 || nd > 6) return -1;
        for (size_t j = 0; j < 6; j++) frac = frac * 10 + (j < nd ? s[k + j] - '0' : 0);
    }
    int64_t off = 0;
    if (i + 1 == n && s[i] == 'Z') {
        off = 0;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (int64_t)(oh * 60 + om) * 60;
        if (s[i] == '-') off = -off;
    } else {
        return -1;
    }
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
                   se - off;
    *out = secs * 1000000 + frac;
    return 0;
}

/* One event of a frame, as the scan found it. Strings point into the body, or into the
 * scratch copy when they held escapes. */
typedef struct {
    const char *cust, *name, *key, *res;
    uint32_t cust_n, name_n, key_n, res_n;
    const char *span;
    uint32_t span_n;
    int64_t ts;
    int ts_state; /* 0: none (time of receipt), 1: parsed, 2: left to the caller */
    uint32_t dims_at, dims_n; /* the event's dimensions in the frame's ``Dims`` */
    uint64_t cust_h;          /* ``cust_hash`` of the customer */
} Ev;

/* One dimension's value as JSON wrote it. */
enum { V_STR, V_INT, V_FLOAT, V_TRUE, V_FALSE, V_OTHER };

typedef struct {
    const char *k, *s; /* name; a string value's text (decoded) */
    uint32_t kn, sn;
    int type;
    int64_t i;
    double d;
} Dim;

typedef struct {
    Dim *v;
    size_t n, cap;
} Dims;

static Dim *dims_push(Dims *ds) {
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 256;
        Dim *v = realloc(ds->v, cap * sizeof(Dim));
        if (!v) return NULL;
        ds->v = v;
        ds->cap = cap;
    }
    return &ds->v[ds->n++];
}

/* A JSON number token: an int64 when written without fraction or exponent, else a double
 * (strtod rounds correctly, as msgspec does); an int past int64 is V_OTHER. */
static int number(Cur *c, Dim *v) {
    const char *p = c->p;
    int is_float = 0;
    while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '-' || *c->p == '+' ||
                             *c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
        if (*c->p == '.' || *c->p == 'e' || *c->p == 'E') is_float = 1;
        c->p++;
    }
    size_t n = (size_t)(c->p - p);
    char buf[400];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, p, n);
    buf[n] = 0;
    char *end;
    if (is_float) {
        v->type = V_FLOAT;
        v->d = strtod(buf, &end);
        return end == buf + n ? 0 : -1;
    }
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (end != buf + n) return -1;
    v->type = errno == ERANGE ? V_OTHER : V_INT;
    v->i = x;
    return 0;
}

enum { F_CUST = 1, F_NAME = 2, F_KEY = 4, F_TS = 8, F_DIMS = 16, F_RES = 32 };

/* A string field's decoded text (into scratch when escaped). */
static int field_str(Cur *c, char **scratch, const char **s, uint32_t *n) {
    const char *raw;
    size_t rn;
    int esc;
    if (str_token(c, &raw, &rn, &esc) < 0) return -1;
    if (!esc) {
        *s = raw;
        *n = (uint32_t)rn;
        return 0;
    }
    size_t on;
    if (unescape(raw, rn, *scratch, &on) < 0) return -1;
    *s = *scratch;
    *n = (uint32_t)on;
    *scratch += on;
    return 0;
}

static int key_is(const char *k, size_t kn, const char *want) {
    return kn == strlen(want) && memcmp(k, want, kn) == 0;
}

/* An event's dimensions object into ``dims`` (the event's are the last ``dims_n``). */
static int scan_dims(Cur *c, char **scratch, Dims *dims, Ev *ev) {
    ev->dims_at = (uint32_t)dims->n;
    ws(c);
    if (c->p >= c->end || *c->p != '{') return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        Dim *v = dims_push(dims);
        if (!v) return -1;
        ws(c);
        if (field_str(c, scratch, &v->k, &v->kn) < 0) return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ':') return -1;
        c->p++;
        ws(c);
        if (c->p >= c->end) return -1;
        char ch = *c->p;
        if (ch == '"') {
            v->type = V_STR;
            if (field_str(c, scratch, &v->s, &v->sn) < 0) return -1;
        } else if (ch == 't' && c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) {
            v->type = V_TRUE;
            c->p += 4;
        } else if (ch == 'f' && c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) {
            v->type = V_FALSE;
            c->p += 5;
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            if (number(c, v) < 0) return -1;
        } else {
            v->type = V_OTHER;
            if (skip_value(c) < 0) return -1;
        }
        ev->dims_n++;
        ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            return 0;
        }
        return -1;
    }
}

/* One event object. -1: a shape this scan does not take (the frame goes to Python). */
static int scan_event(Cur *c, char **scratch, Dims *dims, Ev *ev) {
    memset(ev, 0, sizeof *ev);
    ws(c);
    if (c->p >= c->end || *c->p != '{') return -1;
    ev->span = c->p;
    c->p++;
    unsigned seen = 0;
    ws(c);
    if (c->p < c->end && *c->p == '}') return -1; /* required fields missing */
    for (;;) {
        const char *k;
        size_t kn;
        int esc;
        ws(c);
        if (str_token(c, &k, &kn, &esc) < 0 || esc) return -1; /* escaped names: Python */
        ws(c);
        if (c->p >= c->end || *c->p != ':') return -1;
        c->p++;
        ws(c);
        if (c->p >= c->end) return -1;
        int is_null = c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0;
        unsigned bit;
        if (key_is(k, kn, "customerId")) {
            bit = F_CUST;
            if (field_str(c, scratch, &ev->cust, &ev->cust_n) < 0) return -1;
        } else if (key_is(k, kn, "eventName")) {
            bit = F_NAME;
            if (field_str(c, scratch, &ev->name, &ev->name_n) < 0) return -1;
        } else if (key_is(k, kn, "idempotencyKey")) {
            bit = F_KEY;
            if (field_str(c, scratch, &ev->key, &ev->key_n) < 0) return -1;
        } else if (key_is(k, kn, "resourceId")) {
            bit = F_RES;
            if (is_null) {
                c->p += 4;
            } else if (field_str(c, scratch, &ev->res, &ev->res_n) < 0) {
                return -1;
            }
        } else if (key_is(k, kn, "timestamp")) {
            bit = F_TS;
            if (is_null) {
                c->p += 4;
            } else {
                const char *s;
                size_t sn;
                if (str_token(c, &s, &sn, &esc) < 0) return -1;
                ev->ts_state = (!esc && parse_rfc3339(s, sn, &ev->ts) == 0) ? 1 : 2;
            }
        } else if (key_is(k, kn, "dimensions")) {
            bit = F_DIMS;
            if (scan_dims(c, scratch, dims, ev) < 0) return -1;
        } else {
            return -1;
        }
        if (seen & bit) return -1; /* a repeated field: msgspec's "last wins" is Python's */
        seen |= bit;
        ws(c);
        if (c->p >= c->end) return -1;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p != '}') return -1;
        c->p++;
        break;
    }
    if ((seen & (F_CUST | F_NAME | F_KEY)) != (F_CUST | F_NAME | F_KEY)) return -1;
    ev->span_n = (uint32_t)(c->p - ev->span);
    return 0;
}

/* The whole body: ``{"events": [event, ...]}``. Returns the number of events, or -1. */
static Py_ssize_t scan_body(const char *body, size_t n, char *scratch, Dims *dims, Ev *evs,
                            size_t max) {
    Cur c = {body, body + n};
    const char *k;
    size_t kn;
    int esc;
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return -1;
    c.p++;
    ws(&c);
    if (str_token(&c, &k, &kn, &esc) < 0 || esc || !key_is(k, kn, "events")) return -1;
    ws(&c);
    if (c.p >= c.end || *c.p != ':') return -1;
    c.p++;
    ws(&c);
    if (c.p >= c.end || *c.p != '[') return -1;
    c.p++;
    ws(&c);
    size_t count = 0;
    if (c.p < c.end && *c.p == ']') {
        c.p++;
    } else {
        for (;;) {
            if (count == max) return -1;
            if (scan_event(&c, &scratch, dims, &evs[count]) < 0) return -1;
            count++;
            ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == ']') {
                c.p++;
                break;
            }
            return -1;
        }
    }
    ws(&c);
    if (c.p >= c.end || *c.p != '}') return -1; /* a second top-level field: Python's */
    c.p++;
    ws(&c);
    return c.p == c.end ? (Py_ssize_t)count : -1;
}

/* ------------------------------------------------------------------------ counting */

/* The catalog's meters as the scan applies them, and the periods the Python side has
 * opened for each (customer, feature). Whatever this cannot decide exactly as
 * ``core/counters.py`` and ``core/meters.py`` do is left to them, a whole event at a time:
 * a meter with a filter other than EQUALS/IN over strings, a timestamp in another form, a
 * number past int64, a period not opened yet, a resource whose counter in that period
 * Python has not made yet (``set_resource``). */

enum { K_COUNT, K_SUM, K_AVG, K_MAX, K_MIN, K_LATEST, K_UNIQUE };

typedef struct {
    char *dim;
    uint32_t dim_n, n_allowed;
    char **allowed;
    uint32_t *allowed_n;
} Filt;

typedef struct {
    uint32_t fi;
    int kind;
    char *field; /* NULL: no field */
    uint32_t field_n, n_filters;
    Filt *filters;
} Meter;

typedef struct {
    char *name;
    uint32_t name_n, n_meters;
    int python_only;
    Meter *meters;
} NameMeters;

typedef struct {
    int64_t start, end;
    uint32_t idx;
} Period;

typedef struct {
    uint64_t h;
    char *cust; /* NULL: a free slot */
    uint32_t cust_n, fi, np;
    Period *p;
} CfEntry;

/* A resource's counter beside a period's customer-wide one: (period slot, resource). */
typedef struct {
    uint64_t h;
    char *res; /* NULL: a free slot */
    uint32_t res_n, base, idx;
} ResEntry;

typedef struct {
    PyObject_HEAD
    NameMeters *names;
    uint32_t n_names;
    CfEntry *cf;
    size_t cf_cap, cf_n;
    ResEntry *res;
    size_t res_cap, res_n;
} MetersObject;

static char *dup_utf8(PyObject *s, uint32_t *n, const char *what) {
    const char *p;
    Py_ssize_t len;
    if (utf8_of(s, &p, &len, what) < 0) return NULL;
    char *out = malloc((size_t)len + 1);
    if (!out) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, p, (size_t)len);
    *n = (uint32_t)len;
    return out;
}

static void meters_free_config(MetersObject *m) {
    for (uint32_t a = 0; a < m->n_names; a++) {
        NameMeters *nm = &m->names[a];
        for (uint32_t b = 0; b < nm->n_meters; b++) {
            Meter *mt = &nm->meters[b];
            for (uint32_t c = 0; c < mt->n_filters; c++) {
                Filt *f = &mt->filters[c];
                for (uint32_t k = 0; k < f->n_allowed; k++) free(f->allowed[k]);
                free(f->allowed);
                free(f->allowed_n);
                free(f->dim);
            }
            free(mt->filters);
            free(mt->field);
        }
        free(nm->meters);
        free(nm->name);
    }
    free(m->names);
    m->names = NULL;
    m->n_names = 0;
}

/* Meters(config): config = [(event name, python only, [(feature index, kind, field or
 * None, [(dimension, [allowed strings]), ...]), ...]), ...] */
static int Meters_init(MetersObject *m, PyObject *args, PyObject *kw) {
    PyObject *config;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &config)) return -1;
    meters_free_config(m);
    Py_ssize_t nn = PyList_GET_SIZE(config);
    m->names = calloc((size_t)nn + 1, sizeof(NameMeters));
    if (!m->names) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t a = 0; a < nn; a++) {
        PyObject *name, *meters;
        int python_only;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(config, a), "UpO!", &name, &python_only,
                              &PyList_Type, &meters))
            return -1;
        NameMeters *nm = &m->names[m->n_names++];
        nm->python_only = python_only;
        if (!(nm->name = dup_utf8(name, &nm->name_n, "event name"))) return -1;
        Py_ssize_t nmt = PyList_GET_SIZE(meters);
        nm->meters = calloc((size_t)nmt + 1, sizeof(Meter));
        if (!nm->meters) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t b = 0; b < nmt; b++) {
            unsigned int fi;
            int kind;
            PyObject *field, *filters;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(meters, b), "IiOO!", &fi, &kind, &field,
                                  &PyList_Type, &filters))
                return -1;
            Meter *mt = &nm->meters[nm->n_meters++];
            mt->fi = fi;
            mt->kind = kind;
            if (kind < K_COUNT || kind > K_UNIQUE) {
                PyErr_Format(PyExc_ValueError, "unknown meter kind %d", kind);
                return -1;
            }
            if (field != Py_None && !(mt->field = dup_utf8(field, &mt->field_n, "field")))
                return -1;
            Py_ssize_t nf = PyList_GET_SIZE(filters);
            mt->filters = calloc((size_t)nf + 1, sizeof(Filt));
            if (!mt->filters) {
                PyErr_NoMemory();
                return -1;
            }
            for (Py_ssize_t c = 0; c < nf; c++) {
                PyObject *dim, *allowed;
                if (!PyArg_ParseTuple(PyList_GET_ITEM(filters, c), "UO!", &dim, &PyList_Type,
                                      &allowed))
                    return -1;
                Filt *f = &mt->filters[mt->n_filters++];
                if (!(f->dim = dup_utf8(dim, &f->dim_n, "dimension"))) return -1;
                Py_ssize_t na = PyList_GET_SIZE(allowed);
                f->allowed = calloc((size_t)na + 1, sizeof(char *));
                f->allowed_n = calloc((size_t)na + 1, sizeof(uint32_t));
                if (!f->allowed || !f->allowed_n) {
                    PyErr_NoMemory();
                    return -1;
                }
                for (Py_ssize_t k = 0; k < na; k++) {
                    f->allowed[k] = dup_utf8(PyList_GET_ITEM(allowed, k), &f->allowed_n[k],
                                             "filter value");
                    if (!f->allowed[k]) return -1;
                    f->n_allowed++;
                }
            }
        }
    }
    return 0;
}

static PyObject *Meters_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    MetersObject *m = (MetersObject *)type->tp_alloc(type, 0);
    if (!m) return NULL;
    m->cf_cap = 256;
    m->cf = table_alloc(m->cf_cap, sizeof(CfEntry));
    m->res_cap = 256;
    m->res = table_alloc(m->res_cap, sizeof(ResEntry));
    if (!m->cf || !m->res) {
        Py_DECREF(m);
        return PyErr_NoMemory();
    }
    return (PyObject *)m;
}

static void Meters_dealloc(MetersObject *m) {
    meters_free_config(m);
    for (size_t i = 0; m->cf && i < m->cf_cap; i++) {
        free(m->cf[i].cust);
        free(m->cf[i].p);
    }
    table_free(m->cf, m->cf_cap, sizeof(CfEntry));
    for (size_t i = 0; m->res && i < m->res_cap; i++) free(m->res[i].res);
    table_free(m->res, m->res_cap, sizeof(ResEntry));
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static inline uint64_t cf_hash(uint64_t cust_h, uint32_t fi) {
    return mix64(cust_h ^ ((uint64_t)fi * 0x9e3779b97f4a7c15ULL));
}

static CfEntry *cf_find(const MetersObject *m, const char *cust, uint32_t n, uint32_t fi,
                        uint64_t h) {
    size_t mask = m->cf_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        CfEntry *e = &m->cf[i];
        if (!e->cust) return e;
        if (e->h == h && e->fi == fi && e->cust_n == n && memcmp(e->cust, cust, n) == 0)
            return e;
    }
}

/* set_periods(customer, feature index, [(start, end, slot index), ...] by start) */
static PyObject *Meters_set_periods(MetersObject *m, PyObject *args) {
    PyObject *cust, *periods;
    unsigned int fi;
    if (!PyArg_ParseTuple(args, "UIO!", &cust, &fi, &PyList_Type, &periods)) return NULL;
    const char *c;
    Py_ssize_t cn;
    if (utf8_of(cust, &c, &cn, "customer") < 0) return NULL;
    Py_ssize_t np = PyList_GET_SIZE(periods);
    Period *p = malloc(((size_t)np + 1) * sizeof(Period));
    if (!p) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < np; i++) {
        long long start, end;
        unsigned int idx;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(periods, i), "LLI", &start, &end, &idx)) {
            free(p);
            return NULL;
        }
        p[i] = (Period){start, end, idx};
    }
    if ((m->cf_n + 1) * 2 > m->cf_cap) {
        int ok;
        DOUBLE_TABLE(CfEntry, m->cf, m->cf_cap, cust, ok);
        if (!ok) {
            free(p);
            return PyErr_NoMemory();
        }
    }
    uint64_t h = cf_hash(cust_hash(c, (size_t)cn), fi);
    CfEntry *e = cf_find(m, c, (uint32_t)cn, fi, h);
    if (!e->cust) {
        e->cust = malloc((size_t)cn + 1);
        if (!e->cust) {
            free(p);
            return PyErr_NoMemory();
        }
        memcpy(e->cust, c, (size_t)cn);
        e->cust_n = (uint32_t)cn;
        e->fi = fi;
        e->h = h;
        m->cf_n++;
    }
    free(e->p);
    e->p = p;
    e->np = (uint32_t)np;
    Py_RETURN_NONE;
}

static inline uint64_t res_hash(uint32_t base, const char *res, size_t n) {
    return hash_bytes(res, n, mix64(base + 0x2545f4914f6cdd1dULL));
}

static ResEntry *res_find(const MetersObject *m, uint32_t base, const char *res, uint32_t n,
                          uint64_t h) {
    size_t mask = m->res_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        ResEntry *e = &m->res[i];
        if (!e->res) return e;
        if (e->h == h && e->base == base && e->res_n == n && memcmp(e->res, res, n) == 0)
            return e;
    }
}

/* set_resource(period slot index, resource, slot index of the resource's counter) */
static PyObject *Meters_set_resource(MetersObject *m, PyObject *args) {
    unsigned int base, idx;
    PyObject *res;
    if (!PyArg_ParseTuple(args, "IUI", &base, &res, &idx)) return NULL;
    const char *r;
    Py_ssize_t rn;
    if (utf8_of(res, &r, &rn, "resource") < 0) return NULL;
    if ((m->res_n + 1) * 2 > m->res_cap) {
        int ok;
        DOUBLE_TABLE(ResEntry, m->res, m->res_cap, res, ok);
        if (!ok) return PyErr_NoMemory();
    }
    uint64_t h = res_hash(base, r, (size_t)rn);
    ResEntry *e = res_find(m, base, r, (uint32_t)rn, h);
    if (!e->res) {
        if (!(e->res = malloc((size_t)rn + 1))) return PyErr_NoMemory();
        memcpy(e->res, r, (size_t)rn);
        e->res_n = (uint32_t)rn;
        e->base = base;
        e->h = h;
        m->res_n++;
    }
    e->idx = idx;
    Py_RETURN_NONE;
}

static PyMethodDef Meters_methods[] = {
    {"set_resource", (PyCFunction)Meters_set_resource, METH_VARARGS,
     "set_resource(period slot, resource, slot): the counter of one resource in a period"},
    {"set_periods", (PyCFunction)Meters_set_periods, METH_VARARGS,
     "set_periods(customer, feature index, [(start, end, slot index), ...]): the periods "
     "opened for one (customer, feature), by start"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MetersType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "meterplane.aggregate._native.Meters",
    .tp_basicsize = sizeof(MetersObject),
    .tp_dealloc = (destructor)Meters_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A catalog's meters and the periods opened so far, for scan_events.",
    .tp_new = Meters_new,
    .tp_init = (initproc)Meters_init,
    .tp_methods = Meters_methods,
};

/* A number as JSON wrote it: an int (int64) or a float. */
typedef struct {
    int is_int;
    int64_t i;
    double d;
} Num;

/* -1, 0, 1 as int ``i`` is below, equal to, above float ``d`` (exactly, as Python does). */
static int cmp_int_float(int64_t i, double d) {
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    int64_t t = (int64_t)d; /* toward zero, exact: |d| < 2**63 */
    if (i != t) return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_num(const Num *a, const Num *b) {
    if (a->is_int && b->is_int) return (a->i > b->i) - (a->i < b->i);
    if (!a->is_int && !b->is_int) return (a->d > b->d) - (a->d < b->d);
    if (a->is_int) return cmp_int_float(a->i, b->d);
    return -cmp_int_float(b->i, a->d);
}

/* A UNIQUE value of one event, chained per accumulator. */
typedef struct {
    int type; /* V_STR, V_TRUE, V_FALSE, V_INT, V_FLOAT */
    const char *s;
    uint32_t sn;
    Num num;
    int32_t next;
} Tok;

/* What a frame's first copies add to one counter (one slot). */
typedef struct {
    uint32_t idx;
    int kind;
    int64_t count;
    __int128 isum;
    double *partials;
    uint32_t np, pcap;
    int has_best, has_latest;
    Num best, lval;
    int64_t lts;
    const char *lkey;
    uint32_t lkey_n;
    int32_t tok_first, tok_last;
} Acc;

typedef struct {
    Acc *accs;
    size_t n, cap;
    int32_t *index; /* open addressing on slot index: acc position + 1, 0 = free */
    size_t index_cap;
    Tok *toks;
    size_t n_toks, toks_cap;
} Accs;

static Acc *acc_get(Accs *a, uint32_t idx, int kind) {
    if ((a->n + 1) * 2 > a->index_cap) {
        size_t cap = a->index_cap ? a->index_cap * 2 : 64;
        int32_t *index = calloc(cap, sizeof(int32_t));
        if (!index) return NULL;
        for (size_t k = 0; k < a->n; k++) {
            size_t j = (size_t)mix64(a->accs[k].idx) & (cap - 1);
            while (index[j]) j = (j + 1) & (cap - 1);
            index[j] = (int32_t)k + 1;
        }
        free(a->index);
        a->index = index;
        a->index_cap = cap;
    }
    size_t mask = a->index_cap - 1;
    size_t j = (size_t)mix64(idx) & mask;
    for (; a->index[j]; j = (j + 1) & mask) {
        Acc *acc = &a->accs[a->index[j] - 1];
        if (acc->idx == idx) return acc;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        Acc *accs = realloc(a->accs, cap * sizeof(Acc));
        if (!accs) return NULL;
        a->accs = accs;
        a->cap = cap;
    }
    Acc *acc = &a->accs[a->n++];
    memset(acc, 0, sizeof *acc);
    acc->idx = idx;
    acc->kind = kind;
    acc->tok_first = acc->tok_last = -1;
    a->index[j] = (int32_t)a->n;
    return acc;
}

static void accs_free(Accs *a) {
    for (size_t k = 0; k < a->n; k++) free(a->accs[k].partials);
    free(a->accs);
    free(a->index);
    free(a->toks);
}

/* ``core/counters.py``'s ``_grow``: add ``x`` to non-overlapping partials exactly. */
static int grow_partials(Acc *acc, double x) {
    uint32_t i = 0;
    for (uint32_t j = 0; j < acc->np; j++) {
        double y = acc->partials[j];
        if (fabs(x) < fabs(y)) {
            double t = x;
            x = y;
            y = t;
        }
        double hi = x + y;
        double lo = y - (hi - x);
        if (lo != 0.0) acc->partials[i++] = lo;
        x = hi;
    }
    if (i + 1 > acc->pcap) {
        uint32_t cap = acc->pcap ? acc->pcap * 2 : 4;
        double *p = realloc(acc->partials, cap * sizeof(double));
        if (!p) return -1;
        acc->partials = p;
        acc->pcap = cap;
    }
    acc->partials[i] = x;
    acc->np = i + 1;
    return 0;
}

static const NameMeters *meters_for(const MetersObject *m, const char *name, uint32_t n) {
    for (uint32_t a = 0; a < m->n_names; a++) {
        const NameMeters *nm = &m->names[a];
        if (nm->name_n == n && memcmp(nm->name, name, n) == 0) return nm;
    }
    return NULL;
}

/* The event's dimension ``k`` (the last of repeated names, as msgspec's dict keeps). */
static const Dim *dim_get(const Dims *dims, const Ev *e, const char *k, uint32_t kn) {
    for (uint32_t i = e->dims_n; i-- > 0;) {
        const Dim *d = &dims->v[e->dims_at + i];
        if (d->kn == kn && memcmp(d->k, k, kn) == 0) return d;
    }
    return NULL;
}

/* EQUALS / IN over strings: the dimension is a string equal to one of the values. */
static int filters_hold(const Meter *mt, const Dims *dims, const Ev *e) {
    for (uint32_t c = 0; c < mt->n_filters; c++) {
        const Filt *f = &mt->filters[c];
        const Dim *d = dim_get(dims, e, f->dim, f->dim_n);
        if (!d || d->type != V_STR) return 0;
        int any = 0;
        for (uint32_t k = 0; k < f->n_allowed && !any; k++)
            any = f->allowed_n[k] == d->sn && memcmp(f->allowed[k], d->s, d->sn) == 0;
        if (!any) return 0;
    }
    return 1;
}

static const Period *period_of(const MetersObject *m, const char *cust, uint32_t n,
                               uint64_t cust_h, uint32_t fi, int64_t ts) {
    const CfEntry *e = cf_find(m, cust, n, fi, cf_hash(cust_h, fi));
    if (!e->cust || !e->np) return NULL;
    uint32_t lo = 0, hi = e->np; /* the last period starting at or before ts */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (e->p[mid].start <= ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo) return NULL;
    const Period *p = &e->p[lo - 1];
    return ts < p->end ? p : NULL;
}

/* A meter's application to one event, planned before any is made: an event is counted
 * here whole or left to Python whole. */
typedef struct {
    const Meter *mt;
    const Period *p;
    const Dim *v;
    int64_t res_idx; /* the resource's counter, or -1 */
} Plan;

enum { COUNT_OK = 0, COUNT_PYTHON = 1, COUNT_OOM = -1 };

static int count_event(const MetersObject *m, Accs *a, const Dims *dims, const Ev *e,
                       int64_t ts, int64_t *applied, int64_t *unmetered) {
    if (e->ts_state == 2) return COUNT_PYTHON;
    const NameMeters *nm = meters_for(m, e->name, e->name_n);
    if (!nm) return COUNT_OK; /* no meter counts this event */
    if (nm->python_only) return COUNT_PYTHON;
    Plan plan[64];
    uint32_t np = 0;
    int64_t unm = 0;
    if (nm->n_meters > 64) return COUNT_PYTHON;
    for (uint32_t b = 0; b < nm->n_meters; b++) {
        const Meter *mt = &nm->meters[b];
        if (!filters_hold(mt, dims, e)) continue;
        const Dim *v = NULL;
        if (mt->field) {
            v = dim_get(dims, e, mt->field, mt->field_n);
            if (v && v->type == V_OTHER) return COUNT_PYTHON; /* e.g. an int past int64 */
            if (mt->kind == K_UNIQUE ? !v : (!v || (v->type != V_INT && v->type != V_FLOAT))) {
                unm++; /* missing, or not a number where one is needed */
                continue;
            }
        }
        const Period *p = period_of(m, e->cust, e->cust_n, e->cust_h, mt->fi, ts);
        if (!p) return COUNT_PYTHON; /* a period Python has not opened yet */
        int64_t res_idx = -1;
        if (e->res_n) {
            uint64_t h = res_hash(p->idx, e->res, e->res_n);
            const ResEntry *r = res_find(m, p->idx, e->res, e->res_n, h);
            if (!r->res) return COUNT_PYTHON; /* the resource's counter is not known yet */
            res_idx = r->idx;
        }
        plan[np++] = (Plan){mt, p, v, res_idx};
    }
    /* each planned meter applies to its period's counter, then to the resource's */
    for (uint32_t k = 0; k < 2 * np; k++) {
        const Plan *pl = &plan[k / 2];
        if (k % 2 && pl->res_idx < 0) continue;
        const Meter *mt = pl->mt;
        const Dim *v = pl->v;
        Acc *acc = acc_get(a, k % 2 ? (uint32_t)pl->res_idx : pl->p->idx, mt->kind);
        if (!acc) return COUNT_OOM;
        acc->count++;
        Num num = {0};
        if (v && (v->type == V_INT || v->type == V_FLOAT))
            num = (Num){v->type == V_INT, v->i, v->d};
        switch (mt->kind) {
        case K_SUM:
        case K_AVG:
            if (num.is_int)
                acc->isum += num.i;
            else if (grow_partials(acc, num.d) < 0)
                return COUNT_OOM;
            break;
        case K_MAX:
        case K_MIN: {
            int c = acc->has_best ? cmp_num(&num, &acc->best) : 0;
            int better = mt->kind == K_MAX ? c > 0 : c < 0;
            /* ties keep an int over a float: the same value whatever the order */
            if (!acc->has_best || better || (c == 0 && num.is_int && !acc->best.is_int)) {
                acc->best = num;
                acc->has_best = 1;
            }
            break;
        }
        case K_LATEST: {
            int later = !acc->has_latest || ts > acc->lts;
            if (acc->has_latest && ts == acc->lts) {
                uint32_t n = e->key_n < acc->lkey_n ? e->key_n : acc->lkey_n;
                int c = memcmp(e->key, acc->lkey, n);
                later = c > 0 || (c == 0 && e->key_n > acc->lkey_n);
            }
            if (later) {
                acc->has_latest = 1;
                acc->lts = ts;
                acc->lkey = e->key;
                acc->lkey_n = e->key_n;
                acc->lval = num;
            }
            break;
        }
        case K_UNIQUE: {
            if (a->n_toks == a->toks_cap) {
                size_t cap = a->toks_cap ? a->toks_cap * 2 : 256;
                Tok *t = realloc(a->toks, cap * sizeof(Tok));
                if (!t) return COUNT_OOM;
                a->toks = t;
                a->toks_cap = cap;
            }
            Tok *t = &a->toks[a->n_toks];
            *t = (Tok){v->type, v->s, v->sn, {v->type == V_INT, v->i, v->d}, -1};
            if (acc->tok_last >= 0)
                a->toks[acc->tok_last].next = (int32_t)a->n_toks;
            else
                acc->tok_first = (int32_t)a->n_toks;
            acc->tok_last = (int32_t)a->n_toks++;
            break;
        }
        default: /* K_COUNT */
            break;
        }
    }
    *applied += np;
    *unmetered += unm;
    return COUNT_OK;
}

static PyObject *num_obj(const Num *n) {
    return n->is_int ? PyLong_FromLongLong(n->i) : PyFloat_FromDouble(n->d);
}

/* ``core/counters.py``'s ``unique_token``: strings and booleans apart from numbers, and
 * numbers by value (``repr(float(v))`` below 2**53, as Python writes it). */
static PyObject *token_obj(const Tok *t) {
    if (t->type == V_STR) {
        char *buf = malloc((size_t)t->sn + 2);
        if (!buf) return PyErr_NoMemory();
        buf[0] = 's';
        buf[1] = ':';
        memcpy(buf + 2, t->s, t->sn);
        PyObject *out = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)t->sn + 2, "strict");
        free(buf);
        return out;
    }
    if (t->type == V_TRUE) return PyUnicode_FromString("b:1");
    if (t->type == V_FALSE) return PyUnicode_FromString("b:0");
    const int64_t big = (int64_t)1 << 53;
    if (t->num.is_int && (t->num.i >= big || t->num.i <= -big))
        return PyUnicode_FromFormat("n:%lld", (long long)t->num.i);
    double d = t->num.is_int ? (double)t->num.i : t->num.d;
    char *r = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!r) return NULL;
    PyObject *out = PyUnicode_FromFormat("n:%s", r);
    PyMem_Free(r);
    return out;
}

static PyObject *int128_obj(__int128 v) {
    if (v >= INT64_MIN && v <= INT64_MAX) return PyLong_FromLongLong((long long)v);
    unsigned char bytes[16];
    memcpy(bytes, &v, 16); /* little-endian two's complement on the platforms we build on */
    return _PyLong_FromByteArray(bytes, 16, 1, 1);
}

/* (slot index, count, int sum, float partials, best, latest, tokens) for one Acc:
 * best is None unless MAX/MIN saw a value; latest is (ts, key, value) or None; tokens
 * is a list (UNIQUE) or None. */
static PyObject *acc_obj(const Acc *acc, const Accs *a) {
    PyObject *partials = PyList_New(acc->np);
    if (!partials) return NULL;
    for (uint32_t k = 0; k < acc->np; k++) {
        PyObject *f = PyFloat_FromDouble(acc->partials[k]);
        if (!f) {
            Py_DECREF(partials);
            return NULL;
        }
        PyList_SET_ITEM(partials, k, f);
    }
    PyObject *best = acc->has_best ? num_obj(&acc->best) : Py_NewRef(Py_None);
    PyObject *latest = Py_None, *tokens = Py_None, *isum = int128_obj(acc->isum);
    Py_INCREF(latest);
    Py_INCREF(tokens);
    if (acc->has_latest) {
        PyObject *v = num_obj(&acc->lval);
        Py_DECREF(latest);
        latest = v ? Py_BuildValue("(Ls#N)", (long long)acc->lts, acc->lkey,
                                   (Py_ssize_t)acc->lkey_n, v)
                   : NULL;
    }
    if (acc->kind == K_UNIQUE) {
        Py_DECREF(tokens);
        tokens = PyList_New(0);
        for (int32_t k = acc->tok_first; tokens && k >= 0; k = a->toks[k].next) {
            PyObject *t = token_obj(&a->toks[k]);
            if (!t || PyList_Append(tokens, t) < 0) Py_CLEAR(tokens);
            Py_XDECREF(t);
        }
    }
    if (!best || !latest || !tokens || !isum) {
        Py_XDECREF(best);
        Py_XDECREF(latest);
        Py_XDECREF(tokens);
        Py_XDECREF(isum);
        Py_DECREF(partials);
        return NULL;
    }
    return Py_BuildValue("(ILNNNNN)", acc->idx, (long long)acc->count, isum, partials, best,
                         latest, tokens);
}

/* ------------------------------------------------------------------------ columns */

/* An Arrow string/binary column under construction: int32 offsets and the data. */
typedef struct {
    PyObject *offsets, *data; /* bytes */
    int32_t *off;
    char *buf;
    size_t used;
} Col;

static int col_init(Col *col, size_t n, size_t bytes) {
    col->offsets = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n + 1) * 4));
    col->data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bytes);
    if (!col->offsets || !col->data) return -1;
    col->off = (int32_t *)PyBytes_AS_STRING(col->offsets);
    col->buf = PyBytes_AS_STRING(col->data);
    col->off[0] = 0;
    col->used = 0;
    return 0;
}

static inline void col_put(Col *col, size_t i, const char *p, size_t n) {
    memcpy(col->buf + col->used, p, n);
    col->used += n;
    col->off[i + 1] = (int32_t)col->used;
}

static void col_clear(Col *col) {
    Py_CLEAR(col->offsets);
    Py_CLEAR(col->data);
}

/* The columns' used length: shrink the data bytes to what was written. */
static PyObject *col_pair(Col *col) {
    if (_PyBytes_Resize(&col->data, (Py_ssize_t)col->used) < 0) return NULL;
    PyObject *t = PyTuple_Pack(2, col->offsets, col->data);
    col_clear(col);
    return t;
}

/* scan_events(dedup, body, received_us, meters=None) -> None | (n, fresh, customers,
 * stamps, ts_unparsed, columns, to_python, applied, unmetered, counted)
 *
 * ``fresh``: indices of the first copies (None: all of them); ``customers``: their
 * customer ids as interned str; ``stamps``: bytes of int64 µs (time of receipt where the
 * event has none); ``ts_unparsed``: positions among the first copies whose timestamp the
 * caller must read (another RFC 3339 form); ``columns``: (offsets, data) bytes for
 * customer_id, idempotency_key, name, resource_id and payload.
 * With ``meters``, the first copies are also counted: ``counted`` holds what they add to
 * each counter (see ``acc_obj``), ``applied`` and ``unmetered`` are as ``Outcome``'s, and
 * ``to_python`` lists the positions (among the first copies) of the events left to the
 * Python path whole. Without, ``to_python`` is None: the caller counts every event.
 * None: the body has a shape the scan leaves to Python; nothing was admitted. */
static PyObject *scan_events(PyObject *mod, PyObject *args) {
    DedupObject *d;
    Py_buffer body;
    long long received;
    PyObject *meters_arg = Py_None;
    if (!PyArg_ParseTuple(args, "O!y*L|O", &DedupType, &d, &body, &received, &meters_arg))
        return NULL;
    if (meters_arg != Py_None && !PyObject_TypeCheck(meters_arg, &MetersType)) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_TypeError, "meters must be a Meters or None");
        return NULL;
    }
    MetersObject *meters = meters_arg == Py_None ? NULL : (MetersObject *)meters_arg;
    PyObject *result = NULL, *fresh = NULL, *customers = NULL, *stamps = NULL;
    PyObject *unparsed = NULL, *to_python = NULL, *counted = NULL;
    Col cols[5] = {{0}};
    Dims dims = {0};
    Accs accs = {0};
    /* no event the scan takes is shorter than 55 bytes (its three required fields) */
    const size_t max = 1 + (size_t)body.len / 48;
    char *scratch = malloc((size_t)body.len + 1);
    Ev *evs = malloc(max * sizeof(Ev));
    uint32_t *ids = NULL;
    uint64_t *hashes = NULL;
    uint8_t *state = NULL; /* per event: 0 counted here, 1 a duplicate, 2 left to Python */
    int64_t applied = 0, unmetered = 0;
    if (!scratch || !evs) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n;
    Py_BEGIN_ALLOW_THREADS;
    n = scan_body(body.buf, (size_t)body.len, scratch, &dims, evs, max);
    Py_END_ALLOW_THREADS;
    if (n < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    ids = malloc(((size_t)n + 1) * sizeof(uint32_t));
    hashes = malloc(((size_t)n + 1) * sizeof(uint64_t));
    state = calloc((size_t)n + 1, 1);
    if (!ids || !hashes || !state) {
        PyErr_NoMemory();
        goto done;
    }
    /* customers (a new one makes a str: with the lock held) */
    size_t key_bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        evs[i].cust_h = cust_hash(evs[i].cust, evs[i].cust_n);
        int r = customer_id(d, evs[i].cust, evs[i].cust_n, evs[i].cust_h, &ids[i]);
        if (r == -1) PyErr_NoMemory();
        if (r < 0) goto done;
        key_bytes += evs[i].key_n;
    }
    Block *b = block_new(received, (size_t)n, key_bytes);
    if (!b) {
        PyErr_NoMemory();
        goto done;
    }
    size_t m = 0, n_python = 0;
    size_t bytes[5] = {0};
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS;
    pthread_mutex_lock(&d->lock);
    /* The window is large (a day of identities): its slots are cache misses. Hash every
     * identity first, then ask for each slot a few events ahead of its probe. */
    for (Py_ssize_t i = 0; i < n; i++) hashes[i] = ident_hash(ids[i], evs[i].key, evs[i].key_n);
    for (Py_ssize_t i = 0; i < n; i++) {
        const Ev *e = &evs[i];
        if (i + 8 < n) __builtin_prefetch(&d->slots[hashes[i + 8] & (d->cap - 1)]);
        int r = admit_hashed(d, b, ids[i], e->key, e->key_n, hashes[i]);
        if (r < 0) {
            oom = 1;
            break;
        }
        if (!r) {
            state[i] = 1;
            continue;
        }
        m++;
        bytes[0] += e->cust_n;
        bytes[1] += e->key_n;
        bytes[2] += e->name_n;
        bytes[3] += e->res_n;
        bytes[4] += e->span_n;
        if (meters) {
            int64_t ts = e->ts_state == 1 ? e->ts : received;
            int c = count_event(meters, &accs, &dims, e, ts, &applied, &unmetered);
            if (c == COUNT_OOM) {
                oom = 1;
                break;
            }
            if (c == COUNT_PYTHON) {
                state[i] = 2;
                n_python++;
            }
        }
    }
    block_link(d, b);
    pthread_mutex_unlock(&d->lock);
    Py_END_ALLOW_THREADS;
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    for (int k = 0; k < 5; k++) {
        if (bytes[k] > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a frame's column exceeds 2 GiB");
            goto done;
        }
        if (col_init(&cols[k], m, bytes[k]) < 0) goto done;
    }
    customers = PyList_New((Py_ssize_t)m);
    stamps = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(m * 8));
    unparsed = PyList_New(0);
    fresh = m == (size_t)n ? Py_NewRef(Py_None) : PyList_New((Py_ssize_t)m);
    to_python = meters ? PyList_New((Py_ssize_t)n_python) : Py_NewRef(Py_None);
    counted = PyList_New((Py_ssize_t)accs.n);
    if (!customers || !stamps || !unparsed || !fresh || !to_python || !counted) goto done;
    /* The raw rows' bytes (the columns are fresh memory: page faults) need no GIL. */
    int64_t *ts = (int64_t *)PyBytes_AS_STRING(stamps);
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0, j = 0; i < n; i++) {
        if (state[i] == 1) continue;
        const Ev *e = &evs[i];
        ts[j] = e->ts_state == 1 ? e->ts : received;
        col_put(&cols[0], (size_t)j, e->cust, e->cust_n);
        col_put(&cols[1], (size_t)j, e->key, e->key_n);
        col_put(&cols[2], (size_t)j, e->name, e->name_n);
        col_put(&cols[3], (size_t)j, e->res, e->res_n);
        col_put(&cols[4], (size_t)j, e->span, e->span_n);
        j++;
    }
    Py_END_ALLOW_THREADS;
    size_t j = 0, k_python = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (state[i] == 1) continue;
        const Ev *e = &evs[i];
        PyObject *name = PyList_GET_ITEM(d->cust_names, ids[i]);
        PyList_SET_ITEM(customers, (Py_ssize_t)j, Py_NewRef(name));
        if (fresh != Py_None) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (!idx) goto done;
            PyList_SET_ITEM(fresh, (Py_ssize_t)j, idx);
        }
        if (state[i] == 2) {
            PyObject *pos = PyLong_FromSize_t(j);
            if (!pos) goto done;
            PyList_SET_ITEM(to_python, (Py_ssize_t)k_python++, pos);
        }
        if (e->ts_state == 2) {
            PyObject *pos = PyLong_FromSize_t(j);
            if (!pos || PyList_Append(unparsed, pos) < 0) {
                Py_XDECREF(pos);
                goto done;
            }
            Py_DECREF(pos);
        }
        j++;
    }
    for (size_t k = 0; k < accs.n; k++) {
        PyObject *acc = acc_obj(&accs.accs[k], &accs);
        if (!acc) goto done;
        PyList_SET_ITEM(counted, (Py_ssize_t)k, acc);
    }
    PyObject *pairs = PyTuple_New(5);
    if (!pairs) goto done;
    for (int k = 0; k < 5; k++) {
        PyObject *pair = col_pair(&cols[k]);
        if (!pair) {
            Py_DECREF(pairs);
            goto done;
        }
        PyTuple_SET_ITEM(pairs, k, pair);
    }
    result = Py_BuildValue("(nOOOONOLLO)", n, fresh, customers, stamps, unparsed, pairs,
                           to_python, (long long)applied, (long long)unmetered, counted);
done:
    for (int k = 0; k < 5; k++) col_clear(&cols[k]);
    Py_XDECREF(fresh);
    Py_XDECREF(customers);
    Py_XDECREF(stamps);
    Py_XDECREF(unparsed);
    Py_XDECREF(to_python);
    Py_XDECREF(counted);
    free(dims.v);
    accs_free(&accs);
    free(scratch);
    free(evs);
    free(ids);
    free(hashes);
    free(state);
    PyBuffer_Release(&body);
    return result;
}

static PyMethodDef module_methods[] = {
    {"scan_events", scan_events, METH_VARARGS,
     "scan_events(dedup, body, received_us, meters=None): dedupe an event frame, build its "
     "raw rows and (with meters) count it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "The embedded aggregator's native core (see the source's header).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&DedupType) < 0 || PyType_Ready(&MetersType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Dedup", (PyObject *)&DedupType) < 0 ||
        PyModule_AddObjectRef(m, "Meters", (PyObject *)&MetersType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
