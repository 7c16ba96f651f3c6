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
 * - ``scan_events``: one pass over an event frame's body (the request's JSON exactly as
 *   received and validated by ingest) that decodes the identities, drops the duplicates
 *   and returns the first copies' raw-row columns as Arrow buffers (payload: each event's
 *   JSON text as received, as the Kafka loader stores it).
 *
 * A frame the scan does not fully understand (a repeated key, an unexpected shape) is
 * refused (``None``) *before* anything is admitted: the caller then takes the Python path
 * for that frame, which is the reference. Timestamps are parsed here only in the plain
 * RFC 3339 form with at most six fraction digits; any other form is left to the caller
 * (``ts_unparsed``), which knows msgspec's rules.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* ------------------------------------------------------------------------ dedup set */

/* An identity: the customer as an index into the customers seen so far, the key's bytes
 * in the block of the frame that admitted it. key == NULL marks a free slot. */
typedef struct {
    uint64_t h;
    const char *key;
    uint32_t klen;
    uint32_t cust;
} Entry;

/* The identities one admit call remembered, in one allocation, oldest block first. */
typedef struct Block {
    struct Block *next;
    int64_t at;
    uint32_t n;
    size_t used;
    char data[]; /* n records of: u32 cust, u32 klen, klen bytes */
} Block;

typedef struct {
    PyObject_HEAD
    Entry *slots;
    size_t cap; /* a power of two */
    size_t n;
    Block *head, *tail;
    /* customers: id -> str (a new reference each), and a small hash table of ids */
    PyObject *cust_names; /* list[str] */
    char **cust_bytes;
    uint32_t *cust_lens;
    uint32_t n_cust, cust_cap;
    uint32_t *cust_index; /* open addressing: id + 1, 0 = free */
    uint32_t cust_index_cap;
} DedupObject;

static uint64_t ident_hash(uint32_t cust, const char *key, size_t klen) {
    return hash_bytes(key, klen, mix64(cust + 0x51ed270b27f1b5a1ULL));
}

static int customer_id(DedupObject *d, const char *p, uint32_t n, uint32_t *out) {
    uint64_t h = hash_bytes(p, n, 7);
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
            uint64_t hh = hash_bytes(d->cust_bytes[id], d->cust_lens[id], 7);
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
    uint64_t h = hash_bytes(p, n, 7);
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
        if (e->h == h && e->cust == cust && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    }
}

static int grow(DedupObject *d) {
    size_t cap = d->cap * 2;
    Entry *slots = calloc(cap, sizeof(Entry));
    if (!slots) return -1;
    for (size_t i = 0; i < d->cap; i++) {
        Entry *e = &d->slots[i];
        if (!e->key) continue;
        size_t j = (size_t)e->h & (cap - 1);
        while (slots[j].key) j = (j + 1) & (cap - 1);
        slots[j] = *e;
    }
    free(d->slots);
    d->slots = slots;
    d->cap = cap;
    return 0;
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
    Block *b = malloc(sizeof(Block) + n * 8 + bytes);
    if (!b) return NULL;
    b->next = NULL;
    b->at = at;
    b->n = 0;
    b->used = 0;
    return b;
}

/* Admit one identity into ``b`` unless known: 1 admitted, 0 a duplicate, -1 no memory. */
static int admit_one(DedupObject *d, Block *b, uint32_t cust, const char *key, uint32_t klen) {
    if ((d->n + 1) * 4 > d->cap * 3 && grow(d) < 0) return -1;
    uint64_t h = ident_hash(cust, key, klen);
    Entry *e = find_slot(d, h, cust, key, klen);
    if (e->key) return 0;
    char *rec = b->data + b->used;
    memcpy(rec, &cust, 4);
    memcpy(rec + 4, &klen, 4);
    memcpy(rec + 8, key, klen);
    b->used += 8 + (size_t)klen;
    b->n++;
    e->h = h;
    e->key = rec + 8;
    e->klen = klen;
    e->cust = cust;
    d->n++;
    return 1;
}

static void block_link(DedupObject *d, Block *b) {
    if (!b->n) {
        free(b);
        return;
    }
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
    d->slots = calloc(d->cap, sizeof(Entry));
    d->cust_index_cap = 64;
    d->cust_index = calloc(d->cust_index_cap, sizeof(uint32_t));
    d->cust_names = PyList_New(0);
    if (!d->slots || !d->cust_index || !d->cust_names) {
        Py_DECREF(d);
        return PyErr_NoMemory();
    }
    return (PyObject *)d;
}

static void Dedup_dealloc(DedupObject *d) {
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
    free(d->slots);
    Py_XDECREF(d->cust_names);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static Py_ssize_t Dedup_len(DedupObject *d) { return (Py_ssize_t)d->n; }

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

static int Dedup_contains(DedupObject *d, PyObject *ident) {
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
static PyObject *Dedup_admit(DedupObject *d, PyObject *args) {
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
        int r = customer_id(d, c, (uint32_t)cn, &cust);
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

static PyObject *Dedup_forget_before(DedupObject *d, PyObject *arg) {
    long long cutoff = PyLong_AsLongLong(arg);
    if (cutoff == -1 && PyErr_Occurred()) return NULL;
    while (d->head && d->head->at < cutoff) {
        Block *b = d->head;
        forget_block(d, b);
        d->head = b->next;
        if (!d->head) d->tail = NULL;
        free(b);
    }
    Py_RETURN_NONE;
}

/* arrivals() -> [(at, [(customer, key), ...]), ...], oldest first (for inspection) */
static PyObject *Dedup_arrivals(DedupObject *d, PyObject *unused) {
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

static PyMethodDef Dedup_methods[] = {
    {"admit", (PyCFunction)Dedup_admit, METH_VARARGS,
     "admit(customers, keys, at) -> indices of the identities not remembered yet"},
    {"forget_before", (PyCFunction)Dedup_forget_before, METH_O,
     "forget_before(cutoff): forget every identity that arrived before ``cutoff``"},
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
    while (q < c->end && *q != '"') {
        if (*q == '\\') {
            *esc = 1;
            q += 2;
        } else {
            q++;
        }
    }
    if (q >= c->end) return -1;
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
} Ev;

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

/* One event object. -1: a shape this scan does not take (the frame goes to Python). */
static int scan_event(Cur *c, char **scratch, Ev *ev) {
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
            if (skip_value(c) < 0) return -1;
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
static Py_ssize_t scan_body(const char *body, size_t n, char *scratch, Ev *evs, size_t max) {
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
            if (scan_event(&c, &scratch, &evs[count]) < 0) return -1;
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

/* scan_events(dedup, body, received_us) -> None | (n, fresh, customers, stamps,
 * ts_unparsed, columns)
 *
 * ``fresh``: indices of the first copies (None: all of them); ``customers``: their
 * customer ids as interned str; ``stamps``: bytes of int64 µs (time of receipt where the
 * event has none); ``ts_unparsed``: positions among the first copies whose timestamp the
 * caller must read (another RFC 3339 form); ``columns``: (offsets, data) bytes for
 * customer_id, idempotency_key, name, resource_id and payload. None: the body has a shape
 * the scan leaves to Python; nothing was admitted. */
static PyObject *scan_events(PyObject *mod, PyObject *args) {
    DedupObject *d;
    Py_buffer body;
    long long received;
    if (!PyArg_ParseTuple(args, "O!y*L", &DedupType, &d, &body, &received)) return NULL;
    PyObject *result = NULL, *fresh = NULL, *customers = NULL, *stamps = NULL;
    PyObject *unparsed = NULL;
    Col cols[5] = {{0}};
    const size_t max = 1 + (size_t)body.len / 8; /* no event is shorter than 8 bytes */
    char *scratch = malloc((size_t)body.len + 1);
    Ev *evs = malloc(max * sizeof(Ev));
    uint32_t *ids = NULL;
    uint8_t *dup = NULL;
    if (!scratch || !evs) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n;
    Py_BEGIN_ALLOW_THREADS;
    n = scan_body(body.buf, (size_t)body.len, scratch, evs, max);
    Py_END_ALLOW_THREADS;
    if (n < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    ids = malloc(((size_t)n + 1) * sizeof(uint32_t));
    dup = calloc((size_t)n + 1, 1);
    if (!ids || !dup) {
        PyErr_NoMemory();
        goto done;
    }
    /* customers (a new one makes a str: with the lock held) */
    size_t key_bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = customer_id(d, evs[i].cust, evs[i].cust_n, &ids[i]);
        if (r == -1) PyErr_NoMemory();
        if (r < 0) goto done;
        key_bytes += evs[i].key_n;
    }
    Block *b = block_new(received, (size_t)n, key_bytes);
    if (!b) {
        PyErr_NoMemory();
        goto done;
    }
    size_t m = 0;
    size_t bytes[5] = {0};
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Ev *e = &evs[i];
        int r = admit_one(d, b, ids[i], e->key, e->key_n);
        if (r < 0) {
            oom = 1;
            break;
        }
        dup[i] = !r;
        if (r) {
            m++;
            bytes[0] += e->cust_n;
            bytes[1] += e->key_n;
            bytes[2] += e->name_n;
            bytes[3] += e->res_n;
            bytes[4] += e->span_n;
        }
    }
    Py_END_ALLOW_THREADS;
    block_link(d, b);
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
    if (!customers || !stamps || !unparsed || !fresh) goto done;
    int64_t *ts = (int64_t *)PyBytes_AS_STRING(stamps);
    size_t j = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (dup[i]) continue;
        const Ev *e = &evs[i];
        PyObject *name = PyList_GET_ITEM(d->cust_names, ids[i]);
        PyList_SET_ITEM(customers, (Py_ssize_t)j, Py_NewRef(name));
        if (fresh != Py_None) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (!idx) goto done;
            PyList_SET_ITEM(fresh, (Py_ssize_t)j, idx);
        }
        ts[j] = e->ts_state == 1 ? e->ts : received;
        if (e->ts_state == 2) {
            PyObject *pos = PyLong_FromSize_t(j);
            if (!pos || PyList_Append(unparsed, pos) < 0) {
                Py_XDECREF(pos);
                goto done;
            }
            Py_DECREF(pos);
        }
        col_put(&cols[0], j, e->cust, e->cust_n);
        col_put(&cols[1], j, e->key, e->key_n);
        col_put(&cols[2], j, e->name, e->name_n);
        col_put(&cols[3], j, e->res, e->res_n);
        col_put(&cols[4], j, e->span, e->span_n);
        j++;
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
    result = Py_BuildValue("(nOOOON)", n, fresh, customers, stamps, unparsed, pairs);
done:
    for (int k = 0; k < 5; k++) col_clear(&cols[k]);
    Py_XDECREF(fresh);
    Py_XDECREF(customers);
    Py_XDECREF(stamps);
    Py_XDECREF(unparsed);
    free(scratch);
    free(evs);
    free(ids);
    free(dup);
    PyBuffer_Release(&body);
    return result;
}

static PyMethodDef module_methods[] = {
    {"scan_events", scan_events, METH_VARARGS,
     "scan_events(dedup, body, received_us): dedupe an event frame and build its raw rows"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "The embedded aggregator's native core (see the source's header).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&DedupType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Dedup", (PyObject *)&DedupType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
