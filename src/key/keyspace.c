/*
 * keyspace.c: a keyspace is the layer registry (layers.c: recipes, the parameter-sensitivity
 * matrix of DESIGN.md section 2), the prompt normalization mode per model and the aggressive
 * mode's synonyms. A keyspace is configured once, then only read; requests hold a reference to the
 * keyspace they were parsed with, so a recipe is never freed under a request that still derives
 * keys from it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

int gencache_keyspace_new(gencache_keyspace **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    gencache_keyspace *ks = calloc(1, sizeof *ks);
    if (!ks)
        return GENCACHE_ENOMEM;
    atomic_init(&ks->refs, 1);
    ks->default_mode = GENCACHE_NORM_SAFE;
    int rc = gencache__registry_defaults(ks);
    if (rc != GENCACHE_OK) {
        gencache_keyspace_free(ks);
        return rc;
    }
    *out = ks;
    return GENCACHE_OK;
}

void gencache_keyspace_free(gencache_keyspace *ks)
{
    if (!ks || atomic_fetch_sub(&ks->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ks->n_layers; i++)
        gencache__registry_clear(&ks->layers[i]);
    for (size_t i = 0; i < ks->n_modes; i++)
        free(ks->modes[i].model);
    free(ks->modes);
    for (size_t i = 0; i < ks->n_synonyms; i++) {
        free(ks->synonyms[i].from);
        free(ks->synonyms[i].to);
    }
    free(ks->synonyms);
    free(ks);
}

gencache_keyspace *gencache__keyspace_retain(const gencache_keyspace *cks)
{
    gencache_keyspace *ks = (gencache_keyspace *)cks;
    atomic_fetch_add(&ks->refs, 1);
    return ks;
}

static _Atomic(gencache_keyspace *) default_ks;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

gencache_keyspace *gencache__keyspace_default(void)
{
    /* Not pthread_once: an allocation failure must not leave the defaults missing for good. */
    gencache_keyspace *ks = atomic_load(&default_ks);
    if (ks)
        return ks;
    pthread_mutex_lock(&default_lock);
    ks = atomic_load(&default_ks);
    if (!ks && gencache_keyspace_new(&ks) == GENCACHE_OK)
        atomic_store(&default_ks, ks);
    pthread_mutex_unlock(&default_lock);
    return ks;
}

int gencache_keyspace_set_mode(gencache_keyspace *ks, const char *model, gencache_norm_mode mode)
{
    if (!ks || !gencache_norm_mode_name(mode))
        return GENCACHE_EINVAL;
    if (!model) {
        ks->default_mode = mode;
        return GENCACHE_OK;
    }
    for (size_t i = 0; i < ks->n_modes; i++) {
        if (strcmp(ks->modes[i].model, model) == 0) {
            ks->modes[i].mode = mode;
            return GENCACHE_OK;
        }
    }
    gencache__model_mode *m = realloc(ks->modes, (ks->n_modes + 1) * sizeof *m);
    if (!m)
        return GENCACHE_ENOMEM;
    ks->modes = m;
    char *name = strdup(model);
    if (!name)
        return GENCACHE_ENOMEM;
    m[ks->n_modes].model = name;
    m[ks->n_modes].mode = mode;
    ks->n_modes++;
    return GENCACHE_OK;
}

gencache_norm_mode gencache__keyspace_mode_for(const gencache_keyspace *ks, const char *model)
{
    if (model) {
        for (size_t i = 0; i < ks->n_modes; i++)
            if (strcmp(ks->modes[i].model, model) == 0)
                return ks->modes[i].mode;
    }
    return ks->default_mode;
}

const gencache__layer_recipe *gencache__keyspace_find(const gencache_keyspace *ks,
                                                      const char *layer)
{
    for (size_t i = 0; i < ks->n_layers; i++)
        if (strcmp(ks->layers[i].name, layer) == 0)
            return ks->layers[i].n_fields ? &ks->layers[i] : NULL;
    return NULL;
}

static int cmp_synonym(const void *a, const void *b)
{
    return strcmp(((const gencache__synonym *)a)->from, ((const gencache__synonym *)b)->from);
}

int gencache_keyspace_add_synonym(gencache_keyspace *ks, const char *from, const char *to)
{
    if (!ks || !from || !to)
        return GENCACHE_EINVAL;
    gencache__buf f = {0}, t = {0};
    int rc = gencache__key_normalize(GENCACHE_NORM_AGGRESSIVE, from, strlen(from), NULL, 0, &f);
    if (rc == GENCACHE_OK)
        rc = gencache__key_normalize(GENCACHE_NORM_AGGRESSIVE, to, strlen(to), NULL, 0, &t);
    if (rc == GENCACHE_OK && (!gencache__buf_terminate(&f) || !gencache__buf_terminate(&t)))
        rc = GENCACHE_ENOMEM;
    if (rc == GENCACHE_EPARSE)
        rc = GENCACHE_EINVAL;
    if (rc == GENCACHE_OK && (f.len == 0 || t.len == 0 || memchr(f.data, ' ', f.len)))
        rc = GENCACHE_EINVAL;
    if (rc != GENCACHE_OK)
        goto fail;
    for (size_t i = 0; i < ks->n_synonyms; i++) {
        if (strcmp(ks->synonyms[i].from, f.data) == 0) {
            free(ks->synonyms[i].to);
            ks->synonyms[i].to = t.data;
            gencache__buf_free(&f);
            return GENCACHE_OK;
        }
    }
    if (ks->n_synonyms == GENCACHE__KEY_MAX_SYNONYMS) {
        rc = GENCACHE_ELIMIT;
        goto fail;
    }
    gencache__synonym *s = realloc(ks->synonyms, (ks->n_synonyms + 1) * sizeof *s);
    if (!s) {
        rc = GENCACHE_ENOMEM;
        goto fail;
    }
    ks->synonyms = s;
    s[ks->n_synonyms].from = f.data;
    s[ks->n_synonyms].to = t.data;
    ks->n_synonyms++;
    qsort(ks->synonyms, ks->n_synonyms, sizeof *s, cmp_synonym);
    return GENCACHE_OK;
fail:
    gencache__buf_free(&f);
    gencache__buf_free(&t);
    return rc;
}

/* Layers without a recipe (defined on a cache without fields) derive no keys: the keyspace's
 * list leaves them out. */
size_t gencache_keyspace_layer_count(const gencache_keyspace *ks)
{
    size_t n = 0;
    for (size_t i = 0; ks && i < ks->n_layers; i++)
        n += ks->layers[i].n_fields > 0;
    return n;
}

const char *gencache_keyspace_layer_name(const gencache_keyspace *ks, size_t i)
{
    for (size_t j = 0; ks && j < ks->n_layers; j++)
        if (ks->layers[j].n_fields && i-- == 0)
            return ks->layers[j].name;
    return NULL;
}
